"""Streaming GET with little CPU per request: HTTP/1.1 keep-alive over asyncio's BufferedProtocol.

`AsyncS3` (aiohttp) is convenient, but aiohttp parses and copies every chunk in Python: streaming
a large object with it costs 1.1-1.4 s of CPU per GiB, ObjectReader 0.24-0.37 s, and a 4 KiB GET
0.33-0.46 ms against ObjectReader's 0.18-0.25 ms (``python -m robolake.bench.clients``; the
figures are in the package docstring). Here the socket reads straight into one preallocated
buffer per connection and the caller's `sink` sees a memoryview of it (no copy); a request is one
signed header block written to a pooled connection. Used for large-object streaming (videos),
ranged reads, and by the benchmark drivers, where the client must measure the storage rather
than itself.

    async with ObjectReader(S3Target.from_settings(settings)) as reader:
        info = await reader.download("umi-raw", "video/demo/episode_00000.mp4", Path("ep0.mp4"))
        head = await reader.get("umi-raw", "video/demo/episode_00000.mp4", byte_range=(0, 1 << 20))

Bodies framed by Content-Length or chunked transfer encoding are understood; anything else (a
body delimited by closing the connection) is read to the end and the connection dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import os
import time
import typing
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from robolake.sigv4 import EMPTY_SHA256, canonical_query, sign
from robolake.storage.errors import S3Error, no_answer
from robolake.storage.s3 import S3Target, answer_error, object_path

Sink = Callable[[memoryview], object]
_MAX_HEADER = 64 * 1024


@dataclasses.dataclass(frozen=True)
class GetResult:
    """One answered GET. `body` holds the bytes only when no sink was given."""

    status: int
    headers: dict[str, str]  # lower-case names
    size: int  # body bytes received
    ttfb_s: float  # request written → first response byte
    seconds: float  # request written → last body byte
    body: bytes = b""

    @property
    def etag(self) -> str:
        return self.headers.get("etag", "").strip('"').lower()


class _Protocol(asyncio.BufferedProtocol):
    """One connection's response parser: header block, then a Content-Length or chunked body."""

    def __init__(self, buffer_size: int) -> None:
        self._buffer = bytearray(buffer_size)
        self._view = memoryview(self._buffer)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._reset(None, head=False)

    # -- per response state --
    def _reset(self, sink: Sink | None, *, head: bool) -> None:
        self._sink = sink
        self._head_request = head
        self._header = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.received = 0
        self.first_byte_at = 0.0
        self._remaining: int | None = None  # body bytes still expected (Content-Length framing)
        self._chunked = False
        self._chunk_left = 0  # chunked framing: bytes left in this chunk (-1: reading a size line)
        self._line = bytearray()
        self._body = bytearray()
        self._until_close = False
        self.keep_alive = True

    def start(self, request: bytes, sink: Sink | None, *, head: bool) -> asyncio.Future[None]:
        self._reset(sink, head=head)
        self._waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return self._waiter

    # -- asyncio callbacks --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self.first_byte_at == 0.0:
            self.first_byte_at = time.perf_counter()
        data = self._view[:nbytes]
        try:
            if self.status == 0:
                data = self._feed_header(data)
                if self.status == 0:
                    return
            if data:
                self._feed_body(data)
        except Exception as exc:
            self._fail(exc)
            return
        self._maybe_done()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._until_close and self.status:
                self.keep_alive = False
                self._waiter.set_result(None)
            else:
                self._waiter.set_exception(ConnectionError(f"connection closed mid-response ({exc or 'EOF'})"))

    # -- parsing --
    def _fail(self, exc: Exception) -> None:
        self.keep_alive = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def _feed_header(self, data: memoryview) -> memoryview:
        start = max(0, len(self._header) - 3)
        self._header += data
        end = self._header.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._header) > _MAX_HEADER:
                raise ConnectionError("response header block larger than 64 KiB")
            return data[:0]
        lines = bytes(self._header[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ConnectionError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self.keep_alive = False
        consumed = end + 4 - (len(self._header) - len(data))
        rest = data[consumed:]
        self._header = bytearray()
        self.status = status
        if self._head_request or status in (204, 304) or 100 <= status < 200:
            self._remaining = 0
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._chunked, self._chunk_left = True, -1
        elif "content-length" in self.headers:
            self._remaining = int(self.headers["content-length"])
        else:
            self._until_close, self.keep_alive = True, False
        return rest

    def _emit(self, data: memoryview) -> None:
        self.received += len(data)
        if self._sink is not None:
            self._sink(data)
        else:
            self._body += data

    def _feed_body(self, data: memoryview) -> None:
        if self._remaining is not None:
            if len(data) > self._remaining:
                raise ConnectionError(f"server sent {len(data) - self._remaining} bytes beyond Content-Length")
            self._remaining -= len(data)
            self._emit(data)
        elif self._chunked:
            self._feed_chunked(data)
        else:
            self._emit(data)

    def _feed_chunked(self, data: memoryview) -> None:
        while data:
            if self._chunk_left > 0:
                take = data[: self._chunk_left]
                self._emit(take)
                self._chunk_left -= len(take)
                data = data[len(take) :]
                if self._chunk_left == 0:
                    self._chunk_left = -2  # the CRLF after the chunk
                continue
            # a size line (-1), the CRLF after a chunk (-2) or the trailer after the last chunk (-3)
            newline = bytes(data).find(b"\n")
            if newline < 0:
                self._line += data
                break
            self._line += data[: newline + 1]
            data = data[newline + 1 :]
            line = bytes(self._line).strip()
            self._line = bytearray()
            if self._chunk_left == -2:
                self._chunk_left = -1
            elif self._chunk_left == -1:
                size = int(line.split(b";", 1)[0], 16)
                self._chunk_left = size if size else -3
            elif not line:  # end of trailer
                self._chunked = False
                self._remaining = 0

    def _maybe_done(self) -> None:
        if self._remaining == 0 and not self._chunked and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take_body(self) -> bytes:
        """The body collected when no sink was given."""
        out, self._body = bytes(self._body), bytearray()
        return out


def _route(proto: _Protocol, sink: Sink, errors: list[bytes], piece: memoryview) -> None:
    """Body pieces of an error answer are kept for its message; the others go to the caller's sink."""
    if proto.status >= 300:
        errors.append(bytes(piece))
    else:
        sink(piece)


class ObjectReader:
    """GET/ranged GET/HEAD over a pool of raw keep-alive connections to one S3 endpoint."""

    def __init__(
        self,
        target: S3Target,
        *,
        connections: int = 16,
        buffer_size: int = 1 << 20,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
    ) -> None:
        self.target = target
        self._host_port = target.host
        host, _, port = self._host_port.rpartition(":")
        self._addr = (host.strip("[]"), int(port))
        if target.endpoint.startswith("https://"):
            raise S3Error(f"ObjectReader speaks plain http; {target.endpoint} is https (use AsyncS3)", status=0)
        self._buffer_size = buffer_size
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Protocol] = []
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s

    async def __aenter__(self) -> ObjectReader:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for proto in self._idle:
            if proto.transport is not None:
                proto.transport.close()
        self._idle.clear()

    async def _connection(self, *, fresh: bool = False) -> _Protocol:
        while self._idle and not fresh:
            proto = self._idle.pop()
            if not proto.closed:
                return proto
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self._buffer_size), *self._addr), self._connect_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise S3Error(
                f"cannot connect to {self.target.endpoint}: {exc}; is the stack up? (robolake stack status)", status=0
            ) from exc
        return proto

    def _request(
        self, method: str, path: str, query: list[tuple[str, str]], extra: dict[str, str], body: bytes = b""
    ) -> bytes:
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        if body:
            extra = {**extra, "content-length": str(len(body))}
        headers = sign(
            method,
            path,
            query,
            self._host_port,
            self.target.access_key,
            self.target.secret_key,
            payload_hash=payload_hash,
            region=self.target.region,
            extra_headers=extra or None,
        )
        qs = canonical_query(query)
        lines = [f"{method} {path}{'?' + qs if qs else ''} HTTP/1.1", f"Host: {self._host_port}"]
        lines += [f"{k}: {v}" for k, v in {**extra, **headers}.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        sink: Sink | None = None,
    ) -> GetResult:
        """Any signed request to an already encoded `path` (e.g. the accelerator's batch API)."""
        request = self._request(method, path, [], dict(headers or {}), body)
        async with self._slots:
            return await self._get_on_connection(method, path, "", request, sink)

    async def get(
        self,
        bucket: str,
        key: str,
        *,
        byte_range: tuple[int, int] | None = None,
        sink: Sink | None = None,
        method: str = "GET",
    ) -> GetResult:
        """GET (or HEAD) one object; `byte_range` = (first, last) inclusive. Raises S3Error on non-2xx.

        With a `sink`, each received piece of the body is passed to it as a memoryview that is
        only valid during the call (copy it to keep it); without one the body is returned.
        """
        extra = {"range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        request = self._request(method, object_path(bucket, key), [], extra)
        async with self._slots:
            return await self._get_on_connection(method, bucket, key, request, sink)

    async def _get_on_connection(
        self, method: str, bucket: str, key: str, request: bytes, sink: Sink | None
    ) -> GetResult:
        errors: list[bytes] = []
        fresh = False
        while True:
            proto = await self._connection(fresh=fresh)
            reused = not fresh and proto.first_byte_at != 0.0  # it answered before: it may have gone stale
            error_sink = None if sink is None else functools.partial(_route, proto, sink, errors)
            began = time.perf_counter()
            try:
                await asyncio.wait_for(proto.start(request, error_sink, head=method == "HEAD"), self._read_timeout_s)
            except (ConnectionError, OSError, TimeoutError, ValueError) as exc:
                if proto.transport is not None:
                    proto.transport.close()
                if reused and proto.first_byte_at == 0.0 and not isinstance(exc, TimeoutError):
                    fresh = True  # the server closed an idle connection: once more on a new one
                    continue
                raise no_answer(method, f"{bucket}/{key}", self.target.endpoint, exc) from exc
            break
        done = time.perf_counter()
        body = proto.take_body() if sink is None else b"".join(errors)
        result = GetResult(
            status=proto.status,
            headers=dict(proto.headers),
            size=proto.received,
            ttfb_s=max(0.0, proto.first_byte_at - began),
            seconds=done - began,
            body=body if sink is None else b"",
        )
        if proto.keep_alive and not proto.closed:
            self._idle.append(proto)
        elif proto.transport is not None:
            proto.transport.close()
        if result.status >= 300:
            raise answer_error(self.target, method, f"{bucket}/{key}", result.status, body, result.headers)
        return result

    async def head(self, bucket: str, key: str) -> GetResult:
        return await self.get(bucket, key, method="HEAD")

    async def download(
        self,
        bucket: str,
        key: str,
        dest: Path,
        *,
        byte_range: tuple[int, int] | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> GetResult:
        """Stream an object to `dest` (written to a temp name, renamed when complete and its length checks)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        with open(partial, "wb", buffering=0) as fh:

            def write(piece: memoryview) -> None:
                fh.write(piece)
                if progress is not None:
                    progress(len(piece))

            try:
                result = await self.get(bucket, key, byte_range=byte_range, sink=write)
            except BaseException:
                fh.close()
                with contextlib.suppress(OSError):
                    partial.unlink()
                raise
        expected = result.headers.get("content-length")
        if expected is not None and int(expected) != result.size:
            partial.unlink()
            raise S3Error(
                f"GET {bucket}/{key}: received {result.size} bytes, Content-Length said {expected}; "
                "nothing was written, try again",
                status=0,
            )
        os.replace(partial, dest)
        return result
