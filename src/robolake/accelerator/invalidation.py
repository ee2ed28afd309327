"""What invalidates a cached copy, and the epochs that keep a racing fill from putting it back.

Every path that drops copies goes through `TieredCache.invalidate` (robolake.accelerator.cache):
a write through the accelerator (the keys `write_targets` names, dropped before and after MinIO
answers), a MinIO bucket notification (admin port), and a background revalidation that found
a changed ETag. Each invalidation bumps the key's (or bucket's) epoch; a fill captures the epoch
before it asks MinIO and is stored only if it has not moved, so a read that raced a write cannot
put the old bytes back.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

ObjectKey = tuple[str, str]  # (bucket, key); key "" stands for the whole bucket in a write target
Epoch = tuple[int, int]  # (the key's, its bucket's)

_KEY_ELEMENT = re.compile(rb"<Key>(.*?)</Key>", re.S)


class Epochs:
    """Invalidation epochs per key and per bucket; at most `limit` keys are remembered.

    A key's epoch is the value of one clock at its last invalidation. A forgotten key (the oldest
    go first) reads as the newest value forgotten so far, so its epoch can only move forward:
    forgetting costs at most a fill dropped for nothing, never a stale one stored.
    """

    def __init__(self, limit: int = 65536) -> None:
        self._keys: OrderedDict[ObjectKey, int] = OrderedDict()  # oldest invalidation first
        self._buckets: dict[str, int] = {}
        self._clock = 0
        self._forgotten = 0  # the epoch of every key not in _keys
        self._limit = limit

    def current(self, key: ObjectKey) -> Epoch:
        """The epoch a fill of `key` captures before it asks MinIO."""
        return self._keys.get(key, self._forgotten), self._buckets.get(key[0], 0)

    def bump(self, key: ObjectKey) -> None:
        """Move `key`'s epoch: fills of it in flight are not stored."""
        self._clock += 1
        self._keys.pop(key, None)
        self._keys[key] = self._clock
        if len(self._keys) > self._limit:
            _, self._forgotten = self._keys.popitem(last=False)

    def bump_bucket(self, bucket: str) -> None:
        """Move the epoch of every key in `bucket`."""
        self._buckets[bucket] = self._buckets.get(bucket, 0) + 1


def is_multi_delete(method: str, bucket: str, key: str, query: Mapping[str, str]) -> bool:
    """`POST /bucket?delete`: the keys it deletes are in its (small, buffered) XML body."""
    return method == "POST" and bool(bucket) and not key and "delete" in query


def write_targets(method: str, bucket: str, key: str, query: Mapping[str, str], body: bytes) -> list[ObjectKey]:
    """What a write (PUT, POST, DELETE) may change: its object, the keys of a multi-delete, else its bucket.

    `body` is read only for a multi-delete. A bucket-level write (delete bucket, policy, ...) drops
    the whole bucket, as its target ("" key).
    """
    if not bucket:
        return []
    if key:
        return [(bucket, key)]
    if is_multi_delete(method, bucket, key, query):
        return [(bucket, _xml_unescape(k.decode("utf-8", "replace"))) for k in _KEY_ELEMENT.findall(body)]
    return [(bucket, "")]


def _xml_unescape(text: str) -> str:
    return (
        text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&apos;", "'")
        .replace("&amp;", "&")
    )
