"""The S3 endpoint's request handling: answer small-object GET/HEAD from the cache, forward the rest.

Request flow:
    GET/HEAD /bucket/key, signed by a principal whose secret we hold (SigV4 verified here)
        -> memory tier -> disk tier -> MinIO (the client's own signed request, Host kept),
           filling the cache when the object is below the size threshold (robolake.accelerator.fill)
    POST /_robolake/batch -> robolake.accelerator.batch
    GET /bucket?uploads (no prefix) -> every node, answers merged (robolake.accelerator.cluster)
    writes (PUT, POST, DELETE) -> MinIO, then invalidate what it changed (robolake.accelerator.writes)
    anything else (listings, bucket ops, unsigned or unverifiable requests) -> MinIO untouched
MinIO therefore authenticates every request the cache does not answer, and produces every error.
A principal other than root is answered from the cache only while MinIO's own answer to it
allowed it that bucket, recently (robolake.accelerator.access says why that never reads more).
A cache answer carries the headers MinIO would send for that request (robolake.accelerator.answer):
whatever the cache cannot answer exactly (a 412, a 416, an odd Range, a request MinIO would
refuse before looking at the object) is forwarded instead. The key of a request is MinIO's
object name for its path (robolake.accelerator.s3xml.split_path). Request bodies are held in
memory only within bounds (robolake.accelerator.forward.RequestBodies); the rest stream.
MinIO is reached through a `Sender` (robolake.accelerator.upstream), so a scripted one can stand in.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from robolake.accelerator import replay, s3xml
from robolake.accelerator.access import Gatekeeper
from robolake.accelerator.answer import CacheAnswer, answer_from_copy
from robolake.accelerator.batch import BatchHandler
from robolake.accelerator.cache import TieredCache
from robolake.accelerator.cluster import ClusterLister, is_node_local
from robolake.accelerator.fill import Filler
from robolake.accelerator.forward import RequestBodies, Target, answer_broken_body, send
from robolake.accelerator.headers import forwarded, relayed
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.relay import relay, send_answer
from robolake.accelerator.revalidate import Revalidator
from robolake.accelerator.splice import LargeGets
from robolake.accelerator.upstream import ClientBodyError, NoHealthyNodeError, Sender, StreamedBody
from robolake.accelerator.writes import WriteForwarder
from robolake.sigv4 import Verified, Verifier

# Request headers whose answer the cache leaves to MinIO: date conditionals (MinIO's second-
# granularity rules), and Origin (MinIO's CORS headers answer the request, not the object).
FORWARDED_WHEN_PRESENT = ("if-modified-since", "if-unmodified-since", "origin")
# MinIO answers 400 to a GET whose X-Amz-Content-Sha256 is neither a hex digest nor one of its
# keywords, signature or not; the cache answers only these two forms and leaves the rest to MinIO.
CACHE_PAYLOAD_HASH = re.compile(r"[0-9a-f]{64}|UNSIGNED-PAYLOAD")
# Headers the cache reads: sent twice, Go reads the first and signs them joined, so MinIO decides.
READ_ONCE = ("authorization", "host", "range", "if-match", "if-none-match", "x-amz-checksum-mode", "x-amz-date")
PRESIGN_QUERY = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Algorithm")
# MinIO refuses (400) every request whose headers, counted its way (name + first value, per
# name), pass 8 KiB, whose x-amz-meta-/x-minio-meta- headers pass 2 KiB, or that names a reserved
# X-Minio-Internal- header (setRequestLimitMiddleware). Such a request is MinIO's to answer; the
# budgets keep a margin below MinIO's limits, as Go leaves some headers (Host) out of its count.
HEADER_BUDGET, USER_METADATA_BUDGET = 7 * 1024, 1536
USER_METADATA = ("x-amz-meta-", "x-minio-meta-")
RESERVED_HEADER = "x-minio-internal-"


class ReadListener(Protocol):
    """Told of every verified demand read of an object (the prefetcher learns from them)."""

    def on_read(self, key: ObjectKey, *, hit: bool) -> None:
        """A client read `key`; `hit`: the cache answered it."""


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class S3Handler:
    """The one aiohttp handler of the S3 port: routes a request to the cache, batch GET or MinIO."""

    cache: TieredCache
    filler: Filler
    upstream: Sender
    verifier: Verifier
    revalidator: Revalidator
    batch: BatchHandler
    metrics: Metrics
    bodies: RequestBodies
    writes: WriteForwarder
    cluster: ClusterLister
    access: Gatekeeper
    read_listeners: Sequence[ReadListener] = ()
    large: LargeGets | None = None  # the raw path for large GETs (robolake.accelerator.splice)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        method = request.method
        # request.raw_path is the request target exactly as sent; rel_url is normalised (dot
        # segments removed), which would both change the key and break the client's signature.
        target = Target.of(request.raw_path)
        bucket, key = s3xml.split_path(target.path)
        op = "other"
        try:
            if not target.origin:
                return s3xml.error_response(400, "InvalidRequest", "no S3 request target", request.raw_path[:256])
            if method in ("GET", "HEAD") and bucket and key and _cacheable(request, target):
                op = method.lower()
                response, op = await self._read(request, target, (bucket, key))
                return response
            if bucket == "_robolake" and key == "batch" and method == "POST" and not target.authority:
                op = "batch"
                return await self.batch.handle(request)
            if is_node_local(method, bucket, key, target.query) and not target.authority:
                op = "cluster_list"
                buffer_max = self.filler.max_object_bytes
                return await self.cluster.list_uploads(request, target.origin, buffer_max_bytes=buffer_max)
            if method in ("PUT", "POST", "DELETE"):
                op = "write"
                verified = request.body_exists and self._verified(request, target)
                written = await self.writes.forward(request, target, (bucket, key), verified=verified)
                self.cluster.note_write(method, target.query, (bucket, key), written.status)
                return written
            op = "passthrough"
            return await self._forward(request, target)
        except NoHealthyNodeError as exc:
            self.metrics.inc("upstream_unavailable")
            message = f"{exc}; the accelerator retries other nodes for reads"
            return s3xml.error_response(503, "ServiceUnavailable", message, request.path)
        finally:
            self.metrics.client_latency[op].observe(time.perf_counter() - started)
            self.metrics.inc(f"requests_{op}")

    def _verified(self, request: web.Request, target: Target) -> bool:
        return self._principal(request, target) is not None

    def _principal(self, request: web.Request, target: Target) -> str | None:
        """Who signed the request, when its signature checks out here."""
        result = self.verifier.verify(request.method, target.path, target.query, request.headers)
        return result.access_key if isinstance(result, Verified) else None

    async def _read(self, request: web.Request, target: Target, key: ObjectKey) -> tuple[web.StreamResponse, str]:
        headers = request.headers
        range_header = headers.get("range", "")
        # A Range MinIO judges itself (416 at once, or ignored: replay.parse_range) goes there too.
        odd_range = bool(range_header) and replay.parse_range(range_header) is None
        odd_payload = not CACHE_PAYLOAD_HASH.fullmatch(headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD"))
        if odd_range or odd_payload or any(h in headers for h in FORWARDED_WHEN_PRESENT) or request.body_exists:
            return await self._forward(request, target), "passthrough_conditional"
        principal = self._principal(request, target)
        if principal is None:
            # Unsigned, unknown principal or bad signature: MinIO decides (and writes the 403).
            self.metrics.inc("unverified_passthrough")
            return await self._forward(request, target), "passthrough_unverified"
        if not self.access.allows(principal, key):
            # No fresh allow from MinIO for this principal here: MinIO judges its own request.
            response = await self._fill(request, target, key)
            await self.access.learn(principal, key, response.status)
            return response, "judged"
        obj, tier = self.cache.lookup(key)
        for listener in self.read_listeners:
            listener.on_read(key, hit=obj is not None)
        if obj is None:
            response = await self._fill(request, target, key)
            await self.access.learn(principal, key, response.status)
            return response, "miss"
        if self.revalidator.is_old(obj, time.time()):
            self.revalidator.check_soon(key, obj)
        answer = answer_from_copy(request.method, headers, obj)
        if answer is None:  # MinIO's to answer (and, for a whole GET, to refresh the copy with)
            return await self._fill(request, target, key), "forwarded"
        marker = (("X-Amz-Request-Id", s3xml.request_id()), ("X-Robolake-Cache", f"hit-{tier}"))
        return await send_answer(request, answer, marker), f"hit_{tier}"

    async def _fill(self, request: web.Request, target: Target, key: ObjectKey) -> web.StreamResponse:
        """Ask MinIO with the client's own request; keep the answer when it is a small whole object."""
        headers = request.headers
        large = self.large
        if large is not None and large.wanted(request, key):
            answered = await large.relay(request, key, target.origin, forwarded(headers.items()))
            if answered is not None:
                return answered
        fetch = self.filler.fetch(
            key,
            request.method,
            target.origin,
            CIMultiDict(forwarded(headers.items())),
            op=request.method.lower(),
            whole_object="range" not in headers,
            checksums_asked=replay.wants_checksums(headers),
        )
        async with fetch as got:
            if got.obj is None:
                if large is not None and got.response.status == 200:
                    large.hints.note(key, got.response.content_length)
                return await relay(request, got.response, buffer_max_bytes=self.filler.max_object_bytes)
            body = got.obj.body
            answer = CacheAnswer(200, list(relayed(got.response.headers)), body, len(body))
            return await send_answer(request, answer, (("X-Robolake-Cache", "miss"),))

    async def _forward(self, request: web.Request, target: Target) -> web.StreamResponse:
        """Pass a request to MinIO as it is and relay the answer (a body held only within bounds)."""
        verified = request.body_exists and self._verified(request, target)
        async with self.bodies.open(request, buffer=verified) as body:
            second_opinion = request.method in ("GET", "HEAD")
            retry = not isinstance(body, StreamedBody)
            try:
                response = await send(
                    self.upstream,
                    self.metrics,
                    request,
                    target,
                    "passthrough",
                    body,
                    retry=retry,
                    second_opinion=second_opinion,
                )
            except ClientBodyError as exc:
                return await answer_broken_body(self.upstream, self.metrics, request, target, exc)
        async with response:
            return await relay(request, response, buffer_max_bytes=self.filler.max_object_bytes)


def _cacheable(request: web.Request, target: Target) -> bool:
    """A plain object read the cache may answer: everything else MinIO answers or refuses itself.

    Subresources (?acl, ?tagging, ?versionId, ?partNumber ...) and response-header overrides go to
    MinIO; presign parameters are allowed, each once (Go reads the first of two, the verifier
    would not). MinIO refuses a query value that is a `.`/`..` path segment, a request that is
    both presigned and signed in a header (hasMultipleAuth), and headers too large or reserved
    (minio_refuses_headers); an absolute-form target is passed on.
    """
    if target.authority:
        return False
    query = parse_qsl(target.query, keep_blank_values=True)
    names = Counter(name for name, _ in query)
    if any(count > 1 for count in names.values()) or not all(name.startswith("X-Amz-") for name in names):
        return False
    if any(s3xml.has_bad_component(value) for _, value in query):
        return False
    headers = request.headers
    if "authorization" in headers and any(name in names for name in PRESIGN_QUERY):
        return False
    return all(len(headers.getall(name, ())) <= 1 for name in READ_ONCE) and not minio_refuses_headers(headers)


def minio_refuses_headers(headers: CIMultiDictProxy[str]) -> bool:
    """Whether MinIO may refuse these request headers outright (too large, or reserved names)."""
    total = user = 0
    for name in {name.lower() for name in headers}:
        if name.startswith(RESERVED_HEADER):
            return True
        length = len(name) + len(headers.getone(name))
        total += length
        user += length if name.startswith(USER_METADATA) else 0
    return total > HEADER_BUDGET or user > USER_METADATA_BUDGET
