"""Episode-aware prefetch: reading one small file of an episode fetches its siblings ahead.

Robot-learning layouts name files by episode (`pose/episode_00012.json`,
`gripper/episode_00012.json`). From demand reads the prefetcher learns per-bucket *templates*
(the key with its episode number cut out). When episode N is read through one template, the
other templates at N, and all templates at N+1..N+depth (loaders read episodes in order), are
fetched in the background. Bounds keep it from starving demand reads: a small queue (new work
is dropped when full, never blocks), a couple of workers, objects only below the size threshold.
Accuracy = prefetched objects later read by a client / prefetched objects fetched.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator

from aiohttp import web

from robolake.accelerator.fill import Filler
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.tasks import BackgroundTasks

# The episode token must start a path segment or follow a separator: "pose/episode_00012.json",
# "demo_3/rgb.jpg", "ep-7.json" — not random names that merely contain "ep" and digits.
EPISODE_RE = re.compile(
    r"^(?P<pre>(?:.*[/_.\-])?(?:episode|ep|demo)[_-]?)(?P<num>\d+)(?P<post>(?:[/_.\-].*)?)$", re.IGNORECASE
)
MAX_UNUSED = 65536  # prefetched keys remembered until read; older ones count as wasted


class Prefetcher:
    """Learns episode templates from demand reads (`on_read`) and fetches siblings ahead, in the background."""

    depth = 2  # episodes ahead of the one being read
    max_templates = 16  # per bucket; the most read are kept

    def __init__(self, filler: Filler, metrics: Metrics, *, workers: int, queue_size: int) -> None:
        self.templates: dict[str, Counter[tuple[str, str, int]]] = {}
        self.pending: OrderedDict[ObjectKey, float] = OrderedDict()  # prefetched, not yet read
        self.inflight: set[ObjectKey] = set()
        self._filler = filler
        self._metrics = metrics
        self._workers = workers
        self._queue: asyncio.Queue[ObjectKey] = asyncio.Queue(maxsize=queue_size)
        self._tasks = BackgroundTasks("prefetch")

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup_ctx: the workers run while the app does, and are cancelled and awaited after."""
        for _ in range(self._workers):
            self._tasks.spawn(self._worker())
        yield
        await self._tasks.close()

    def state(self) -> dict[str, int]:
        """Work in progress, for the stats endpoint (and tests waiting for prefetch to settle)."""
        return {"queued": self._queue.qsize(), "inflight": len(self.inflight), "prefetched_unused": len(self.pending)}

    def on_read(self, key: ObjectKey, *, hit: bool) -> None:
        """A client read `key`: count a prefetch used, learn its template, queue its siblings."""
        if self.pending.pop(key, None) is not None:
            self._metrics.inc("prefetch_used")
        match = EPISODE_RE.match(key[1])
        if match is None:
            return
        counts = self._learn(key[0], (match["pre"], match["post"], len(match["num"])))
        number = int(match["num"])
        for episode in range(number, number + self.depth + 1):
            for pre, post, width in counts:
                target = (key[0], f"{pre}{episode:0{width}d}{post}")
                if target == key or target in self.inflight or target in self.pending or self._filler.holds(target):
                    continue
                try:
                    self._queue.put_nowait(target)
                except asyncio.QueueFull:
                    self._metrics.inc("prefetch_dropped_queue_full")
                    return
                self.inflight.add(target)

    def _learn(self, bucket: str, template: tuple[str, str, int]) -> Counter[tuple[str, str, int]]:
        """Count a read through `template`; keep the `max_templates` most read of the bucket."""
        counts = self.templates.setdefault(bucket, Counter())
        counts[template] += 1
        if len(counts) > self.max_templates:
            for rare, _ in counts.most_common()[self.max_templates :]:
                del counts[rare]
        return counts

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            try:
                await self._fetch(key)
            except Exception:  # one failed prefetch must not stop the worker; demand reads will ask again
                self._metrics.inc("prefetch_failed")
            finally:
                self.inflight.discard(key)

    async def _fetch(self, key: ObjectKey) -> None:
        self._metrics.inc("prefetch_issued")
        async with self._filler.fetch_signed(key, op="prefetch") as got:
            if got.obj is None:
                self._metrics.inc("prefetch_wasted_missing" if got.response.status == 404 else "prefetch_wasted_other")
                return
        if got.stored:
            self.pending[key] = time.time()
            if len(self.pending) > MAX_UNUSED:
                self.pending.popitem(last=False)
                self._metrics.inc("prefetch_wasted_unused")
