"""Large GETs at wire speed: MinIO's body moved from socket to socket by the kernel (splice).

Relaying a 64 MiB object through aiohttp costs two copies and hundreds of Python steps per
MiB (measured: ~1 CPU-second per GiB, 0.62x of direct GET with warp on two cores). Here a GET
for an object known to be large goes to a node over a plain socket of its own; the answer's
head is read and relayed by aiohttp, and the body is moved from that socket through a pipe to
the client's socket with splice(2), in a worker thread, a few system calls per MiB:

    hints.note(key, length)       an answer of over `min_bytes` was relayed for `key` (GET or HEAD)
    LargeGets.relay(...)          for a GET whose key is hinted large, or whose Range spans more:
        connect to a healthy node, send the client's own signed request (Host kept)
        read the answer's head; not a 200/206 with a Content-Length: None (the caller asks
        MinIO again its usual way, with second opinions; a GET may be sent twice)
        a body within `min_bytes` (the object shrank): read whole, hint dropped
        else: head and the body bytes read with it through aiohttp, drained to the socket,
              then `pump` splices the rest; aiohttp finishes the response (keep-alive kept)

A hint is only a route: the raw path relays whatever MinIO answers, so a stale hint costs one
extra request at most, never a wrong byte. Not used (the usual path instead): TLS on either
side, no splice(2) on this OS, every worker thread busy. A node that refuses the connection is
marked down and the next is tried, as the pool does. A body that breaks off (MinIO gone, the
client gone, nothing moved for `idle_s`) closes the client's connection, as a short body must.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import os
import select
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from robolake.accelerator import replay
from robolake.accelerator.headers import relayed
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.lean import HEAD_MAX_BYTES, body_length, parse_head
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.upstream import Node, request_head

PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size; a smaller pipe still works
# The pump waits for MinIO's socket to hold this much (SO_RCVLOWAT; never more than the body's
# rest) before it splices again: a few hundred large splices per 64 MiB instead of one per segment.
LOWAT_BYTES = 256 * 1024
HINTS_MAX = 65536
SPLICE = hasattr(os, "splice")
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


class Nodes(Protocol):
    """The pool's choice of node per request (UpstreamPool)."""

    def order(self) -> list[Node]: ...

    def mark_down(self, node: Node) -> None: ...


class SizeHints:
    """Keys whose last answer was larger than `min_bytes` (the most recent HINTS_MAX)."""

    def __init__(self, min_bytes: int, *, capacity: int = HINTS_MAX) -> None:
        self.min_bytes = min_bytes
        self._keys: collections.OrderedDict[ObjectKey, None] = collections.OrderedDict()
        self._capacity = capacity

    def note(self, key: ObjectKey, length: int | None) -> None:
        if length is None or length <= self.min_bytes:
            self._keys.pop(key, None)
            return
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)

    def large(self, key: ObjectKey, range_header: str) -> bool:
        """Whether a GET of `key` with this Range (or none) likely answers more than `min_bytes`."""
        span = replay.parse_range(range_header) if range_header else None
        if span is not None and span.last is not None:  # a bounded span or a suffix
            size = span.last - span.first + 1 if span.first is not None else span.last
            return size > self.min_bytes
        return key in self._keys


def pump(src: int, dst: int, count: int, *, idle_s: float, stop: threading.Event) -> None:
    """Move `count` bytes from socket `src` to socket `dst` (both non-blocking) through a pipe.

    ConnectionResetError when `src` ends early, TimeoutError when nothing moved for `idle_s`,
    ConnectionAbortedError when `stop` is set, OSError from either socket (the client gone).
    """
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    source = socket.socket(fileno=os.dup(src))  # for its options only (closing it closes the dup)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        capacity = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        held = sent = lowat = 0
        last = time.monotonic()
        while sent < count:
            wanted = min(count - sent - held, capacity - held)
            moved = False
            if wanted > 0:
                got = _splice(src, w, wanted)
                if got == 0:
                    raise ConnectionResetError(f"MinIO's answer ended {count - sent - held} bytes early")
                moved = got > 0
                held += max(got, 0)
            if held:
                put = _splice(r, dst, held)
                moved = moved or put > 0
                held -= max(put, 0)
                sent += max(put, 0)
            if moved:
                last = time.monotonic()
                continue
            if stop.is_set():
                raise ConnectionAbortedError("the accelerator is stopping")
            if time.monotonic() - last > idle_s:
                raise TimeoutError(f"nothing moved for {idle_s:g} s with {count - sent} bytes to go")
            if wanted > 0 and (goal := min(LOWAT_BYTES, wanted)) != lowat:
                lowat = _set_lowat(source, goal)
            _wait(src if wanted > 0 else None, dst if held else None)
    finally:
        source.close()
        os.close(r)
        os.close(w)


def _set_lowat(sock: socket.socket, count: int) -> int:
    """Have poll report `sock` readable only once `count` bytes are queued (not on every segment)."""
    with contextlib.suppress(OSError):  # a socket type without it: woken per segment, as before
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, count)
    return count


def _splice(src: int, dst: int, count: int) -> int:
    """Bytes moved; -1 when either side would block."""
    try:
        return os.splice(src, dst, count, flags=_FLAGS)
    except BlockingIOError:
        return -1


def _wait(readable: int | None, writable: int | None) -> None:
    poller = select.poll()
    if readable is not None:
        poller.register(readable, select.POLLIN)
    if writable is not None:
        poller.register(writable, select.POLLOUT)
    poller.poll(250)


class RawAnswer:
    """A node's answer head read off a plain socket, and the body bytes that came with it."""

    def __init__(self, sock: socket.socket, status: int, headers: list[tuple[str, str]], prefix: bytes) -> None:
        self.sock, self.status, self.headers, self.prefix = sock, status, headers, prefix

    @property
    def length(self) -> int | None:
        return body_length("GET", self.status, self.headers)


class LargeGets:
    """The raw path for large GETs: `relay` answers one, or returns None for the usual path."""

    def __init__(
        self,
        nodes: Nodes,
        metrics: Metrics,
        *,
        min_bytes: int,
        connect_timeout_s: float = 2.0,
        idle_s: float = 300.0,
        threads: int = 32,
    ) -> None:
        self.hints = SizeHints(min_bytes)
        self._nodes = nodes
        self._plain = all(node.endpoint.startswith("http://") for node in nodes.order())
        self._metrics = metrics
        self._connect_timeout_s = connect_timeout_s
        self._idle_s = idle_s
        self._threads = threads
        self._busy = 0
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="robolake-splice")

    def wanted(self, request: web.Request, key: ObjectKey) -> bool:
        """Whether this GET takes the raw path: hinted large, splice(2) here, plain TCP, a thread free."""
        if not SPLICE or request.method != "GET" or self._busy >= self._threads or self._stop.is_set():
            return False
        if not self._plain:  # TLS to the nodes: the bytes must pass through ssl, not splice(2)
            return False
        transport = request.transport
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            return False
        return self.hints.large(key, request.headers.get("range", ""))

    async def relay(
        self, request: web.Request, key: ObjectKey, target: str, headers: Sequence[tuple[str, str]]
    ) -> web.StreamResponse | None:
        """Send `GET target` with `headers` to a node over a socket of its own and relay the answer."""
        self._busy += 1
        try:
            started = time.perf_counter()
            answer = await self._ask(target, headers)
            if answer is None:
                return None
            self._metrics.upstream_latency["get_raw"].observe(time.perf_counter() - started)
            with answer.sock:
                length = answer.length
                if answer.status not in (200, 206) or length is None:
                    self._metrics.inc("raw_get_declined")
                    return None
                self.hints.note(key, length)
                if length <= self.hints.min_bytes:
                    prefix = answer.prefix[:length]
                    body = prefix + await _recv_exactly(answer.sock, length - len(prefix))
                    return web.Response(status=answer.status, body=body, headers=CIMultiDict(relayed(answer.headers)))
                return await self._spliced(request, answer, length)
        finally:
            self._busy -= 1

    async def _spliced(self, request: web.Request, answer: RawAnswer, length: int) -> web.StreamResponse:
        stream = web.StreamResponse(status=answer.status, headers=CIMultiDict(relayed(answer.headers)))
        stream.content_length = length
        await stream.prepare(request)
        prefix = answer.prefix[:length]
        await stream.write(prefix)
        transport = request.transport
        assert transport is not None  # checked by `wanted`; prepare raises if it closed since
        await _drain_empty(transport, self._idle_s)
        src, dst = answer.sock.fileno(), os.dup(transport.get_extra_info("socket").fileno())
        loop = asyncio.get_running_loop()
        try:
            work = functools.partial(pump, src, dst, length - len(prefix), idle_s=self._idle_s, stop=self._stop)
            await loop.run_in_executor(self._pool, work)
        except OSError as exc:  # the body broke off: the client must see a short body, not a whole one
            self._metrics.inc("raw_get_broken")
            transport.close()
            raise ConnectionResetError(f"large GET relay broke off: {exc}") from exc
        finally:
            os.close(dst)
        self._metrics.inc("raw_get_spliced")
        self._metrics.inc("raw_get_bytes", length)
        await stream.write_eof()
        return stream

    async def _ask(self, target: str, headers: Sequence[tuple[str, str]]) -> RawAnswer | None:
        """The first healthy node's answer head; None when none could be asked (the usual path then tries)."""
        head = request_head("GET", target, headers)
        for node in self._nodes.order():
            if not node.healthy:
                break
            url = URL(node.endpoint)
            node.requests += 1
            try:
                host, port = url.host or "127.0.0.1", url.port or 80
                return await _exchange(host, port, head, self._connect_timeout_s, self._idle_s)
            except (OSError, TimeoutError):
                self._nodes.mark_down(node)
            except ValueError:  # a head that does not parse: the usual path reports it
                return None
        return None

    def close(self) -> None:
        """Stop every relay in progress (their clients see a short body) and the worker threads."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


async def _exchange(host: str, port: int, head: bytes, connect_timeout_s: float, head_timeout_s: float) -> RawAnswer:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        async with asyncio.timeout(connect_timeout_s):
            await loop.sock_connect(sock, (host, port))
        raw = b""
        async with asyncio.timeout(head_timeout_s):
            await loop.sock_sendall(sock, head)
            while (end := raw.find(b"\r\n\r\n")) < 0:
                if len(raw) > HEAD_MAX_BYTES:
                    raise ValueError("answer head too long")
                chunk = await loop.sock_recv(sock, HEAD_MAX_BYTES)
                if not chunk:
                    raise ConnectionResetError("the node closed the connection before its answer")
                raw += chunk
        parsed = parse_head(raw[:end])
        if parsed is None:
            raise ValueError(f"not an HTTP answer: {raw[:80]!r}")
        return RawAnswer(sock, parsed[0], parsed[1], raw[end + 4 :])
    except BaseException:
        sock.close()
        raise


async def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    loop = asyncio.get_running_loop()
    parts: list[bytes] = []
    while count > 0:
        chunk = await loop.sock_recv(sock, min(count, 1 << 20))
        if not chunk:
            raise ConnectionResetError(f"MinIO's answer ended {count} bytes early")
        parts.append(chunk)
        count -= len(chunk)
    return b"".join(parts)


async def _drain_empty(transport: asyncio.Transport, idle_s: float) -> None:
    """Wait until aiohttp has handed every byte written so far to the socket (the pump writes next).

    A loopback send of the head and a first piece of body is taken at once; a slow client's
    buffer is polled until it empties, as long as it moves within `idle_s`.
    """
    left, since = transport.get_write_buffer_size(), time.monotonic()
    while left:
        if transport.is_closing():
            raise ConnectionResetError("the client's connection closed before the body")
        await asyncio.sleep(0.002)
        now = transport.get_write_buffer_size()
        if now < left:
            since = time.monotonic()
        elif time.monotonic() - since > idle_s:
            raise TimeoutError(f"the client took nothing for {idle_s:g} s")
        left = now
