"""Stale-while-revalidate: an old cached copy is answered at once and re-checked in the background.

Bucket notifications are what keeps the cache fresh; this re-check only catches one that was
lost. Doing it in line would put a MinIO round trip in front of every read of an epoch longer
than `revalidate_after_s`, which is exactly the loader the cache is for. So the read is answered
from the cache and the next read sees the outcome. One check per key at a time, at most
MAX_REVALIDATIONS at once (a key skipped now is checked on its next read). The client's own signed
headers (valid for 15 minutes) authorise the check; If-None-Match is an unsigned extra header,
which SigV4 allows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable

from aiohttp import web
from multidict import CIMultiDict

from robolake.accelerator.cache import CachedObject, TieredCache
from robolake.accelerator.invalidation import Epoch, ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.tasks import BackgroundTasks
from robolake.accelerator.upstream import Sender, UpstreamRequest

log = logging.getLogger(__name__)
MAX_REVALIDATIONS = 8  # background ETag checks in flight at once


class Revalidator:
    """Background ETag checks of old cached copies; started and stopped with the app (`lifespan`)."""

    def __init__(
        self,
        cache: TieredCache,
        upstream: Sender,
        metrics: Metrics,
        *,
        after_s: float,
    ) -> None:
        self.after_s = after_s
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics
        self._checking: set[ObjectKey] = set()
        self._tasks = BackgroundTasks("revalidation")

    async def lifespan(self, _: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup_ctx: checks still in flight at shutdown are cancelled and awaited."""
        yield
        await self._tasks.close()

    def is_old(self, obj: CachedObject, now: float) -> bool:
        return now - obj.validated_at > self.after_s

    def check_soon(
        self, key: ObjectKey, obj: CachedObject, method: str, target: str, headers: Iterable[tuple[str, str]]
    ) -> None:
        """Ask MinIO in the background whether `obj` is still current, with the client's `headers`."""
        if key in self._checking:
            return
        if len(self._checking) >= MAX_REVALIDATIONS:
            self._metrics.inc("revalidation_deferred")
            return
        conditional = CIMultiDict(headers)
        conditional["If-None-Match"] = obj.etag  # replaces the client's own, if it sent one
        self._checking.add(key)
        self._tasks.spawn(self._check(key, obj, self._cache.epoch(key), method, target, conditional))

    async def _check(
        self, key: ObjectKey, obj: CachedObject, epoch: Epoch, method: str, target: str, headers: CIMultiDict[str]
    ) -> None:
        """Ask MinIO whether the cached ETag is still current; drop the copy if it is not."""
        try:
            request = UpstreamRequest(method, target, headers)
            response = await self._upstream.request(request, retry=True, second_opinion=True)
            async with response:
                await response.read()
                status = response.status
        except Exception as exc:  # a background check must never take the server down; the next read retries
            self._metrics.inc("revalidation_failed")
            log.warning("revalidation of %s/%s failed: %s", key[0], key[1], exc)
            return
        finally:
            self._checking.discard(key)
        if status == 304:
            self._cache.refresh(key, obj.revalidated(), epoch)  # not if a write or notification raced the check
            self._metrics.inc("revalidated_unchanged")
        elif status in (200, 404):
            self._metrics.inc("revalidated_changed")
            self._cache.invalidate([key], "revalidation")
        else:  # 403 (an expired signature), 503 ...: no verdict; the next read asks again
            self._metrics.inc("revalidation_failed")
