"""ObjectReader's HTTP/1.1 response framing against a scripted local socket server (no S3 involved).

The S3 behaviour of the reader is tested against real MinIO in tests/integration/test_reader.py;
here only the byte-level framing that real servers rarely show: chunked bodies split at every
awkward place, bodies delimited by closing the connection, a server that closes an idle
keep-alive connection, and a truncated body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from robolake.storage.errors import S3Error
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import S3Target

Script = Callable[[int], list[bytes]]  # request number → pieces to send (b"" = close the connection)


async def _serve(script: Script) -> tuple[asyncio.Server, int, list[str]]:
    requests: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
            if not head:
                break
            requests.append(head.decode())
            for piece in script(len(requests)):
                if piece == b"":
                    writer.close()
                    return
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.001)  # separate TCP segments: the parser sees the pieces apart

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], requests


def _target(port: int) -> S3Target:
    return S3Target(endpoint=f"http://127.0.0.1:{port}", access_key="k", secret_key="s")


def test_chunked_bodies_split_anywhere() -> None:
    body = b"".join(bytes([65 + i % 26]) * (i + 1) for i in range(40))
    chunks = [body[:1], body[1:300], body[300:]]
    wire = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire

    def script(_: int) -> list[bytes]:
        return [response[i : i + 3] for i in range(0, len(response), 3)]  # 3 bytes at a time

    async def go() -> None:
        server, port, seen = await _serve(script)
        async with server, ObjectReader(_target(port), connections=1) as reader:
            got = await reader.get("b", "k")
            assert got.body == body and got.size == len(body)
            streamed = bytearray()
            again = await reader.get("b", "k", sink=streamed.extend)
            assert bytes(streamed) == body and again.size == len(body)
            assert len(seen) == 2  # one keep-alive connection carried both

    asyncio.run(go())


def test_body_delimited_by_close_then_a_new_connection() -> None:
    def script(n: int) -> list[bytes]:
        return [b"HTTP/1.1 200 OK\r\n\r\n", b"until-", b"close", b""]

    async def go() -> None:
        server, port, seen = await _serve(script)
        async with server, ObjectReader(_target(port)) as reader:
            assert (await reader.get("b", "k")).body == b"until-close"
            assert (await reader.get("b", "k")).body == b"until-close"
            assert len(seen) == 2

    asyncio.run(go())


def test_an_idle_connection_closed_by_the_server_is_replaced_once() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def script(n: int) -> list[bytes]:
        return [ok, b""]  # answer, then close the keep-alive connection

    async def go() -> None:
        server, port, seen = await _serve(script)
        async with server, ObjectReader(_target(port), connections=1) as reader:
            assert (await reader.get("b", "k")).body == b"ok"
            await asyncio.sleep(0.05)
            assert (await reader.get("b", "k")).body == b"ok"
            assert len(seen) == 2

    asyncio.run(go())


def test_a_truncated_body_is_an_error_not_a_short_object() -> None:
    def script(_: int) -> list[bytes]:
        return [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"only forty bytes of the hundred promised", b""]

    async def go() -> None:
        server, port, _ = await _serve(script)
        async with server, ObjectReader(_target(port)) as reader:
            with pytest.raises(S3Error, match=r"GET b/k at http://127\.0\.0\.1:\d+: no answer .*closed mid-response"):
                await reader.get("b", "k", sink=lambda _: None)

    asyncio.run(go())
