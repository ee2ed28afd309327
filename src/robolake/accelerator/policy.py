"""S3-FIFO eviction (Yang et al., SOSP 2023), bounded by bytes.

Why S3-FIFO and not LRU: a training epoch reads every object once, in order — a scan. Under LRU
a scan larger than the cache evicts everything, every epoch, and the hit ratio drops to zero.
S3-FIFO admits new objects into a small FIFO (10% of the bytes); only objects read again while
there move to the main FIFO, and a ghost list remembers recently evicted keys so that an object
coming back soon goes straight to main. One-hit wonders (a scan's tail, a prefetch never used)
leave through the small queue without disturbing the working set in main. Hits only bump a
2-bit counter — no list reordering — so a hit costs O(1) without a lock-step linked list.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

_MAX_FREQ = 3


class S3FIFO(Generic[K]):
    """Decides which keys stay; the tier that owns the bytes is told of evictions via `on_evict`."""

    def __init__(self, capacity_bytes: int, on_evict: Callable[[K], None], small_ratio: float = 0.1) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes!r}")
        self.capacity = capacity_bytes
        self.small_capacity = max(1, int(capacity_bytes * small_ratio))
        self._on_evict = on_evict
        self._small: OrderedDict[K, int] = OrderedDict()  # key -> size, oldest first
        self._main: OrderedDict[K, int] = OrderedDict()
        self._freq: dict[K, int] = {}
        self._ghost: OrderedDict[K, None] = OrderedDict()
        self._ghost_limit = 4096
        self.small_bytes = 0
        self.main_bytes = 0
        self.evictions = 0

    @property
    def used_bytes(self) -> int:
        return self.small_bytes + self.main_bytes

    def __contains__(self, key: object) -> bool:
        return key in self._freq

    def __len__(self) -> int:
        return len(self._freq)

    def touch(self, key: K) -> None:
        """Record a hit."""
        if key in self._freq:
            self._freq[key] = min(self._freq[key] + 1, _MAX_FREQ)

    def admit(self, key: K, size: int) -> bool:
        """Insert `key` (evicting as needed); False when it can never fit."""
        if size > self.capacity // 2:
            return False
        if key in self._freq:
            self.remove(key)
        while self.used_bytes + size > self.capacity:
            self._evict_one()
        self._freq[key] = 0
        if key in self._ghost:
            del self._ghost[key]
            self._main[key] = size
            self.main_bytes += size
        else:
            self._small[key] = size
            self.small_bytes += size
        return True

    def remove(self, key: K) -> None:
        """Forget `key` without calling `on_evict` (the owner removes the bytes itself)."""
        if self._freq.pop(key, None) is None:
            return
        if key in self._small:
            self.small_bytes -= self._small.pop(key)
        elif key in self._main:
            self.main_bytes -= self._main.pop(key)

    def _evict_one(self) -> None:
        if self._small and (self.small_bytes >= self.small_capacity or not self._main):
            key, size = self._small.popitem(last=False)
            self.small_bytes -= size
            if self._freq[key] > 0:
                # Read again while on probation: promote to main.
                self._freq[key] = 0
                self._main[key] = size
                self.main_bytes += size
                return
            self._ghost[key] = None
            if len(self._ghost) > self._ghost_limit:
                self._ghost.popitem(last=False)
        else:
            key, size = self._main.popitem(last=False)
            self.main_bytes -= size
            if self._freq[key] > 0:
                self._freq[key] -= 1
                self._main[key] = size  # second chance: back to the head
                self.main_bytes += size
                return
        del self._freq[key]
        self.evictions += 1
        self._on_evict(key)

    def keys(self) -> list[K]:
        return [*self._small, *self._main]


def scan_pattern_demo(capacity: int, working_set: int, scan: int) -> tuple[float, float]:
    """Hit ratio of a hot working set interleaved with a one-pass scan, S3-FIFO vs LRU (for docs/tests)."""
    evicted: deque[int] = deque()
    fifo: S3FIFO[int] = S3FIFO(capacity, evicted.append)
    lru: OrderedDict[int, None] = OrderedDict()
    hits_fifo = hits_lru = total = 0
    scan_key = 10**9
    for _ in range(20):
        for key in range(working_set):
            total += 1
            if key in fifo:
                hits_fifo += 1
                fifo.touch(key)
            else:
                fifo.admit(key, 1)
            if key in lru:
                hits_lru += 1
                lru.move_to_end(key)
            else:
                lru[key] = None
                if len(lru) > capacity:
                    lru.popitem(last=False)
            for _ in range(scan // working_set):
                scan_key += 1
                fifo.admit(scan_key, 1)
                lru[scan_key] = None
                if len(lru) > capacity:
                    lru.popitem(last=False)
    return hits_fifo / total, hits_lru / total
