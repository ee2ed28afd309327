"""A lean HTTP/1.1 client for the reads the accelerator sends MinIO: bodiless GET and HEAD.

A cache miss is a client's request relayed to a node and its answer relayed back; aiohttp's
client spends more Python per request than the rest of the miss (request objects, header
multidicts, timers, cookie handling). This one writes the request head as it is given and
reads the answer with an asyncio.Protocol:

    LeanPool.send(host, port, head, method)
        an idle kept-alive connection to (host, port), or a new one
        write the head; parse the answer's head when it is complete (`parse_head`, also the
        large-GET path's: MinIO's spelling of names, repeats kept)
        a body of up to LEAN_WHOLE_MAX_BYTES: read whole, the connection back to the idle pool
        a larger one: streamed, the socket paused while STREAM_HIGH_BYTES wait to be taken

Only answers framed by one Content-Length (or none at all: HEAD, 204, 304) are read here; a
chunked, close-delimited or garbled answer raises Unframed before any of it reaches the
client, and the caller asks again through aiohttp (reads are idempotent). A kept-alive
connection that MinIO closed while idle fails as StaleConnection before any byte of the answer;
LeanPool retries that once on a new connection, which is not the node's fault. Every other
failure is a LeanConnectionError, an aiohttp.ClientConnectionError, so the pool fails over and
marks the node down exactly as it does for aiohttp's own.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import AsyncIterator
from types import TracebackType
from typing import cast

import aiohttp

LEAN_WHOLE_MAX_BYTES = 1 << 20
STREAM_HIGH_BYTES = 4 << 20
IDLE_PER_NODE = 128
HEAD_MAX_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class LeanConnectionError(aiohttp.ClientConnectionError):
    """A connection to a node failed: refused, reset, closed before the answer was whole."""


class StaleConnection(LeanConnectionError):
    """A kept-alive connection the node had closed while it was idle: nothing was answered."""


class Unframed(Exception):
    """An answer this client does not read (chunked, close-delimited, garbled): ask aiohttp."""


def body_length(method: str, status: int, headers: list[tuple[str, str]]) -> int | None:
    """How many body bytes follow the head; None when only the connection's end would tell."""
    if method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
        return 0
    if any(n.lower() == "transfer-encoding" for n, _ in headers):
        return None
    return _header_length(headers)


def _header_length(headers: list[tuple[str, str]]) -> int | None:
    values = [v for n, v in headers if n.lower() == "content-length"]
    return int(values[0]) if len(values) == 1 and values[0].isdigit() else None


def parse_head(raw: bytes) -> tuple[int, list[tuple[str, str]]] | None:
    """(status, headers) of an HTTP/1.1 answer head (without its blank line), None if it is not one."""
    lines = raw.decode("utf-8", "surrogateescape").split("\r\n")  # as NodeResponse.headers
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name, value.strip(" \t")))
    return int(parts[1]), headers


class LeanAnswer:
    """One answer read by the lean client (robolake.accelerator.upstream.UpstreamResponse)."""

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        *,
        length: int,
        body: bytes | None,
        conn: _Connection | None = None,
        read_timeout_s: float = 300.0,
    ) -> None:
        self.status, self.headers = status, headers
        self._length = length  # body bytes on the wire
        self._content_length = _header_length(headers)  # a HEAD's is the object's
        self._body = body  # None while it streams
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = self._taken = 0
        self._error: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None
        self._conn = conn  # while a streamed body is read from it
        self.read_timeout_s = read_timeout_s

    @classmethod
    def of_bytes(cls, raw: bytes) -> LeanAnswer | None:
        """A whole answer read off a connection until its end; None if it is not an HTTP answer."""
        head, _, body = raw.partition(b"\r\n\r\n")
        parsed = parse_head(head)
        if parsed is None:
            return None
        length = _header_length(parsed[1])
        body = body if length is None else body[:length]
        return cls(parsed[0], parsed[1], length=len(body), body=body)

    @property
    def content_length(self) -> int | None:
        return self._content_length

    @property
    def queued(self) -> int:
        """Body bytes received and not yet taken by the reader."""
        return self._queued

    @property
    def complete(self) -> bool:
        return self._body is not None or self._taken + self._queued >= self._length

    async def read(self) -> bytes:
        if self._body is not None:
            return self._body
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            if self._body:
                yield self._body
            return
        while self._taken < self._length:
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                self._wake = asyncio.get_running_loop().create_future()
                try:
                    async with asyncio.timeout(self.read_timeout_s):
                        await self._wake
                except TimeoutError as exc:
                    self.release()
                    raise LeanConnectionError(f"no byte from MinIO for {self.read_timeout_s:g} s") from exc
                finally:
                    self._wake = None
                continue
            chunk = self._chunks.popleft()
            self._queued -= len(chunk)
            self._taken += len(chunk)
            if self._conn is not None:
                self._conn.taken(self._queued)
            yield chunk
        self._finish()

    def feed(self, data: bytes) -> bytes:
        """Body bytes of a streaming answer arrived; what lies past its end is returned."""
        room = self._length - self._taken - self._queued
        if room <= 0:
            return data
        self._chunks.append(data[:room])
        self._queued += min(room, len(data))
        self._poke()
        return data[room:]

    def fail(self, exc: BaseException) -> None:
        self._error = exc
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.answered(self)

    def release(self) -> None:
        """Done with it: a whole answer's connection is already back; an unread stream's is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abandon()

    async def __aenter__(self) -> LeanAnswer:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class _Connection(asyncio.Protocol):
    """One kept-alive connection to a node: one request at a time, its answer parsed as it comes."""

    def __init__(self, pool: LeanPool, address: tuple[str, int]) -> None:
        self._pool, self.address = pool, address
        self.transport: asyncio.Transport | None = None
        self.reused = False  # it answered before: a close before any byte of the answer is stale
        self.closed = False
        self._buf = bytearray()
        self._head: tuple[int, list[tuple[str, str]], int] | None = None  # status, headers, body length
        self._method = "GET"
        self._waiter: asyncio.Future[LeanAnswer] | None = None
        self._streaming: LeanAnswer | None = None
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's classes
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._streaming is not None:
            extra = self._streaming.feed(data)
            if self._streaming is not None and self._streaming.queued > STREAM_HIGH_BYTES and not self._paused:
                self._paused = True
                self._transport().pause_reading()
            if extra:
                self.close()  # bytes past the answer: the connection is not clean
            return
        if self._waiter is None or self._waiter.done():
            self.close()  # an answer nobody asked for
            return
        self._buf += data
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._waiter is not None and not self._waiter.done():
            if self.reused and not self._buf and self._head is None:
                error: LeanConnectionError = StaleConnection("MinIO closed the idle connection")
            else:
                error = LeanConnectionError(f"MinIO closed the connection before its answer: {exc or 'EOF'}")
            self._waiter.set_exception(error)
        if self._streaming is not None and not self._streaming.complete:
            self._streaming.fail(LeanConnectionError(f"MinIO's answer broke off: {exc or 'EOF'}"))

    # requests
    def ask(self, head: bytes, method: str) -> asyncio.Future[LeanAnswer]:
        self._method = method
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport().write(head)
        return self._waiter

    def _parse(self) -> None:
        assert self._waiter is not None
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > HEAD_MAX_BYTES:
                    self._refuse("an answer head over 64 KiB")
                return
            parsed = parse_head(bytes(self._buf[:end]))
            if parsed is None:
                self._refuse(f"not an HTTP answer: {bytes(self._buf[:80])!r}")
                return
            length = body_length(self._method, *parsed)
            if length is None:
                self._refuse("a body framed by chunks or by the connection's end")
                return
            del self._buf[: end + 4]
            self._head = (*parsed, length)
        status, headers, length = self._head
        if length <= LEAN_WHOLE_MAX_BYTES:
            if len(self._buf) < length:
                return  # the rest of the body is on its way
            body, clean = bytes(self._buf[:length]), len(self._buf) == length
            self._reset()
            answer = LeanAnswer(status, headers, length=length, body=body)
            self._waiter.set_result(answer)
            self._done(answer if clean else None)
            return
        answer = LeanAnswer(
            status, headers, length=length, body=None, conn=self, read_timeout_s=self._pool.read_timeout_s
        )
        self._streaming, rest = answer, bytes(self._buf)
        self._reset()
        self._waiter.set_result(answer)
        if rest:
            self.data_received(rest)

    def _reset(self) -> None:
        self._buf.clear()
        self._head = None

    def _refuse(self, why: str) -> None:
        assert self._waiter is not None
        self._waiter.set_exception(Unframed(why))
        self.close()

    def taken(self, queued: int) -> None:
        """The reader took body bytes; `queued` wait still."""
        if self._paused and queued <= STREAM_HIGH_BYTES // 2 and not self.closed:
            self._paused = False
            self._transport().resume_reading()

    def answered(self, answer: LeanAnswer) -> None:
        """A streamed answer was read to its end."""
        self._streaming = None
        self._done(answer)

    def abandon(self) -> None:
        """An answer left unread: the rest of its body would come first, so the connection goes."""
        self._streaming = None
        self.close()

    def _done(self, answer: LeanAnswer | None) -> None:
        self._waiter = None
        keep = answer is not None and not any(
            n.lower() == "connection" and v.strip().lower() == "close" for n, v in answer.headers
        )
        if keep and not self.closed:
            self.reused = True
            self._pool.idle(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self._pool.forget(self)

    def _transport(self) -> asyncio.Transport:
        if self.transport is None:
            raise LeanConnectionError("the connection is not open")
        return self.transport


class LeanPool:
    """Kept-alive connections per node address; `send` one request, get its LeanAnswer."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self._idle: dict[tuple[str, int], collections.deque[_Connection]] = collections.defaultdict(collections.deque)
        self._open: set[_Connection] = set()

    async def send(self, host: str, port: int, head: bytes, method: str) -> LeanAnswer:
        """Send one request head; the answer once its head (and a small body) arrived."""
        address = (host, port)
        conn = self._take_idle(address)
        if conn is not None:
            try:
                return await self._ask(conn, head, method)
            except StaleConnection:
                pass  # MinIO closed it while idle: a new connection, not the node's fault
        return await self._ask(await self._connect(address), head, method)

    async def _ask(self, conn: _Connection, head: bytes, method: str) -> LeanAnswer:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                return await conn.ask(head, method)
        except TimeoutError as exc:
            conn.close()
            raise LeanConnectionError(f"no answer from MinIO for {self.read_timeout_s:g} s") from exc
        except BaseException:
            conn.close()
            raise

    async def _connect(self, address: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(lambda: _Connection(self, address), *address)
        except (OSError, TimeoutError) as exc:
            raise LeanConnectionError(f"cannot connect to {address[0]}:{address[1]}: {exc!r}") from exc
        self._open.add(conn)
        return conn

    def _take_idle(self, address: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(address)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def idle(self, conn: _Connection) -> None:
        idle = self._idle[conn.address]
        if len(idle) >= IDLE_PER_NODE:
            conn.close()
            return
        idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.address)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
