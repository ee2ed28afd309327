"""The one fetch-and-fill path: demand reads, batch GET and prefetch all fill the cache through it.

    epoch = cache.epoch(key)                  before MinIO is asked
    response = upstream GET                   the client's own signed request, or one we sign
    CachedObject.from_response(...)           headers kept by the one rule (robolake.accelerator.headers)
    cache.store(key, obj, epoch)              refused if the key was invalidated meanwhile

A response is cached only when the request was a whole-object GET and MinIO answered 200 with a
Content-Length within the size threshold; anything else is handed back unread, for the caller
to relay or to report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Mapping

from robolake.accelerator import s3xml
from robolake.accelerator.cache import CachedObject, TieredCache
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.replay import CHECKSUM_MODE
from robolake.accelerator.upstream import Sender, UpstreamRequest, UpstreamResponse
from robolake.sigv4 import sign


@dataclasses.dataclass(frozen=True, kw_only=True)
class OwnSigner:
    """Signs the GETs the accelerator sends on its own behalf, as one principal whose secret it holds."""

    access_key: str
    secret: str = dataclasses.field(repr=False)
    region: str
    host: str  # any Host works: it is signed and sent as is

    def get_headers(self, target: str) -> dict[str, str]:
        # Asking for the checksum headers makes the copy complete for clients that ask too.
        extra = {CHECKSUM_MODE: "ENABLED"}
        signed = sign(
            "GET", target, [], self.host, self.access_key, self.secret, region=self.region, extra_headers=extra
        )
        return {"Host": self.host, **signed}

    def headers_for(self, method: str, path: str, query: list[tuple[str, str]]) -> dict[str, str]:
        """The headers of a bodiless request `method path?query` of ours (the query encoded as signed)."""
        signed = sign(method, path, query, self.host, self.access_key, self.secret, region=self.region)
        return {"Host": self.host, **signed}


@dataclasses.dataclass(frozen=True)
class Fetched:
    """MinIO's answer to a fill, open while the `fetch` block runs.

    `obj` is the copy built from it when it was cacheable (its body already read); `stored`
    says whether the cache kept that copy (not when the key was invalidated meanwhile or no tier
    admitted it). When `obj` is None the body is unread: relay it or read it.
    """

    response: UpstreamResponse
    obj: CachedObject | None
    stored: bool


class Filler:
    """Reads through the cache: what batch GET and prefetch are given, and what demand misses use."""

    def __init__(
        self,
        cache: TieredCache,
        upstream: Sender,
        metrics: Metrics,
        *,
        max_object_bytes: int,
        signer: OwnSigner,
        covers: Callable[[str], bool] = lambda _bucket: True,
    ) -> None:
        self._covers = covers  # whether a bucket's changes reach the accelerator (subscriptions)
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics
        self._signer = signer
        self.max_object_bytes = max_object_bytes

    def lookup(self, key: ObjectKey) -> tuple[CachedObject | None, str]:
        """(the cached copy, its tier) or (None, "miss")."""
        return self._cache.lookup(key)

    def holds(self, key: ObjectKey) -> bool:
        """Whether any tier holds a copy of `key` (not counted as a lookup)."""
        return key in self._cache

    @contextlib.asynccontextmanager
    async def fetch(
        self,
        key: ObjectKey,
        method: str,
        target: str,
        headers: Mapping[str, str],
        *,
        op: str,
        whole_object: bool,
        checksums_asked: bool,
    ) -> AsyncIterator[Fetched]:
        """Send `method target` to MinIO and fill the cache from the answer where it may.

        `whole_object`: the request asks for the whole object (a GET without Range), so a 200 is
        the object. `checksums_asked`: it carries `x-amz-checksum-mode: ENABLED`. `op` labels the
        upstream latency histogram.
        """
        epoch = self._cache.epoch(key)
        started = time.perf_counter()
        request = UpstreamRequest(method, target, headers)
        response = await self._upstream.request(request, retry=True, second_opinion=True)
        async with response:
            self._metrics.upstream_latency[op].observe(time.perf_counter() - started)
            if not (whole_object and method == "GET" and self._fits(response) and self._covers(key[0])):
                yield Fetched(response, None, False)
                return
            body = await response.read()
            obj = CachedObject.from_response(
                body, response.headers, checksums_asked=checksums_asked, validated_at=time.time()
            )
            yield Fetched(response, obj, self._cache.store(key, obj, epoch))

    def _fits(self, response: UpstreamResponse) -> bool:
        """A 200 whose Content-Length is within the size threshold: the body is worth keeping."""
        length = response.content_length
        return response.status == 200 and length is not None and length <= self.max_object_bytes

    @contextlib.asynccontextmanager
    async def fetch_signed(self, key: ObjectKey, *, op: str) -> AsyncIterator[Fetched]:
        """`fetch` a whole object with checksums, signed as the accelerator's own principal."""
        target = s3xml.object_path(key)
        headers = self._signer.get_headers(target)
        async with self.fetch(key, "GET", target, headers, op=op, whole_object=True, checksums_asked=True) as got:
            yield got
