"""The S3 endpoint's request handling: answer small-object GET/HEAD from the cache, forward the rest.

Request flow:
    GET/HEAD /bucket/key, signed by a principal whose secret we hold (SigV4 verified here)
        -> memory tier -> disk tier -> MinIO (the client's own signed request, Host kept),
           filling the cache when the object is below the size threshold (robolake.accelerator.fill)
    POST /_robolake/batch -> robolake.accelerator.batch
    anything else (writes, listings, bucket ops, unsigned or unverifiable requests)
        -> MinIO untouched; writes invalidate the keys they touch, before and after.
MinIO therefore authenticates every request the cache does not answer, and produces every error.
A cache answer carries the headers MinIO would send for that request (robolake.accelerator.answer):
whatever the cache cannot answer exactly (a 412, a 416, an odd Range) is forwarded instead.
MinIO is reached through a `Sender` (robolake.accelerator.upstream), so a scripted one can stand in.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict

from robolake.accelerator import invalidation, replay, s3xml
from robolake.accelerator.answer import answer_from_copy
from robolake.accelerator.batch import BatchHandler
from robolake.accelerator.cache import TieredCache
from robolake.accelerator.fill import Filler
from robolake.accelerator.headers import forwarded, relayed
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.relay import relay, send_answer
from robolake.accelerator.revalidate import Revalidator
from robolake.accelerator.upstream import Body, NoHealthyNodeError, Sender, UpstreamRequest, UpstreamResponse
from robolake.sigv4 import Verified, Verifier

# Request headers whose answer the cache leaves to MinIO: date conditionals (MinIO's second-
# granularity rules), and Origin (MinIO's CORS headers answer the request, not the object).
FORWARDED_WHEN_PRESENT = ("if-modified-since", "if-unmodified-since", "origin")
BUFFER_BODY_MAX = 8 * 1024 * 1024  # writes up to this size are buffered so they can be retried


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
    read_listeners: Sequence[ReadListener] = ()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        method = request.method
        # request.raw_path is the request target exactly as sent; rel_url is normalised (dot
        # segments removed), which would both change the key and break the client's signature.
        bucket, key = s3xml.split_path(_path_only(request))
        op = "other"
        try:
            if method in ("GET", "HEAD") and bucket and key and _cacheable_query(request):
                op = method.lower()
                response, op = await self._read(request, (bucket, key))
                return response
            if bucket == "_robolake" and key == "batch" and method == "POST":
                op = "batch"
                return await self.batch.handle(request)
            if method in ("PUT", "POST", "DELETE"):
                op = "write"
                return await self._forward_write(request, bucket, key)
            op = "passthrough"
            return await self._forward(request)
        except NoHealthyNodeError as exc:
            self.metrics.inc("upstream_unavailable")
            message = f"{exc}; the accelerator retries other nodes for reads"
            return s3xml.error_response(503, "ServiceUnavailable", message, request.path)
        finally:
            self.metrics.client_latency[op].observe(time.perf_counter() - started)
            self.metrics.inc(f"requests_{op}")

    def _verified(self, request: web.Request) -> bool:
        result = self.verifier.verify(request.method, _path_only(request), _query_only(request), request.headers)
        return isinstance(result, Verified)

    async def _read(self, request: web.Request, key: ObjectKey) -> tuple[web.StreamResponse, str]:
        headers = request.headers
        range_header = headers.get("range", "")
        # A Range MinIO judges itself (416 at once, or ignored: replay.parse_range) goes there too.
        odd_range = bool(range_header) and replay.parse_range(range_header) is None
        if odd_range or any(h in headers for h in FORWARDED_WHEN_PRESENT):
            return await self._forward(request), "passthrough_conditional"
        if not self._verified(request):
            # Unsigned, unknown principal or bad signature: MinIO decides (and writes the 403).
            self.metrics.inc("unverified_passthrough")
            return await self._forward(request), "passthrough_unverified"
        obj, tier = self.cache.lookup(key)
        for listener in self.read_listeners:
            listener.on_read(key, hit=obj is not None)
        if obj is None:
            return await self._fill(request, key), "miss"
        if self.revalidator.is_old(obj, time.time()):
            self.revalidator.check_soon(key, obj, request.method, request.raw_path, forwarded(headers.items()))
        answer = answer_from_copy(request.method, headers, obj)
        if answer is None:  # MinIO's to answer (and, for a whole GET, to refresh the copy with)
            return await self._fill(request, key), "forwarded"
        marker = (("X-Amz-Request-Id", s3xml.request_id()), ("X-Robolake-Cache", f"hit-{tier}"))
        return await send_answer(request, answer, marker), f"hit_{tier}"

    async def _fill(self, request: web.Request, key: ObjectKey) -> web.StreamResponse:
        """Ask MinIO with the client's own request; keep the answer when it is a small whole object."""
        headers = request.headers
        fetch = self.filler.fetch(
            key,
            request.method,
            request.raw_path,
            CIMultiDict(forwarded(headers.items())),
            op=request.method.lower(),
            whole_object="range" not in headers,
            checksums_asked=replay.wants_checksums(headers),
        )
        async with fetch as got:
            if got.obj is None:
                return await relay(request, got.response, buffer_max_bytes=self.filler.max_object_bytes)
            out = CIMultiDict(relayed(got.response.headers))
            out["X-Robolake-Cache"] = "miss"
            return web.Response(status=200, body=got.obj.body, headers=out)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """Pass a request to MinIO as it is and relay the answer."""
        body = await request.read() if request.body_exists else None
        second_opinion = request.method in ("GET", "HEAD")
        response = await self._send(request, "passthrough", body or None, retry=True, second_opinion=second_opinion)
        async with response:
            return await relay(request, response, buffer_max_bytes=self.filler.max_object_bytes)

    async def _forward_write(self, request: web.Request, bucket: str, key: str) -> web.StreamResponse:
        """Forward a write, invalidating what it touches both before and after MinIO answers.

        Before: no read after this point is answered from an old copy. After: a fill that raced
        the write (and read the old object) is dropped, and so is anything it stored.
        """
        query = request.rel_url.query
        listed = await request.read() if invalidation.is_multi_delete(request.method, bucket, key, query) else b""
        targets = invalidation.write_targets(request.method, bucket, key, query, listed)
        self.cache.invalidate(targets, "write")
        length = request.content_length
        if request.body_exists and (length is None or length > BUFFER_BODY_MAX):
            response = await self._send(request, "write", request.content, retry=False)  # a stream goes once
        else:
            body = await request.read() if request.body_exists else None
            response = await self._send(request, "write", body, retry=True)
        async with response:
            answer = await relay(request, response, buffer_max_bytes=self.filler.max_object_bytes)
        self.cache.invalidate(targets, "write")
        return answer

    async def _send(
        self, request: web.Request, op: str, body: Body, *, retry: bool, second_opinion: bool = False
    ) -> UpstreamResponse:
        """Send the client's request on to MinIO (its own headers, less hop-by-hop ones), timed as `op`."""
        started = time.perf_counter()
        headers = CIMultiDict(forwarded(request.headers.items()))
        outgoing = UpstreamRequest(request.method, request.raw_path, headers, body)
        response = await self.upstream.request(outgoing, retry=retry, second_opinion=second_opinion)
        self.metrics.upstream_latency[op].observe(time.perf_counter() - started)
        return response


def _cacheable_query(request: web.Request) -> bool:
    # Plain object reads only: subresources (?acl, ?tagging, ?versionId, ?partNumber ...)
    # and response-header overrides go to MinIO. Presign parameters are allowed.
    return all(name.startswith("X-Amz-") for name in request.rel_url.query)


def _path_only(request: web.Request) -> str:
    return request.raw_path.partition("?")[0]


def _query_only(request: web.Request) -> str:
    return request.raw_path.partition("?")[2]
