"""What invalidates a cached copy, and the epochs that keep a racing fill from putting it back.

Every path that drops copies goes through `TieredCache.invalidate` (robolake.accelerator.cache):
a write through the accelerator once MinIO has answered it with success (the keys
`write_targets` names), a MinIO bucket notification (admin port), and a background revalidation
that found a changed ETag. Each invalidation bumps the key's (or bucket's) epoch; a fill captures
the epoch before it asks MinIO and is stored only if it has not moved, so a read that raced a
write cannot put the old bytes back: the bump comes before the writer sees its answer, and a
fill that began earlier (and may have read the old object) is refused when it comes to store.
A refused or unauthenticated write therefore changes nothing here.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence

ObjectKey = tuple[str, str]  # (bucket, key); key "" stands for the whole bucket in a write target
Epoch = tuple[int, int]  # (the key's, its bucket's)


class _Clock:
    """Epochs of at most `limit` names, each remembered by a 16-byte digest (a key may be 8 KB).

    A name's epoch is the value of one clock at its last bump. A forgotten name (the oldest go
    first) reads as the newest value forgotten so far, so its epoch can only move forward:
    forgetting costs at most a fill dropped for nothing, never a stale one stored. Two names
    sharing a digest share an epoch, which errs the same way.
    """

    def __init__(self, limit: int) -> None:
        self._epochs: OrderedDict[bytes, int] = OrderedDict()  # oldest bump first
        self._clock = 0
        self._forgotten = 0  # the epoch of every name not in _epochs
        self._limit = limit

    def current(self, name: bytes) -> int:
        return self._epochs.get(_digest(name), self._forgotten)

    def bump(self, name: bytes) -> None:
        self._clock += 1
        digest = _digest(name)
        self._epochs.pop(digest, None)
        self._epochs[digest] = self._clock
        if len(self._epochs) > self._limit:
            _, self._forgotten = self._epochs.popitem(last=False)

    def __len__(self) -> int:
        return len(self._epochs)


def _digest(name: bytes) -> bytes:
    return hashlib.blake2b(name, digest_size=16).digest()


def _name(*parts: str) -> bytes:
    return "\0".join(parts).encode("utf-8", "surrogateescape")


class Epochs:
    """Invalidation epochs per key and per bucket; at most `limit` of each are remembered."""

    def __init__(self, limit: int = 65536) -> None:
        self._keys = _Clock(limit)
        self._buckets = _Clock(limit)

    def current(self, key: ObjectKey) -> Epoch:
        """The epoch a fill of `key` captures before it asks MinIO."""
        return self._keys.current(_name(*key)), self._buckets.current(_name(key[0]))

    def bump(self, key: ObjectKey) -> None:
        """Move `key`'s epoch: fills of it in flight are not stored."""
        self._keys.bump(_name(*key))

    def bump_bucket(self, bucket: str) -> None:
        """Move the epoch of every key in `bucket`."""
        self._buckets.bump(_name(bucket))

    def tracked(self) -> tuple[int, int]:
        """(keys, buckets) whose epochs are remembered: bounded by `limit` each."""
        return len(self._keys), len(self._buckets)


def is_multi_delete(method: str, bucket: str, key: str, query: Mapping[str, str]) -> bool:
    """`POST /bucket?delete`: the keys it deletes are in its XML body (robolake.accelerator.multidelete)."""
    return method == "POST" and bool(bucket) and not key and "delete" in query


def write_targets(
    method: str, bucket: str, key: str, query: Mapping[str, str], deleted: Sequence[str] | None = None
) -> list[ObjectKey]:
    """What a successful write (PUT, POST, DELETE) changed: its object, else its whole bucket.

    For a multi-delete, `deleted` are the keys it removed (None: not known, so the bucket). A
    bucket-level write (delete bucket, policy, ...) drops the whole bucket, as its target ("" key).
    """
    if not bucket:
        return []
    if key:
        return [(bucket, key)]
    if is_multi_delete(method, bucket, key, query) and deleted is not None:
        return [(bucket, k) for k in deleted if k]
    return [(bucket, "")]
