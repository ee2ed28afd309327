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
from typing import TYPE_CHECKING
from urllib.parse import quote

from robolake.accelerator.cache import CachedObject, ObjectKey
from robolake.accelerator.replay import CHECKSUM_MODE
from robolake.accelerator.upstream import response_headers
from robolake.sigv4 import sign

if TYPE_CHECKING:
    from robolake.accelerator.server import Accelerator

# The episode token must start a path segment or follow a separator: "pose/episode_00012.json",
# "demo_3/rgb.jpg", "ep-7.json" — not random names that merely contain "ep" and digits.
EPISODE_RE = re.compile(
    r"^(?P<pre>(?:.*[/_.\-])?(?:episode|ep|demo)[_-]?)(?P<num>\d+)(?P<post>(?:[/_.\-].*)?)$", re.IGNORECASE
)


class Prefetcher:
    def __init__(self, accel: Accelerator, *, depth: int = 2, max_templates: int = 16) -> None:
        self.accel = accel
        self.depth = depth
        self.max_templates = max_templates
        self.templates: dict[str, Counter[tuple[str, str, int]]] = {}
        self.pending: OrderedDict[ObjectKey, float] = OrderedDict()  # prefetched, not yet read
        self.inflight: set[ObjectKey] = set()
        self.queue: asyncio.Queue[ObjectKey] | None = None
        self.workers: list[asyncio.Task[None]] = []
        self.access_key, self.secret = next(iter(accel.config.credentials.items()))

    def attach(self) -> None:
        self.accel.on_demand_read = self.on_read
        self.accel.prefetch_state = self.state

    def state(self) -> dict[str, int]:
        """Work in progress, for the stats endpoint (and tests waiting for prefetch to settle)."""
        return {"queued": self.queue.qsize() if self.queue else 0, "inflight": len(self.inflight),
                "prefetched_unused": len(self.pending)}

    def _ensure_workers(self) -> asyncio.Queue[ObjectKey]:
        if self.queue is None:
            self.queue = asyncio.Queue(maxsize=self.accel.config.prefetch_queue)
            self.workers = [asyncio.create_task(self._worker()) for _ in range(self.accel.config.prefetch_workers)]
        return self.queue

    def on_read(self, key: ObjectKey, *, hit: bool) -> None:
        m = self.accel.metrics
        if self.pending.pop(key, None) is not None:
            m.inc("prefetch_used")
        match = EPISODE_RE.match(key[1])
        if match is None:
            return
        template = (match["pre"], match["post"], len(match["num"]))
        counts = self.templates.setdefault(key[0], Counter())
        counts[template] += 1
        if len(counts) > self.max_templates:
            for rare, _ in counts.most_common()[self.max_templates:]:
                del counts[rare]
        number = int(match["num"])
        queue = self._ensure_workers()
        for episode in range(number, number + self.depth + 1):
            for pre, post, width in counts:
                target = (key[0], f"{pre}{episode:0{width}d}{post}")
                if target == key or target in self.inflight or target in self.pending:
                    continue
                if target in self.accel.memory.policy:
                    continue
                try:
                    queue.put_nowait(target)
                except asyncio.QueueFull:
                    m.inc("prefetch_dropped_queue_full")
                    return
                self.inflight.add(target)

    async def _worker(self) -> None:
        assert self.queue is not None
        while True:
            key = await self.queue.get()
            try:
                await self._fetch(key)
            except Exception:
                self.accel.metrics.inc("prefetch_failed")
            finally:
                self.inflight.discard(key)

    async def _fetch(self, key: ObjectKey) -> None:
        accel = self.accel
        epoch = accel.invalidations.epoch(key)
        path = "/" + quote(key[0], safe="") + "/" + quote(key[1], safe="/~")
        host = f"{accel.config.host}:{accel.config.port}"  # any Host works: it is signed and sent as is
        # Asking for the checksum headers makes the copy complete for clients that ask too.
        headers = {"Host": host, **sign("GET", path, [], host, self.access_key, self.secret,
                                        region=accel.config.region, extra_headers={CHECKSUM_MODE: "ENABLED"})}
        accel.metrics.inc("prefetch_issued")
        _, response = await accel.upstream.request("GET", path, headers, None, retry=True, second_opinion=True)
        async with response:
            if response.status != 200 or (response.content_length or 0) > accel.config.max_object_bytes:
                accel.metrics.inc("prefetch_wasted_missing" if response.status == 404 else "prefetch_wasted_other")
                await response.release()
                return
            body = await response.read()
            obj = CachedObject.from_response(body, response_headers(response), checksums_asked=True,
                                             validated_at=time.time())
        if accel.store(key, obj, epoch):
            self.pending[key] = time.time()
            if len(self.pending) > 65536:
                self.pending.popitem(last=False)
                accel.metrics.inc("prefetch_wasted_unused")
