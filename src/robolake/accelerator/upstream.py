"""The MinIO nodes behind the accelerator: round-robin over healthy ones, failover on errors.

A node that refuses a connection or times out is marked down and skipped; a background task
probes `/minio/health/live` and brings it back. Idempotent requests (and writes whose body is
buffered) are retried on the next node, so losing one node costs a retry, not an error.

The handlers see MinIO only through `Sender` (send one request, get one `UpstreamResponse`), so
their logic can be driven by a scripted upstream in unit tests; `UpstreamPool` is the real one.
When every node fails it raises NoHealthyNodeError (a robolake.errors.ServiceUnavailableError)
from the last connection error; the S3 handler answers it with an S3 503. Bodiless GETs and
HEADs to plain-HTTP nodes (every cache miss) go through the lean client of
robolake.accelerator.lean, everything else through aiohttp's.

A client's body passed on as it arrives (`StreamedBody`) remembers whether reading it failed: a
client that aborts its upload breaks the upstream request too, and that is the client's fault
(ClientBodyError), never the node's, so it neither marks the node down nor is retried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Protocol

import aiohttp
from yarl import URL  # encoded=True: send the request target byte for byte as the client did

from robolake.accelerator.lean import LeanAnswer, LeanPool, Unframed
from robolake.accelerator.tasks import BackgroundTasks
from robolake.errors import ConfigError, RobolakeError, ServiceUnavailableError

RETRYABLE = (aiohttp.ClientConnectionError, asyncio.TimeoutError)
STREAM_CHUNK_BYTES = 64 * 1024
RAW_ANSWER_TIMEOUT_S = 10.0
RAW_ANSWER_MAX_BYTES = 64 * 1024  # an error document; more is not read


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """An HTTP/1.1 request head as sent over a raw connection, headers in order, repeats kept."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


class NoHealthyNodeError(ServiceUnavailableError):
    """Every MinIO node failed for this request (connection refused, reset or timed out)."""


class ClientBodyError(RobolakeError):
    """The client's request body broke (connection lost, bad chunk framing) while it was sent on.

    `cause` is the client side's error (robolake.accelerator.halfclose.BodyCutShort: the client
    half-closed before the whole body was sent, and still waits for the answer).
    """

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class StreamedBody:
    """A client's request body sent on as it arrives; `tap` sees each piece on its way.

    `failed` is the client side's error once reading the body failed: the upstream request then
    breaks with it, and the pool blames the client, not the node. `unfinished`: sending began
    and has not reached the body's end (a slow client, or MinIO refusing it early).
    """

    def __init__(self, source: aiohttp.StreamReader, *, tap: Callable[[bytes], None] | None = None) -> None:
        self._source = source
        self._tap = tap
        self.failed: BaseException | None = None
        self.started = self.finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            while chunk := await self._source.read(STREAM_CHUNK_BYTES):
                if self._tap is not None:
                    self._tap(chunk)
                yield chunk
        except Exception as exc:  # aiohttp's payload errors: connection lost, bad chunk, short body
            self.failed = exc
            raise
        self.finished = True

    @property
    def unfinished(self) -> bool:
        return self.started and not self.finished


Body = bytes | StreamedBody | None


@dataclasses.dataclass
class Node:
    """One MinIO node and what the pool knows of it (reported on /stats)."""

    endpoint: str
    healthy: bool = True
    errors: int = 0
    requests: int = 0
    down_since: float | None = None
    live_since: float | None = None  # first successful probe after being down

    @functools.cached_property
    def address(self) -> tuple[str, int] | None:
        """(host, port) of a plain-HTTP node; None for https (the lean client speaks plain TCP only)."""
        url = URL(self.endpoint)
        if url.scheme != "http" or url.host is None or url.port is None:
            return None
        return url.host, url.port

    @functools.cached_property
    def host_header(self) -> str:
        """The Host aiohttp would send to this node (no port when it is the scheme's default)."""
        url = URL(self.endpoint)
        return url.host_port_subcomponent or url.raw_authority


class UpstreamResponse(Protocol):
    """One answer from MinIO, open until released (`async with` releases it)."""

    @property
    def status(self) -> int:
        """The HTTP status code."""

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The headers as MinIO sent them: its spelling, repeated names kept apart."""

    @property
    def content_length(self) -> int | None:
        """The Content-Length MinIO sent, None if it sent none."""

    async def read(self) -> bytes:
        """The whole body."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""

    def release(self) -> None:
        """Give the connection back (the unread body is discarded)."""

    async def __aenter__(self) -> UpstreamResponse: ...

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@dataclasses.dataclass(frozen=True)
class UpstreamRequest:
    """One request for MinIO: `target` is the path and query exactly as they go on the wire."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: Body = None


class Sender(Protocol):
    """What the handlers need of MinIO: send one request, get one answer."""

    async def request(self, request: UpstreamRequest, *, retry: bool, second_opinion: bool = False) -> UpstreamResponse:
        """Send `request` to a node; see UpstreamPool.request for `retry` and `second_opinion`."""

    async def request_without_body(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send only the head of `request`, then end the connection's sending side; MinIO's answer."""


class Fanout(Protocol):
    """What the cluster view needs of MinIO: one request asked of every healthy node."""

    async def request_each(self, request: UpstreamRequest) -> list[UpstreamResponse]:
        """Send a bodiless `request` to every healthy node at once; the answers, in node order."""


class Upstream(Sender, Fanout, Protocol):
    """A Sender with a lifetime and nodes to report on (the accelerator's view of the MinIO cluster)."""

    nodes: list[Node]

    async def start(self) -> None:
        """Open connections and start background work."""

    async def close(self) -> None:
        """Stop background work (cancelled and awaited) and close connections."""

    def healthy_count(self) -> int:
        """How many nodes are taking requests."""


class NodeResponse:
    """aiohttp's response from one node, seen through the UpstreamResponse protocol."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @functools.cached_property
    def headers(self) -> list[tuple[str, str]]:
        # raw_headers: names in MinIO's spelling (`ETag`, not aiohttp's `Etag`), repeats (two `Vary`) kept.
        return [
            (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
            for n, v in self._response.raw_headers
        ]

    @property
    def content_length(self) -> int | None:
        return self._response.content_length

    async def read(self) -> bytes:
        return await self._response.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()  # whatever arrived: fewest Python steps per byte

    def release(self) -> None:
        self._response.release()

    async def __aenter__(self) -> NodeResponse:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._response.release()


class UpstreamPool:
    """The MinIO nodes as one Upstream: picks a node per request, fails over, probes the ones down."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 300.0,
        probation_s: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.probation_s = probation_s
        self.ssl_context = ssl_context  # for https nodes; None: the system's trust store
        if not endpoints:
            raise ConfigError("the accelerator needs at least one MinIO endpoint (--upstream)")
        self.nodes = [Node(e.rstrip("/")) for e in endpoints]
        self._rr = itertools.cycle(range(len(self.nodes)))
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.lean = LeanPool(connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
        self._background = BackgroundTasks("upstream prober")

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=256, limit_per_host=128, keepalive_timeout=30, ttl_dns_cache=None, ssl=self.ssl_context or True
        )
        # auto_decompress off: bodies pass through byte for byte; no default headers added that
        # could collide with what the client signed.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            read_bufsize=1 << 20,
        )
        self._background.spawn(self._probe_loop())

    async def close(self) -> None:
        await self._background.close()
        self.lean.close()
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

    async def request(self, request: UpstreamRequest, *, retry: bool, second_opinion: bool = False) -> UpstreamResponse:
        """Send to one node; on a connection failure try the next when `retry` allows.

        A streamed (unbuffered) body can only be sent once: pass retry=False with it.
        `second_opinion` (reads only): a 404 or 503 is passed on only when every healthy node
        gives it. A MinIO node that rejoined the cluster can, for a while, answer NoSuchKey or
        SlowDownRead for objects the others serve (seen as lakeFS answering 410 for an object it
        had just written); a genuine 404 costs one extra request per other healthy node.
        """
        last: BaseException | None = None
        held: UpstreamResponse | None = None  # a 404/503 waiting for other opinions
        nodes = self.order()
        tried = 0
        for position, node in enumerate(nodes):
            if held is not None and not node.healthy:
                continue  # second opinions come from healthy nodes only
            tried += 1
            try:
                response = await self._send(node, request)
            except Exception as exc:
                self._blame(node, request.body, exc)
                last = exc
                if not retry:
                    break
                continue
            if second_opinion and response.status in (404, 503) and any(n.healthy for n in nodes[position + 1 :]):
                node.errors += response.status == 503
                if held is not None:
                    held.release()
                held = response
                continue
            if held is not None:
                held.release()
            return response
        if held is not None:
            return held
        raise NoHealthyNodeError(
            f"no MinIO node answered {request.method} (tried {tried} of {len(nodes)}): {last}"
        ) from last

    async def request_each(self, request: UpstreamRequest) -> list[UpstreamResponse]:
        """Send a bodiless request to every healthy node (every node when none is) at once.

        The answers of the nodes that answered, in node order (each to be released); a node
        that failed to answer is marked down and left out. NoHealthyNodeError when none answered.
        """
        nodes = [n for n in self.nodes if n.healthy] or list(self.nodes)
        outcomes = await asyncio.gather(*(self._send(node, request) for node in nodes), return_exceptions=True)
        answers: list[UpstreamResponse] = []
        last: BaseException | None = None
        for node, outcome in zip(nodes, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                last = outcome
                if isinstance(outcome, RETRYABLE):
                    self.mark_down(node)
                continue
            answers.append(outcome)
        unexpected = next((o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, RETRYABLE)), None)
        if unexpected is not None:  # a bug, not a node's failure: raised, as `request` does
            for answer in answers:
                answer.release()
            raise unexpected
        if not answers:
            raise NoHealthyNodeError(f"no MinIO node answered {request.method} (asked {len(nodes)}): {last}") from last
        return answers

    async def _send(self, node: Node, request: UpstreamRequest) -> UpstreamResponse:
        node.requests += 1
        lean = self._lean_head(node, request)
        if lean is not None:
            host, port, head = lean
            try:
                return await self.lean.send(host, port, head, request.method)
            except Unframed:
                pass  # an answer framed otherwise: asked again, through aiohttp
        url = URL(node.endpoint + request.target, encoded=True)
        response = await self.session.request(
            request.method, url, headers=request.headers, data=request.body, allow_redirects=False
        )
        return NodeResponse(response)

    def _lean_head(self, node: Node, request: UpstreamRequest) -> tuple[str, int, bytes] | None:
        """(host, port, request head) when the lean client can send `request`: a bodiless GET or
        HEAD to a plain-HTTP node, with no header that frames a body or could not go as it is."""
        if request.body is not None or request.method not in ("GET", "HEAD") or node.address is None:
            return None
        headers = list(request.headers.items())
        for name, value in headers:
            lower = name.lower()
            if lower in ("transfer-encoding", "expect") or (lower == "content-length" and value != "0"):
                return None
            if any(c in name or c in value for c in "\r\n\0"):
                return None
        if not any(name.lower() == "host" for name, _ in headers):
            headers.insert(0, ("Host", node.host_header))
        if any(c in request.target for c in " \r\n\0"):
            return None
        return *node.address, request_head(request.method, request.target, headers)

    async def request_without_body(self, request: UpstreamRequest) -> UpstreamResponse:
        """What MinIO answers a client that half-closed before sending its whole body: the same
        head, no body, then EOF. MinIO cannot carry such a request out (its body never completes);
        it answers from the headers (411 for a chunked PutObject, 403 unsigned) as it would have.
        aiohttp's client cannot half-close, so this one goes over a raw connection."""
        node = self.order()[0]
        url = URL(node.endpoint)
        headers = list(request.headers.items())  # repeated names kept (a CIMultiDict's items)
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers.append(("Transfer-Encoding", "chunked"))
        head = request_head(request.method, request.target, headers)
        try:
            async with asyncio.timeout(RAW_ANSWER_TIMEOUT_S):
                tls = (self.ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
                reader, writer = await asyncio.open_connection(url.host, url.port, ssl=tls)
                try:
                    writer.write(head)
                    writer.write_eof()
                    raw = await reader.read(RAW_ANSWER_MAX_BYTES)
                    while len(raw) < RAW_ANSWER_MAX_BYTES and (more := await reader.read(RAW_ANSWER_MAX_BYTES)):
                        raw += more
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            raise NoHealthyNodeError(f"no MinIO node answered {request.method} without its body: {exc!r}") from exc
        answer = LeanAnswer.of_bytes(raw)
        if answer is None:
            raise NoHealthyNodeError(f"MinIO's answer did not parse: {raw[:80]!r}")
        return answer

    def _blame(self, node: Node, body: Body, exc: Exception) -> None:
        """Whose fault a failed send was: the client's body (ClientBodyError), not a connection
        error (raised on), or a connection error, which marks `node` down unless it cut a
        streamed body off mid-way: that says nothing about the node (a slow client, or MinIO
        closing after an early answer); the next request to a dead node finds it out."""
        if isinstance(body, StreamedBody) and body.failed is not None:
            raise ClientBodyError(f"the client's request body broke: {body.failed!r}", body.failed) from exc
        if not isinstance(exc, RETRYABLE):
            raise exc
        if not (isinstance(body, StreamedBody) and body.unfinished):
            self.mark_down(node)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for node in self.nodes:
                if node.healthy:
                    continue
                try:
                    async with self.session.get(
                        node.endpoint + "/minio/health/live",
                        timeout=aiohttp.ClientTimeout(total=2),
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
