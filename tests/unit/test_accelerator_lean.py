"""The lean HTTP/1.1 client against scripted servers on real sockets: framing, reuse, stale and
broken connections, and the pool's fall-back to aiohttp for answers it does not read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import uvloop

from robolake.accelerator.lean import LEAN_WHOLE_MAX_BYTES, LeanConnectionError, LeanPool, Unframed
from robolake.accelerator.upstream import UpstreamPool, UpstreamRequest, request_head

Answer = Callable[[bytes], bytes | None]  # a request head -> the bytes to answer (None: close)


class Script:
    """A server that answers each request head with `answer(head)`; counts connections and requests."""

    def __init__(
        self, answer: Answer, *, close_after_each: bool = False, hang_up_on_second: bool = False, piece: int = 0
    ) -> None:
        self.answer, self.close_after_each = answer, close_after_each
        self.piece = piece  # write the answer in pieces of this many bytes, one per loop turn
        self.hang_up_on_second = hang_up_on_second  # a second request on a connection: closed unanswered
        self.connections = 0
        self.heads: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Script:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for count in range(1_000_000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                out = None if self.hang_up_on_second and count else self.answer(head)
                if out is None:
                    return
                for start in range(0, len(out), self.piece or len(out) or 1):
                    writer.write(out[start : start + (self.piece or len(out))])
                    await writer.drain()
                    if self.piece:
                        await asyncio.sleep(0.001)
                if self.close_after_each:
                    return
        finally:
            writer.close()


def ok(body: bytes, *extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", 'ETag: "e"', f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


Runner = Callable[[Callable[[], Awaitable[Any]]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs a test's coroutine on plain asyncio, and on uvloop (the accelerator's loop: its
    transports are not asyncio's classes)."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def runner(go: Callable[[], Awaitable[Any]]) -> Any:
        with asyncio.Runner(loop_factory=factory) as loop:
            return loop.run(go())  # type: ignore[arg-type]

    return runner


def head_of(method: str = "GET", target: str = "/b/k") -> bytes:
    return request_head(method, target, [("Host", "node:9001"), ("X-Amz-Date", "20260101T000000Z")])


def test_a_small_answer_is_read_whole_and_its_connection_reused(run: Runner) -> None:
    async def go() -> None:
        async with Script(lambda _: ok(b"hello")) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            for _ in range(3):
                async with await pool.send("127.0.0.1", server.port, head_of(), "GET") as answer:
                    assert answer.status == 200
                    assert ("ETag", '"e"') in answer.headers  # MinIO's spelling kept
                    assert await answer.read() == b"hello"
                    assert answer.content_length == 5
            assert server.connections == 1
            assert server.heads[0] == head_of()  # sent byte for byte
            pool.close()

    run(go)


def test_an_answer_that_arrives_in_small_pieces_is_put_together(run: Runner) -> None:
    async def go() -> None:
        async with Script(lambda _: ok(b"0123456789" * 30, "X-Long: " + "v" * 40), piece=7) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            for _ in range(2):
                answer = await pool.send("127.0.0.1", server.port, head_of(), "GET")
                assert (await answer.read(), answer.headers[-1]) == (b"0123456789" * 30, ("X-Long", "v" * 40))
            assert server.connections == 1
            pool.close()

    run(go)


def test_a_head_answer_has_no_body_but_keeps_the_objects_length(run: Runner) -> None:
    async def go() -> None:
        answers = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n", ok(b"next")])
        async with Script(lambda _: next(answers)) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            head = await pool.send("127.0.0.1", server.port, head_of("HEAD"), "HEAD")
            assert (head.status, head.content_length, await head.read()) == (200, 12345, b"")
            second = await pool.send("127.0.0.1", server.port, head_of(), "GET")
            assert await second.read() == b"next"  # the HEAD's length was not taken as a body
            assert server.connections == 1
            pool.close()

    run(go)


def test_a_large_answer_streams_and_the_connection_is_reused_after_it(run: Runner) -> None:
    body = bytes(range(256)) * (3 * LEAN_WHOLE_MAX_BYTES // 256 + 7)

    async def go() -> None:
        async with Script(lambda h: ok(body) if b"/big" in h else ok(b"small")) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            answer = await pool.send("127.0.0.1", server.port, head_of(target="/b/big"), "GET")
            pieces = [piece async for piece in answer.chunks()]
            assert b"".join(pieces) == body and len(pieces) > 1
            answer.release()
            assert await (await pool.send("127.0.0.1", server.port, head_of(), "GET")).read() == b"small"
            assert server.connections == 1
            pool.close()

    run(go)


def test_an_unread_large_answer_closes_its_connection(run: Runner) -> None:
    body = b"x" * (2 * LEAN_WHOLE_MAX_BYTES)

    async def go() -> None:
        async with Script(lambda h: ok(body) if b"/big" in h else ok(b"small")) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            (await pool.send("127.0.0.1", server.port, head_of(target="/b/big"), "GET")).release()
            assert await (await pool.send("127.0.0.1", server.port, head_of(), "GET")).read() == b"small"
            assert server.connections == 2  # the rest of the big body never reads as the next answer
            pool.close()

    run(go)


def test_a_connection_the_node_closed_while_idle_is_not_used_again(run: Runner) -> None:
    async def go() -> None:
        async with Script(lambda _: ok(b"fresh"), close_after_each=True) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            for _ in range(3):
                assert await (await pool.send("127.0.0.1", server.port, head_of(), "GET")).read() == b"fresh"
                await asyncio.sleep(0.05)  # the node's close reaches the idle connection
            assert server.connections == 3
            pool.close()

    run(go)


def test_a_request_on_a_connection_the_node_closes_unanswered_is_retried_on_a_new_one(run: Runner) -> None:
    async def go() -> None:
        async with Script(lambda _: ok(b"fresh"), hang_up_on_second=True) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            for _ in range(3):  # each second request finds its kept-alive connection closed
                assert await (await pool.send("127.0.0.1", server.port, head_of(), "GET")).read() == b"fresh"
            assert (server.connections, len(server.heads)) == (3, 5)
            pool.close()

    run(go)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n bad: folded\r\n\r\n",
    ],
)
def test_answers_it_does_not_frame_are_refused_before_anything_is_read(raw: bytes, run: Runner) -> None:
    async def go() -> None:
        async with Script(lambda _: raw) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            with pytest.raises(Unframed):
                await pool.send("127.0.0.1", server.port, head_of(), "GET")
            pool.close()

    run(go)


def test_an_answer_cut_short_is_a_connection_error(run: Runner) -> None:
    async def go() -> None:
        async with Script(lambda _: ok(b"0123456789")[:-4], close_after_each=True) as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
            with pytest.raises(LeanConnectionError, match="before its answer"):
                await pool.send("127.0.0.1", server.port, head_of(), "GET")
        async with Script(lambda _: ok(b"y" * (2 * LEAN_WHOLE_MAX_BYTES))[:-10], close_after_each=True) as server:
            answer = await pool.send("127.0.0.1", server.port, head_of(), "GET")
            with pytest.raises(LeanConnectionError, match="broke off"):
                await answer.read()
            pool.close()

    run(go)


def test_a_refused_connection_is_one_aiohttp_treats_as_the_nodes_failure(run: Runner) -> None:
    async def go() -> None:
        async with Script(lambda _: None) as server:
            port = server.port
        pool = LeanPool(connect_timeout_s=2, read_timeout_s=5)
        with pytest.raises(aiohttp.ClientConnectionError, match=f"127.0.0.1:{port}"):
            await pool.send("127.0.0.1", port, head_of(), "GET")

    run(go)


def test_no_answer_within_the_read_timeout_is_a_connection_error(run: Runner) -> None:
    async def go() -> None:
        async with Script(lambda _: b"HTTP/1.1 200 OK\r\n") as server:
            pool = LeanPool(connect_timeout_s=2, read_timeout_s=0.3)
            with pytest.raises(LeanConnectionError, match="no answer"):
                await pool.send("127.0.0.1", server.port, head_of(), "GET")
            pool.close()

    run(go)


def test_the_pool_sends_reads_lean_and_falls_back_to_aiohttp_for_what_it_does_not_frame(run: Runner) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

    async def go() -> None:
        async with Script(lambda h: chunked if b"/chunked" in h else ok(b"lean")) as server:
            pool = UpstreamPool([f"http://127.0.0.1:{server.port}"])
            await pool.start()
            try:
                lean = await pool.request(UpstreamRequest("GET", "/b/k", {}), retry=True)
                assert await lean.read() == b"lean"
                assert server.heads[-1].startswith(b"GET /b/k HTTP/1.1\r\nHost: 127.0.0.1:")
                relayed = await pool.request(UpstreamRequest("GET", "/b/chunked", {"Host": "h"}), retry=True)
                assert await relayed.read() == b"hello"  # asked again through aiohttp, which reads chunks
                assert [h.split(b" ")[1] for h in server.heads] == [b"/b/k", b"/b/chunked", b"/b/chunked"]
                relayed.release()
                # a header that could not be written as it is goes through aiohttp (which refuses it)
                with pytest.raises(ValueError):
                    await pool.request(UpstreamRequest("GET", "/b/k", {"X-A": "1\r\nX-B: 2"}), retry=True)
            finally:
                await pool.close()

    run(go)
