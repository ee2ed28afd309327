"""Stale-while-revalidate: an old cached copy is answered at once and re-checked in the background.

Bucket notifications are what keeps the cache fresh; this re-check only catches one that was
lost. Doing it in line would put a MinIO round trip in front of every read of an epoch longer
than `revalidate_after_s`, which is exactly the loader the cache is for. So the read is answered
from the cache and the next read sees the outcome.

The check is a listing, not a conditional GET per key: old copies are gathered per folder (the
key up to its last `/`) and one ListObjectsV2 of that folder (delimiter `/`, from just before the
first key gathered, up to 1,000 keys) gives the current ETag of every key it covers. Measured on
the hit path: a working set of 2,000 objects read by 16 clients turns old together 30 s after
its warm-up, and one conditional GET per key took ~10% of the accelerator's event loop (and MinIO
CPU for 2,000 GETs) during the next 20 s; a listing per folder of 1,000 keys takes two requests.
A key listed with the cached ETag is refreshed; one listed with another ETag, or absent from the
range the listing covers, is dropped. Every other copy in memory a page lists with its own ETag
is refreshed too: a folder turns old, and is listed, once per window. The listing is signed as
the accelerator's own principal: it asks only whether a copy is current; who may read it is
judged on every read. At most MAX_REVALIDATIONS folders are listed at once; a key not gathered
now is gathered on its next read.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from robolake.accelerator.cache import CachedObject, TieredCache
from robolake.accelerator.fill import OwnSigner
from robolake.accelerator.invalidation import Epoch, ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.tasks import BackgroundTasks
from robolake.accelerator.upstream import Sender, UpstreamRequest
from robolake.sigv4 import canonical_query
from robolake.storage.integrity import normalise_etag
from robolake.storage.s3 import parse_list

log = logging.getLogger(__name__)
MAX_REVALIDATIONS = 8  # folders listed at once
MAX_PENDING = 100_000  # old copies waiting for their folder's listing
LIST_KEYS = 1000  # MinIO's (and S3's) most keys per listing
GATHER_S = 0.05  # a folder's first old copy waits this long for the others read right after it

Folder = tuple[str, str]  # (bucket, prefix up to and including the last "/")


class Revalidator:
    """Background checks of old cached copies by listing; started and stopped with the app (`lifespan`)."""

    def __init__(
        self, cache: TieredCache, upstream: Sender, metrics: Metrics, *, after_s: float, signer: OwnSigner
    ) -> None:
        self.after_s = after_s
        self._cache = cache
        self._upstream = upstream
        self._metrics = metrics
        self._signer = signer
        self._pending: dict[Folder, dict[str, tuple[CachedObject, Epoch]]] = {}
        self._waiting = 0
        self._tasks = BackgroundTasks("revalidation")

    async def lifespan(self, _: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup_ctx: checks still in flight at shutdown are cancelled and awaited."""
        yield
        await self._tasks.close()

    def is_old(self, obj: CachedObject, now: float) -> bool:
        return now - obj.validated_at > self.after_s

    def check_soon(self, key: ObjectKey, obj: CachedObject) -> None:
        """Have MinIO's listing of `key`'s folder say, in the background, whether `obj` is still current."""
        bucket, name = key
        folder = (bucket, name[: name.rfind("/") + 1])
        group = self._pending.get(folder)
        if group is not None:
            if name not in group and self._waiting < MAX_PENDING:
                group[name] = (obj, self._cache.epoch(key))
                self._waiting += 1
            return
        if len(self._pending) >= MAX_REVALIDATIONS or self._waiting >= MAX_PENDING:
            self._metrics.inc("revalidation_deferred")
            return
        self._pending[folder] = {name: (obj, self._cache.epoch(key))}
        self._waiting += 1
        self._tasks.spawn(self._check_folder(folder))

    async def _check_folder(self, folder: Folder) -> None:
        """List `folder` until every copy gathered for it (also while listing) has its verdict.

        A copy gathered while the pages were listed, whose key a page already covered, is judged
        by that page (it was current, or not, when the page was listed, seconds ago at most):
        only copies behind every page covered make the folder be listed again from them.
        """
        try:
            await asyncio.sleep(GATHER_S)
            group = self._pending[folder]
            after = min(group)[:-1]
            seen: dict[str, str] = {}  # every key the pages listed, with its ETag then
            covered: list[tuple[str, str | None]] = []  # (after, last] of each page; None: to the end
            while group:
                listed = await self._list(folder, start_after=after)
                if listed is None:  # no verdict: the next read of each gathers it again
                    self._metrics.inc("revalidation_failed", len(group))
                    return
                current, last = listed
                seen.update(current)
                self._refresh_listed(folder[0], current, group)
                covered.append((after, last))
                for name in [n for n in group if any(lo < n and (hi is None or n <= hi) for lo, hi in covered)]:
                    obj, epoch = group.pop(name)
                    self._decide((folder[0], name), obj, epoch, seen.get(name))
                # On to the next page; at the folder's end, back for copies gathered behind the pages.
                after = last if last is not None else min(group, default="x")[:-1]
        finally:
            self._waiting -= len(self._pending.pop(folder, {}))

    def _refresh_listed(self, bucket: str, listed: dict[str, str], gathered: Mapping[str, object]) -> None:
        """Mark current the copies in memory a page listed with their own ETag that no read has
        gathered yet, so a folder of old copies is listed once per `after_s`, not once per group
        of reads (random reads over a folder of thousands of keys had MinIO list it over and over:
        each page a fresh walk of the folder). A copy listed with another ETag is left to its own
        check. Safe as a gathered copy's refresh is: an invalidation before now dropped the copy
        or moved its epoch (read now), one after it drops the refreshed copy."""
        for name, etag in listed.items():
            key = (bucket, name)
            if name in gathered or (obj := self._cache.peek(key)) is None:
                continue
            if etag == normalise_etag(obj.etag) and self._cache.refresh(key, obj.revalidated(), self._cache.epoch(key)):
                self._metrics.inc("revalidated_listed")

    def _decide(self, key: ObjectKey, obj: CachedObject, epoch: Epoch, etag: str | None) -> None:
        self._waiting -= 1
        if etag is not None and etag == normalise_etag(obj.etag):
            self._cache.refresh(key, obj.revalidated(), epoch)  # not if a write or notification raced the check
            self._metrics.inc("revalidated_unchanged")
        else:
            self._metrics.inc("revalidated_changed")
            self._cache.invalidate([key], "revalidation")

    async def _list(self, folder: Folder, *, start_after: str) -> tuple[dict[str, str], str | None] | None:
        """({key: ETag} listed, the last key covered or None when the folder's end was reached); None on failure."""
        bucket, prefix = folder
        query = [
            ("delimiter", "/"),
            ("list-type", "2"),
            ("max-keys", str(LIST_KEYS)),
            ("prefix", prefix),
            ("start-after", start_after),
        ]
        path = f"/{bucket}"
        request = UpstreamRequest(
            "GET", f"{path}?{canonical_query(query)}", self._signer.headers_for("GET", path, query)
        )
        try:
            async with await self._upstream.request(request, retry=True) as response:
                body = await response.read()
                status = response.status
            if status != 200:
                raise ValueError(f"MinIO answered {status}: {body[:200]!r}")
            objects, token = parse_list(body)
        except Exception as exc:  # a background check must never take the server down; the next read retries
            log.warning("revalidation listing of %s/%s failed: %s", bucket, prefix, exc)
            return None
        current = {o.key: o.etag for o in objects}
        if not token:
            return current, None
        # Truncated: keys and folders (CommonPrefixes) count toward max-keys; cover up to the last either way.
        return current, max([*current, *_common_prefixes(body)], default=start_after + "\x00")


def _common_prefixes(body: bytes) -> list[str]:
    """The folders a delimited listing reported (they count toward its max-keys like keys do)."""
    found = []
    for element in ET.fromstring(body).iter():
        if element.tag.endswith("CommonPrefixes"):
            found += [child.text or "" for child in element if child.tag.endswith("Prefix")]
    return found
