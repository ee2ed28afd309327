"""The cache of small objects: what a cached copy is, the `Tier` interface, and the tiers composed.

A cached object is its body plus the response headers MinIO sent for it (robolake.accelerator.
headers.replayable), so a hit is answered with the same headers a miss would have had; its
`x-amz-checksum-*` headers are kept apart, since MinIO sends them only to some requests
(robolake.accelerator.replay). `TieredCache` puts tiers (memory, then disk: robolake.accelerator.
tiers) behind one lookup / store / invalidate API, and its `store` refuses a fill whose key was
invalidated while the fill was in flight (robolake.accelerator.invalidation).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from robolake.accelerator.headers import replayable
from robolake.accelerator.invalidation import Epoch, Epochs, ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.replay import Headers, split_checksums


@dataclasses.dataclass(frozen=True)
class CachedObject:
    """An object body with the response headers to replay and the time it was validated.

    `headers` never hold checksum headers; `checksums` are the object's `x-amz-checksum-*`
    headers, () when it has none, None when unknown (the fill did not ask MinIO for them).
    """

    body: bytes
    headers: Headers
    etag: str
    validated_at: float
    checksums: Headers | None = None

    @classmethod
    def from_response(
        cls, body: bytes, headers: Iterable[tuple[str, str]], *, checksums_asked: bool, validated_at: float
    ) -> CachedObject:
        """What to keep of MinIO's 200 to a whole-object GET; `checksums_asked`: the GET had
        `x-amz-checksum-mode: ENABLED`, so an answer without checksum headers means there are none."""
        rest, checksums = split_checksums(replayable(headers))
        etag = next((v for n, v in rest if n.lower() == "etag"), "")
        return cls(
            body=body,
            headers=rest,
            etag=etag,
            validated_at=validated_at,
            checksums=checksums if checksums_asked or checksums else None,
        )

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def header_bytes(self) -> int:
        return sum(len(n) + len(v) for n, v in (*self.headers, *(self.checksums or ())))

    def revalidated(self) -> CachedObject:
        return dataclasses.replace(self, validated_at=time.time())


@dataclasses.dataclass
class TierStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    corrupt: int = 0
    bytes_served: int = 0


class Tier(Protocol):
    """One level of the cache: a bounded map from object key to cached copy, with its own eviction."""

    name: str
    stats: TierStats

    def get(self, key: ObjectKey) -> CachedObject | None:
        """The copy held for `key`, or None; counted as a hit or a miss."""

    def put(self, key: ObjectKey, obj: CachedObject) -> bool:
        """Hold `obj` for `key`, evicting others as needed; False if it was not admitted."""

    def peek(self, key: ObjectKey) -> CachedObject | None:
        """The copy held in memory for `key` (not counted, not touched in the eviction policy);
        None when there is none or the tier keeps its copies elsewhere (on disk)."""

    def replace(self, key: ObjectKey, obj: CachedObject) -> None:
        """Swap in a newer copy of a key already held, keeping its place in the eviction order."""

    def discard(self, key: ObjectKey) -> bool:
        """Drop the copy of `key`; True if there was one."""

    def discard_bucket(self, bucket: str) -> int:
        """Drop every copy of a key in `bucket`; how many there were."""

    def __contains__(self, key: object) -> bool:
        """Whether a copy of `key` is held (not counted as a lookup)."""

    def __len__(self) -> int:
        """How many copies are held."""

    @property
    def used_bytes(self) -> int:
        """The bytes counted against the tier's budget."""

    def close(self) -> None:
        """Finish work queued in the background (the disk tier's writes)."""


class TieredCache:
    """Tiers fastest first behind one API: a hit in a slower tier is promoted to the faster ones."""

    def __init__(self, tiers: Sequence[Tier], metrics: Metrics, epochs: Epochs | None = None) -> None:
        if not tiers:
            raise ValueError("TieredCache needs at least one tier")
        self.tiers = tuple(tiers)
        self.metrics = metrics
        self.epochs = epochs or Epochs()
        for faster, slower in zip(self.tiers, self.tiers[1:], strict=False):
            if hasattr(faster, "on_evict"):  # a copy leaving memory moves down a tier
                faster.on_evict = functools.partial(self._demote, slower)

    def _demote(self, slower: Tier, key: ObjectKey, obj: CachedObject) -> None:
        # Memory only ever holds copies no invalidation has touched since (it drops them at
        # once), so the evicted copy is as current as the one the fill stored.
        if key not in slower:
            slower.put(key, obj)

    def lookup(self, key: ObjectKey) -> tuple[CachedObject | None, str]:
        """(the copy, the name of the tier that held it), or (None, "miss")."""
        for depth, tier in enumerate(self.tiers):
            obj = tier.get(key)
            if obj is not None:
                for faster in self.tiers[:depth]:
                    faster.put(key, obj)
                return obj, tier.name
        return None, "miss"

    def __contains__(self, key: object) -> bool:
        return any(key in tier for tier in self.tiers)

    def peek(self, key: ObjectKey) -> CachedObject | None:
        """The fastest tier's copy of `key` when it keeps it in memory (Tier.peek)."""
        return self.tiers[0].peek(key)

    def epoch(self, key: ObjectKey) -> Epoch:
        """Capture before asking MinIO for `key`; hand it to `store` or `refresh` with the answer."""
        return self.epochs.current(key)

    def store(self, key: ObjectKey, obj: CachedObject, epoch: Epoch) -> bool:
        """Keep a filled copy in the fastest tier that admits it (a slower one gets it when it is
        evicted), unless `key` was invalidated since `epoch`."""
        if self.epochs.current(key) != epoch:
            self.metrics.inc("fill_dropped_after_invalidation")
            return False
        return any(tier.put(key, obj) for tier in self.tiers)

    def refresh(self, key: ObjectKey, obj: CachedObject, epoch: Epoch) -> bool:
        """Swap a revalidated copy into the fastest tier holding `key`, unless it was invalidated since `epoch`.

        Slower tiers keep the older validation time: a hit there is checked once more (a 304
        round trip), which costs less than rewriting a disk file on every revalidation.
        """
        if self.epochs.current(key) != epoch:
            return False
        holder = next((tier for tier in self.tiers if key in tier), None)
        if holder is not None:
            holder.replace(key, obj)
        return holder is not None

    def invalidate(self, targets: Iterable[ObjectKey], reason: str) -> None:
        """Drop the copies of `targets` (a "" key: the whole bucket) and move their epochs.

        The one place copies are dropped: writes, bucket notifications and revalidation all come here.
        """
        for bucket, key in targets:
            if key:
                self.epochs.bump((bucket, key))
                for tier in self.tiers:
                    tier.discard((bucket, key))
                self.metrics.inc(f"invalidation_{reason}")
            else:
                self.epochs.bump_bucket(bucket)
                for tier in self.tiers:
                    tier.discard_bucket(bucket)
                self.metrics.inc(f"invalidation_bucket_{reason}")

    def close(self) -> None:
        for tier in self.tiers:
            tier.close()

    def usage(self, name: str) -> tuple[int, int]:
        """(objects, used bytes) of the tier called `name`; (0, 0) if there is none."""
        for tier in self.tiers:
            if tier.name == name:
                return len(tier), tier.used_bytes
        return 0, 0

    def hit_ratio(self) -> float | None:
        """Hits in any tier per lookup (every lookup asks the first tier); None before the first."""
        first = self.tiers[0].stats
        lookups = first.hits + first.misses
        return sum(t.stats.hits for t in self.tiers) / lookups if lookups else None
