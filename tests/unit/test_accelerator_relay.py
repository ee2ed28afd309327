"""A cache answer written as raw bytes (relay.BlockAnswer) frames exactly as aiohttp frames it.

The handler runs in a real aiohttp server on a loopback port and is asked over a plain socket:
once on a keep-alive HTTP/1.1 connection (the raw path) and once with `Connection: close`
(aiohttp's own path); both answers must carry the same status, headers and body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from robolake.accelerator.answer import CacheAnswer
from robolake.accelerator.relay import BlockAnswer, send_answer

BODY = bytes(range(256)) * 20
HEADERS = [("ETag", '"abc"'), ("Content-Type", "image/jpeg"), ("X-Amz-Meta-Seed", "7"), ("Server", "MinIO")]


async def _serve(answer: CacheAnswer, kinds: list[str]) -> Callable[[bytes], Awaitable[bytes]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = await send_answer(request, answer, (("X-Robolake-Cache", "hit-memory"),))
        kinds.append(type(response).__name__)
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()

    async def ask(raw: bytes) -> bytes:
        """Send `raw` (no half-close: aiohttp would end the connection at it); read every answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(raw)
        data = b""
        while len(_parse(data, complete=False)) < raw.count(b"GET "):
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            data += chunk
        writer.close()
        return data

    ask.server = server  # type: ignore[attr-defined]
    return ask


def _parse(data: bytes, *, complete: bool = True) -> list[tuple[str, dict[str, str], bytes]]:
    """Every answer in `data`: (status line, headers but Date and Connection, body); with
    `complete` False, only the answers received whole so far."""
    answers = []
    while data:
        head, found, rest = data.partition(b"\r\n\r\n")
        if not found and not complete:
            break
        status, *lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        length = int(headers["Content-Length"])
        if len(rest) < length and not complete:
            break
        body, data = rest[:length], rest[length:]
        assert headers.pop("Date").endswith(" GMT")
        headers.pop("Connection", None)
        answers.append((status.replace("HTTP/1.0", "HTTP/1.1"), headers, body))
    return answers


@pytest.mark.parametrize(
    "answer",
    [
        CacheAnswer(200, HEADERS, BODY, len(BODY)),
        CacheAnswer(206, [*HEADERS, ("Content-Range", "bytes 10-19/5120")], BODY[10:20], 10),
        CacheAnswer(200, [("ETag", '"e"')], b"", 0),  # no Content-Type, no Server: aiohttp's defaults
    ],
    ids=["whole", "range", "bare"],
)
def test_the_raw_answer_frames_as_aiohttp_does(answer: CacheAnswer) -> None:
    async def main() -> None:
        kinds: list[str] = []
        ask = await _serve(answer, kinds)
        try:
            # Two pipelined requests on one keep-alive connection: both answered, in order.
            raw = await ask(b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\nGET /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
            framed = await ask(b"GET /b/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        finally:
            await ask.server.close()  # type: ignore[attr-defined]
        assert kinds == [BlockAnswer.__name__, BlockAnswer.__name__, "Response"]
        first, second = _parse(raw)
        (expected,) = _parse(framed)
        assert first == second == expected
        assert first[2] == answer.body and first[1]["X-Robolake-Cache"] == "hit-memory"

    asyncio.run(main())


def test_a_header_that_cannot_be_sent_as_is_goes_through_aiohttp() -> None:
    async def main() -> None:
        kinds: list[str] = []
        answer = CacheAnswer(200, [("X-Amz-Meta-Bad", "a\r\nInjected: 1")], b"x", 1)
        ask = await _serve(answer, kinds)
        try:
            data = await ask(b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
        finally:
            await ask.server.close()  # type: ignore[attr-defined]
        assert kinds == ["Response"] and b"\r\nInjected: 1" not in data

    asyncio.run(main())
