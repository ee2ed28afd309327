"""The MinIO nodes behind the accelerator: round-robin over healthy ones, failover on errors.

A node that refuses a connection or times out is marked down and skipped; a background task
probes `/minio/health/live` and brings it back. Idempotent requests (and writes whose body is
buffered) are retried on the next node, so losing one node costs a retry, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Mapping

import aiohttp
from yarl import URL  # encoded=True: send the request target byte for byte as the client did

RETRYABLE = (aiohttp.ClientConnectionError, asyncio.TimeoutError)


@dataclasses.dataclass
class Node:
    endpoint: str
    healthy: bool = True
    errors: int = 0
    requests: int = 0
    down_since: float | None = None
    live_since: float | None = None  # first successful probe after being down


def response_headers(response: aiohttp.ClientResponse) -> list[tuple[str, str]]:
    """A node's response headers as it sent them: names in its spelling (`ETag`, not aiohttp's
    `Etag`), repeated ones (MinIO sends `Vary` twice) kept apart, values decoded as aiohttp does."""
    return [(n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
            for n, v in response.raw_headers]


class NoHealthyNodeError(Exception):
    """Every node failed for this request."""


class UpstreamPool:
    def __init__(self, endpoints: list[str], *, connect_timeout_s: float = 2.0, read_timeout_s: float = 300.0,
                 probation_s: float = 5.0) -> None:
        self.probation_s = probation_s
        if not endpoints:
            raise ValueError("the accelerator needs at least one MinIO endpoint")
        self.nodes = [Node(e.rstrip("/")) for e in endpoints]
        self._rr = itertools.cycle(range(len(self.nodes)))
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._prober: asyncio.Task[None] | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=128, keepalive_timeout=30, ttl_dns_cache=None)
        # auto_decompress off: bodies pass through byte for byte; no default headers added that
        # could collide with what the client signed.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"), read_bufsize=1 << 20,
        )
        self._prober = asyncio.create_task(self._probe_loop())

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamPool.start() was not called")
        return self._session

    def order(self) -> list[Node]:
        """Nodes to try for one request: healthy ones round-robin first, then the rest."""
        start = next(self._rr)
        rotated = self.nodes[start:] + self.nodes[:start]
        return [n for n in rotated if n.healthy] + [n for n in rotated if not n.healthy]

    def mark_down(self, node: Node) -> None:
        node.errors += 1
        if node.healthy:
            node.healthy = False
            node.down_since = time.monotonic()

    async def request(
        self, method: str, path_qs: str, headers: Mapping[str, str], body: bytes | aiohttp.StreamReader | None, *,
        retry: bool, second_opinion: bool = False,
    ) -> tuple[Node, aiohttp.ClientResponse]:
        """Send to one node; on a connection failure try the next when `retry` allows.

        A streamed (unbuffered) body can only be sent once: pass retry=False with it.
        `second_opinion` (reads only): a 404 or 503 is passed on only when every healthy node
        gives it. A MinIO node that rejoined the cluster can, for a while, answer NoSuchKey or
        SlowDownRead for objects the others serve (seen as lakeFS answering 410 for an object it
        had just written); a genuine 404 costs one extra request per other healthy node.
        """
        last: BaseException | None = None
        held: tuple[Node, aiohttp.ClientResponse] | None = None  # a 404/503 waiting for other opinions
        nodes = self.order()
        for position, node in enumerate(nodes):
            if held is not None and not node.healthy:
                continue  # second opinions come from healthy nodes only
            node.requests += 1
            try:
                response = await self.session.request(
                    method, URL(node.endpoint + path_qs, encoded=True), headers=headers, data=body,
                    allow_redirects=False,
                )
            except RETRYABLE as exc:
                self.mark_down(node)
                last = exc
                if not retry:
                    break
                continue
            if second_opinion and response.status in (404, 503) and any(n.healthy for n in nodes[position + 1:]):
                node.errors += response.status == 503
                if held is not None:
                    held[1].release()
                held = (node, response)
                continue
            if held is not None:
                held[1].release()
            return node, response
        if held is not None:
            return held
        raise NoHealthyNodeError(str(last) if last else "no MinIO node answered")

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for node in self.nodes:
                if node.healthy:
                    continue
                try:
                    async with self.session.get(
                        node.endpoint + "/minio/health/live", timeout=aiohttp.ClientTimeout(total=2),
                    ) as response:
                        live = response.status == 200
                except RETRYABLE:
                    live = False
                if not live:
                    node.live_since = None
                    continue
                now = time.monotonic()
                node.live_since = node.live_since or now
                # A restarted MinIO node can answer NoSuchKey for objects written while it was
                # away until its connections to the peers settle: keep it on probation first.
                if now - node.live_since >= self.probation_s:
                    node.healthy = True
                    node.down_since = node.live_since = None

    def healthy_count(self) -> int:
        return sum(1 for n in self.nodes if n.healthy)
