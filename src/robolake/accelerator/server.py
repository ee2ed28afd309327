"""The accelerator's S3 endpoint: answers small-object GET/HEAD from its cache, forwards the rest.

Request flow:
    GET/HEAD /bucket/key, signed by a principal whose secret we hold (SigV4 verified here)
        -> memory tier -> disk tier -> MinIO (the client's own signed request, Host kept),
           filling the cache when the object is below the size threshold
    anything else (writes, listings, bucket ops, unsigned or unverifiable requests)
        -> MinIO untouched; writes invalidate the keys they touch, before and after.
MinIO therefore authenticates every request the cache does not answer, and produces every error.
A cache answer carries the headers MinIO would send for that request (robolake.accelerator.replay):
whatever the cache cannot answer exactly (a 412, a 416, an odd Range) is forwarded instead.
A fill is dropped if the key was invalidated while it was in flight (per-key epochs), so a read
that raced a write cannot put old bytes back into the cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from robolake.accelerator import replay, s3xml
from robolake.accelerator.cache import CachedObject, DiskTier, MemoryTier, ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.upstream import NoHealthyNodeError, UpstreamPool, response_headers
from robolake.sigv4 import Verified, Verifier

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade",
})
log = logging.getLogger(__name__)
# Request headers whose answer the cache leaves to MinIO: date conditionals (MinIO's second-
# granularity rules), and Origin (MinIO's CORS headers answer the request, not the object).
FORWARDED_WHEN_PRESENT = ("if-modified-since", "if-unmodified-since", "origin")
BUFFER_BODY_MAX = 8 * 1024 * 1024  # writes up to this size are buffered so they can be retried
MAX_REVALIDATIONS = 8  # background ETag checks in flight at once


@dataclasses.dataclass(frozen=True, kw_only=True)
class AcceleratorConfig:
    """How the accelerator runs; build it from Settings (stack) or CLI flags."""

    upstreams: tuple[str, ...]
    credentials: dict[str, str] = dataclasses.field(repr=False)
    host: str = "127.0.0.1"
    port: int = 9000
    admin_port: int = 9010
    cache_dir: Path = Path("aistor/cache")
    max_object_bytes: int = 1024 * 1024
    memory_bytes: int = 256 * 1024 * 1024
    disk_bytes: int = 4 * 1024 * 1024 * 1024
    revalidate_after_s: float = 30.0
    webhook_token: str = dataclasses.field(default="", repr=False)
    prefetch: bool = True
    prefetch_workers: int = 2
    prefetch_queue: int = 256
    region: str = "us-east-1"


class Invalidations:
    """Per-key and per-bucket epochs: a fill is stored only if no invalidation happened meanwhile."""

    def __init__(self, limit: int = 65536) -> None:
        self._keys: OrderedDict[ObjectKey, int] = OrderedDict()
        self._buckets: dict[str, int] = {}
        self._limit = limit

    def epoch(self, key: ObjectKey) -> tuple[int, int]:
        return self._keys.get(key, 0), self._buckets.get(key[0], 0)

    def bump(self, key: ObjectKey) -> None:
        self._keys[key] = self._keys.pop(key, 0) + 1
        if len(self._keys) > self._limit:
            self._keys.popitem(last=False)

    def bump_bucket(self, bucket: str) -> None:
        self._buckets[bucket] = self._buckets.get(bucket, 0) + 1


class Accelerator:
    """The cache, the upstream pool and the request handlers; `app()` builds the aiohttp app."""

    def __init__(self, config: AcceleratorConfig) -> None:
        self.config = config
        self.verifier = Verifier(config.credentials, region=config.region)
        self.memory = MemoryTier(config.memory_bytes)
        self.disk = DiskTier(config.cache_dir, config.disk_bytes) if config.disk_bytes > 0 else None
        self.upstream = UpstreamPool(list(config.upstreams))
        self.metrics = Metrics()
        self.invalidations = Invalidations()
        self._revalidating: dict[ObjectKey, asyncio.Task[None]] = {}
        self.started_at = time.time()
        # Set by the prefetcher (robolake.accelerator.prefetch) when enabled.
        self.on_demand_read: Any = None
        self.prefetch_state: Any = None

    # ---- cache -------------------------------------------------------------------------------

    def lookup(self, key: ObjectKey) -> tuple[CachedObject | None, str]:
        obj = self.memory.get(key)
        if obj is not None:
            return obj, "memory"
        if self.disk is not None:
            obj = self.disk.get(key)
            if obj is not None:
                self.memory.put(key, obj)  # promote
                return obj, "disk"
        return None, "miss"

    def store(self, key: ObjectKey, obj: CachedObject, epoch: tuple[int, int]) -> bool:
        if self.invalidations.epoch(key) != epoch:
            self.metrics.inc("fill_dropped_after_invalidation")
            return False
        stored = self.memory.put(key, obj)
        if self.disk is not None:
            stored = self.disk.put(key, obj) or stored
        return stored

    def invalidate(self, key: ObjectKey, reason: str) -> None:
        self.invalidations.bump(key)
        dropped = self.memory.discard(key)
        if self.disk is not None:
            dropped = self.disk.discard(key) or dropped
        self.metrics.inc(f"invalidation_{reason}")

    def invalidate_bucket(self, bucket: str, reason: str) -> None:
        self.invalidations.bump_bucket(bucket)
        self.memory.discard_bucket(bucket)
        if self.disk is not None:
            self.disk.discard_bucket(bucket)
        self.metrics.inc(f"invalidation_bucket_{reason}")

    # ---- request handling --------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        method = request.method
        # request.raw_path is the request target exactly as sent; rel_url is normalised (dot
        # segments removed), which would both change the key and break the client's signature.
        bucket, key = s3xml.split_path(_path_only(request))
        op = "other"
        try:
            if method in ("GET", "HEAD") and bucket and key and self._cacheable_query(request):
                op = method.lower()
                response, op = await self._read(request, (bucket, key))
                return response
            if bucket == "_robolake" and key == "batch" and method == "POST":
                from robolake.accelerator.batch import handle_batch

                op = "batch"
                return await handle_batch(self, request)
            op = "write" if method in ("PUT", "POST", "DELETE") else "passthrough"
            return await self._forward_write(request, bucket, key) if op == "write" else await self._forward(request)
        except NoHealthyNodeError as exc:
            self.metrics.inc("upstream_unavailable")
            return s3xml.error_response(
                503, "ServiceUnavailable",
                f"no MinIO node answered ({exc}); the accelerator retries other nodes for reads", request.path,
            )
        finally:
            self.metrics.client_latency[op].observe(time.perf_counter() - started)
            self.metrics.inc(f"requests_{op}")

    def _cacheable_query(self, request: web.Request) -> bool:
        # Plain object reads only: subresources (?acl, ?tagging, ?versionId, ?partNumber ...)
        # and response-header overrides go to MinIO. Presign parameters are allowed.
        return all(name.startswith("X-Amz-") for name in request.rel_url.query)

    def _verified(self, request: web.Request) -> Verified | None:
        result = self.verifier.verify(
            request.method, _path_only(request), _query_only(request), request.headers,
        )
        return result if isinstance(result, Verified) else None

    async def _read(self, request: web.Request, key: ObjectKey) -> tuple[web.StreamResponse, str]:
        headers = request.headers
        range_header = headers.get("range", "")
        # A Range MinIO judges itself (416 at once, or ignored: replay.parse_range) goes there too.
        odd_range = bool(range_header) and replay.parse_range(range_header) is None
        if odd_range or any(h in headers for h in FORWARDED_WHEN_PRESENT):
            return await self._forward(request), "passthrough_conditional"
        principal = self._verified(request)
        if principal is None:
            # Unsigned, unknown principal or bad signature: MinIO decides (and writes the 403).
            self.metrics.inc("unverified_passthrough")
            return await self._forward(request), "passthrough_unverified"
        obj, tier = self.lookup(key)
        if obj is not None and time.time() - obj.validated_at > self.config.revalidate_after_s:
            self._revalidate_soon(request, key, obj)
        if obj is None:
            if self.on_demand_read is not None:
                self.on_demand_read(key, hit=False)
            return await self._fill(request, key), "miss"
        if self.on_demand_read is not None:
            self.on_demand_read(key, hit=True)
        answer = await self._answer_from_cache(request, obj, tier)
        if answer is None:  # MinIO's to answer (and, for a whole GET, to refresh the copy with)
            return await self._fill(request, key), "forwarded"
        return answer, f"hit_{tier}"

    def _revalidate_soon(self, request: web.Request, key: ObjectKey, obj: CachedObject) -> None:
        """Check an old cached copy in the background (stale-while-revalidate).

        Bucket notifications are what keeps the cache fresh; this re-check only catches one that
        was lost. Doing it in line would put a MinIO round trip in front of every read of an
        epoch longer than `revalidate_after_s`, which is exactly the loader the cache is for. So
        this read is answered from the cache and the next read sees the outcome. One check per
        key at a time, at most MAX_REVALIDATIONS at once (a key skipped now is checked on its
        next read). The client's own signed headers (valid for 15 minutes) authorise the check.
        """
        if key in self._revalidating:
            return
        if len(self._revalidating) >= MAX_REVALIDATIONS:
            self.metrics.inc("revalidation_deferred")
            return
        fwd = _forward_headers(request.headers)
        fwd["If-None-Match"] = obj.etag  # unsigned extra header: allowed by SigV4
        check = self._revalidate(request.method, request.raw_path, fwd, key, obj)
        task = asyncio.get_running_loop().create_task(check)
        self._revalidating[key] = task
        task.add_done_callback(lambda _: self._revalidating.pop(key, None))

    async def _revalidate(self, method: str, raw_path: str, fwd: CIMultiDict[str], key: ObjectKey,
                          obj: CachedObject) -> None:  # fmt: skip
        """Ask MinIO whether the cached ETag is still current; drop the copy if it is not."""
        epoch = self.invalidations.epoch(key)
        try:
            _, response = await self.upstream.request(method, raw_path, fwd, None, retry=True, second_opinion=True)
            async with response:
                await response.read()
                status = response.status
        except Exception as exc:  # a background check must never take the server down; the next read retries
            self.metrics.inc("revalidation_failed")
            log.warning("revalidation of %s/%s failed: %s", key[0], key[1], exc)
            return
        if status == 304:
            if self.invalidations.epoch(key) == epoch:  # no write or notification raced the check
                self.memory.replace(key, obj.revalidated())
            self.metrics.inc("revalidated_unchanged")
        elif status in (200, 404):
            self.metrics.inc("revalidated_changed")
            self.invalidate(key, "revalidation")
        else:  # 403 (an expired signature), 503 ...: no verdict; the next read asks again
            self.metrics.inc("revalidation_failed")

    async def _answer_from_cache(self, request: web.Request, obj: CachedObject,
                                 tier: str) -> web.StreamResponse | None:  # fmt: skip
        """The answer MinIO would give, from the cached copy; None where only MinIO can give it.

        The order is MinIO's (checkPreconditions, then the range, then the checksums): an
        If-None-Match hit is a 304 even for a Range past the end; an If-Match miss and an
        unsatisfiable range are errors, written by MinIO.
        """
        headers = request.headers
        marker = (("X-Amz-Request-Id", s3xml.request_id()), ("X-Robolake-Cache", f"hit-{tier}"))
        # An empty condition is no condition (MinIO tests `!= ""`).
        if_none = headers.get("if-none-match", "").strip()
        if if_none and replay.etag_matches(if_none, obj.etag):
            return web.Response(status=304, headers=CIMultiDict([*replay.not_modified_headers(obj.headers), *marker]))
        if_match = headers.get("if-match", "").strip()
        if if_match and not replay.etag_matches(if_match, obj.etag):
            return None
        out = CIMultiDict([*obj.headers, *marker])
        body, status = obj.body, 200
        range_header = headers.get("range", "")
        wanted = replay.parse_range(range_header) if range_header else None  # _read forwarded odd ones
        if wanted is not None:
            span = wanted.span(len(body))
            if span is None:
                return None
            start, end = span
            out["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            body, status = body[start:end + 1], 206
        elif replay.wants_checksums(headers):
            # MinIO sends checksum headers to whole-object reads that ask, never to ranged ones.
            if obj.checksums is None:
                return None  # filled by a read that did not ask: MinIO knows, and the copy learns
            out.extend(obj.checksums)
        if request.method == "HEAD":
            return await _bodiless(request, status, out, len(body))
        return web.Response(status=status, body=body, headers=out)

    async def _fill(self, request: web.Request, key: ObjectKey) -> web.StreamResponse:
        epoch = self.invalidations.epoch(key)
        fwd = _forward_headers(request.headers)
        started = time.perf_counter()
        _, response = await self.upstream.request(request.method, request.raw_path, fwd, None,
                                                  retry=True, second_opinion=True)
        async with response:
            self.metrics.upstream_latency[request.method.lower()].observe(time.perf_counter() - started)
            length = response.content_length
            cacheable = (
                request.method == "GET" and response.status == 200 and "range" not in request.headers
                and length is not None and length <= self.config.max_object_bytes
            )
            if not cacheable:
                return await self._relay(request, response)
            body = await response.read()
            sent = response_headers(response)
            obj = CachedObject.from_response(body, sent, checksums_asked=replay.wants_checksums(request.headers),
                                             validated_at=time.time())
            self.store(key, obj, epoch)
            out = CIMultiDict((k, v) for k, v in sent if k.lower() not in HOP_BY_HOP and k.lower() != "content-length")
            out["X-Robolake-Cache"] = "miss"
            return web.Response(status=200, body=body, headers=out)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """Pass a request to MinIO as it is and relay the answer."""
        body = await request.read() if request.body_exists else None
        fwd = _forward_headers(request.headers)
        started = time.perf_counter()
        _, response = await self.upstream.request(request.method, request.raw_path, fwd, body or None,
                                                  retry=True, second_opinion=request.method in ("GET", "HEAD"))
        async with response:
            self.metrics.upstream_latency["passthrough"].observe(time.perf_counter() - started)
            return await self._relay(request, response)

    async def _forward_write(self, request: web.Request, bucket: str, key: str) -> web.StreamResponse:
        """Forward a write, invalidating what it touches both before and after MinIO answers."""
        targets = await self._write_targets(request, bucket, key)
        for target in targets:
            self.invalidate(target, "write") if target[1] else self.invalidate_bucket(target[0], "write")
        fwd = _forward_headers(request.headers)
        length = request.content_length
        started = time.perf_counter()
        if request.body_exists and (length is None or length > BUFFER_BODY_MAX):
            _, response = await self.upstream.request(request.method, request.raw_path, fwd, request.content,
                                                      retry=False)
        else:
            body = await request.read() if request.body_exists else None
            _, response = await self.upstream.request(request.method, request.raw_path, fwd, body,
                                                      retry=True)
        async with response:
            self.metrics.upstream_latency["write"].observe(time.perf_counter() - started)
            relayed = await self._relay(request, response)
        for target in targets:
            self.invalidate(target, "write") if target[1] else self.invalidate_bucket(target[0], "write")
        return relayed

    async def _write_targets(self, request: web.Request, bucket: str, key: str) -> list[ObjectKey]:
        if not bucket:
            return []
        if key:
            return [(bucket, key)]
        if request.method == "POST" and "delete" in request.rel_url.query:
            # Multi-object delete: the keys are in the (small, buffered) XML body.
            body = await request.read()
            return [(bucket, _xml_unescape(k)) for k in re.findall(rb"<Key>(.*?)</Key>", body, re.S)
                    for k in [k.decode("utf-8", "replace")]]
        return [(bucket, "")]  # bucket-level write (delete bucket, policy ...): drop the bucket

    async def _relay(self, request: web.Request, response: aiohttp.ClientResponse) -> web.StreamResponse:
        headers = CIMultiDict((k, v) for k, v in response_headers(response) if k.lower() not in HOP_BY_HOP)
        length = response.content_length
        if request.method == "HEAD" or response.status in (204, 304):
            await response.release()
            return await _bodiless(request, response.status, headers, length)
        if length is not None and length <= self.config.max_object_bytes:
            body = await response.read()
            headers.pop("Content-Length", None)
            return web.Response(status=response.status, body=body, headers=headers)
        headers.pop("Content-Length", None)
        stream = web.StreamResponse(status=response.status, headers=headers)
        if length is not None:
            stream.content_length = length
        await stream.prepare(request)
        async for chunk in response.content.iter_any():  # whatever arrived: fewest Python steps per byte
            await stream.write(chunk)
        await stream.write_eof()
        return stream

    # ---- lifecycle ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0, handler_args={"max_field_size": 65536})
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _: web.Application) -> None:
        await self.upstream.start()

    async def _on_cleanup(self, _: web.Application) -> None:
        for task in list(self._revalidating.values()):
            task.cancel()
        await self.upstream.close()

    def stats(self) -> dict[str, Any]:
        tiers = {"memory": dataclasses.asdict(self.memory.stats)}
        if self.disk is not None:
            tiers["disk"] = dataclasses.asdict(self.disk.stats)
        hits = sum(t["hits"] for t in tiers.values())
        lookups = self.memory.stats.hits + self.memory.stats.misses
        return {
            "uptime_s": round(time.time() - self.started_at, 1),
            "hit_ratio": round(hits / lookups, 4) if lookups else None,
            "tiers": tiers,
            "memory": {"objects": len(self.memory), "used_bytes": self.memory.used_bytes,
                       "max_bytes": self.config.memory_bytes},
            "disk": {"objects": len(self.disk) if self.disk else 0,
                     "used_bytes": self.disk.used_bytes if self.disk else 0,
                     "max_bytes": self.config.disk_bytes, "dir": str(self.config.cache_dir),
                     "restored_at_start": self.disk.restored if self.disk else 0},
            "events": dict(self.metrics.counters),
            "prefetch": self.prefetch_state() if self.prefetch_state else None,
            "nodes": [dataclasses.asdict(n) for n in self.upstream.nodes],
            "latency": self.metrics.latency_summary(),
            "config": {"max_object_bytes": self.config.max_object_bytes,
                       "revalidate_after_s": self.config.revalidate_after_s, "prefetch": self.config.prefetch},
        }


def _path_only(request: web.Request) -> str:
    return request.raw_path.partition("?")[0]


def _query_only(request: web.Request) -> str:
    return request.raw_path.partition("?")[2]


async def _bodiless(
    request: web.Request, status: int, headers: CIMultiDict[str], length: int | None,
) -> web.StreamResponse:
    """A HEAD (or 204/304) answer that keeps the object's Content-Length, as MinIO sends it."""
    headers.pop("Content-Length", None)
    response = web.StreamResponse(status=status, headers=headers)
    if length is not None and status not in (204, 304):
        response.content_length = length
    await response.prepare(request)
    await response.write_eof()
    return response


def _forward_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


def _xml_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'").replace(
        "&amp;", "&")


async def serve(config: AcceleratorConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the S3 endpoint and the admin endpoint until cancelled."""
    from robolake.accelerator.admin import admin_app
    from robolake.accelerator.prefetch import Prefetcher

    accel = Accelerator(config)
    if config.prefetch:
        Prefetcher(accel).attach()
    runner = web.AppRunner(accel.app(), access_log=None)
    admin_runner = web.AppRunner(admin_app(accel), access_log=None)
    await runner.setup()
    await admin_runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port, backlog=1024).start()
        await web.TCPSite(admin_runner, config.host, config.admin_port).start()
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await admin_runner.cleanup()
        await runner.cleanup()
