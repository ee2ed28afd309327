"""The raw path's parts on real sockets: the pump, the answer head, the size hints, node failover."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from robolake.accelerator.metrics import Metrics
from robolake.accelerator.splice import LargeGets, SizeHints, parse_head, pump
from robolake.accelerator.upstream import Node

pytestmark = pytest.mark.skipif(not hasattr(os, "splice"), reason="splice(2) is Linux only")


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _feed(sock: socket.socket, data: bytes, *, close: bool) -> threading.Thread:
    def run() -> None:
        sock.setblocking(True)
        try:
            sock.sendall(data)
        except OSError:  # the reading side closed first (a test of exactly that)
            return
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _drain(sock: socket.socket, out: bytearray) -> threading.Thread:
    def run() -> None:
        sock.setblocking(True)
        while chunk := sock.recv(1 << 20):
            out.extend(chunk)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_pump_moves_exactly_count_bytes_and_leaves_the_rest() -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    upstream_far, upstream = _pair()
    client, client_far = _pair()
    received = bytearray()
    feeder = _feed(upstream_far, data + b"NEXT", close=False)
    drainer = _drain(client_far, received)
    pump(upstream.fileno(), client.fileno(), len(data), idle_s=10, stop=threading.Event())
    client.close()
    feeder.join()
    drainer.join()
    assert bytes(received) == data
    assert upstream.recv(16) == b"NEXT"  # a byte past the count is never taken


def test_pump_reports_a_body_that_ends_early() -> None:
    upstream_far, upstream = _pair()
    client, client_far = _pair()
    received = bytearray()
    feeder = _feed(upstream_far, b"x" * 1000, close=True)
    drainer = _drain(client_far, received)
    with pytest.raises(ConnectionResetError, match="ended"):
        pump(upstream.fileno(), client.fileno(), 5000, idle_s=10, stop=threading.Event())
    client.close()
    feeder.join()
    drainer.join()
    assert len(received) == 1000


def test_pump_gives_up_when_nothing_moves_or_when_stopped() -> None:
    upstream_far, upstream = _pair()
    client, client_far = _pair()  # both far ends held open: nothing arrives, nothing closes
    with pytest.raises(TimeoutError, match="nothing moved"):
        pump(upstream.fileno(), client.fileno(), 10, idle_s=0.3, stop=threading.Event())
    stop = threading.Event()
    stop.set()
    with pytest.raises(ConnectionAbortedError):
        pump(upstream.fileno(), client.fileno(), 10, idle_s=30, stop=stop)
    assert upstream_far.fileno() >= 0 and client_far.fileno() >= 0


def test_pump_reports_a_client_that_went_away() -> None:
    upstream_far, upstream = _pair()
    client, client_far = _pair()
    client_far.close()
    feeder = _feed(upstream_far, os.urandom(1 << 20), close=False)
    with pytest.raises(OSError):
        pump(upstream.fileno(), client.fileno(), 1 << 20, idle_s=10, stop=threading.Event())
    upstream.close()
    feeder.join()


def test_answer_heads_parse_or_are_refused() -> None:
    status, headers = parse_head(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nX-Amz-Meta-A: b: c")
    assert status == 206 and headers == [("Content-Length", "10"), ("X-Amz-Meta-A", "b: c")]
    for bad in (b"SSH-2.0-OpenSSH", b"HTTP/1.1 abc OK", b"HTTP/1.1 200 OK\r\nno colon", b"HTTP/1.1 200 OK\r\n x: y"):
        assert parse_head(bad) is None, bad


def test_size_hints_route_by_range_span_or_by_what_was_seen() -> None:
    hints = SizeHints(1000, capacity=2)
    key = ("b", "video.mp4")
    assert not hints.large(key, "")
    assert hints.large(key, "bytes=0-1000") and not hints.large(key, "bytes=0-999")
    assert hints.large(key, "bytes=-1001") and not hints.large(key, "bytes=-1000")
    hints.note(key, 5000)
    assert hints.large(key, "") and hints.large(key, "bytes=10-") and not hints.large(key, "bytes=0-99")
    hints.note(key, 10)  # it shrank: routed the usual way again
    assert not hints.large(key, "")
    for n in range(3):
        hints.note(("b", str(n)), 5000)
    assert not hints.large(("b", "0"), "") and hints.large(("b", "2"), "")  # the oldest dropped


class _Nodes:
    def __init__(self, endpoints: list[str]) -> None:
        self.nodes = [Node(e) for e in endpoints]
        self.down: list[str] = []

    def order(self) -> list[Node]:
        return [n for n in self.nodes if n.healthy]

    def mark_down(self, node: Node) -> None:
        node.healthy = False
        self.down.append(node.endpoint)


def test_a_node_that_refuses_is_marked_down_and_the_next_answers() -> None:
    async def scenario() -> tuple[int, bytes, list[str]]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
        live = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        nodes = _Nodes([dead, live])
        large = LargeGets(nodes, Metrics(), min_bytes=100)
        try:
            got = await large._ask("/b/k", [("Host", "x")])
            assert got is not None
            with got.sock:
                return got.status, got.prefix, nodes.down
        finally:
            large.close()
            closed.close()
            server.close()

    status, prefix, down = asyncio.run(scenario())
    assert status == 200 and prefix == b"hello" and len(down) == 1


def test_pump_over_tcp_moves_a_trickled_body_whose_rest_is_below_the_low_water_mark() -> None:
    """TCP honours SO_RCVLOWAT: the pump lowers it to the body's rest, else its last wait would
    only end at the poll's timeout."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        upstream_far = socket.create_connection(server.getsockname())
        upstream, _ = server.accept()
        client_far = socket.create_connection(server.getsockname())
        client, _ = server.accept()
    for sock in (upstream, client):
        sock.setblocking(False)
    data = os.urandom(3 * 256 * 1024 + 777)

    def trickle() -> None:
        for start in range(0, len(data), 10_000):
            upstream_far.sendall(data[start : start + 10_000])
            time.sleep(0.0005)

    received = bytearray()
    feeder, drainer = threading.Thread(target=trickle), _drain(client_far, received)
    feeder.start()
    try:
        pump(upstream.fileno(), client.fileno(), len(data), idle_s=5, stop=threading.Event())
        lowat = upstream.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
    finally:
        client.close()
        feeder.join()
        drainer.join()
        for sock in (upstream, upstream_far, client_far):
            sock.close()
    assert bytes(received) == data
    assert 0 < lowat < 256 * 1024  # the last wait asked for the rest of the body, not 256 KiB
