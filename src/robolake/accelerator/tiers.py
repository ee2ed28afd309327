"""The two cache tiers for small objects: bounded memory, then bounded disk, both under S3-FIFO.

Both implement robolake.accelerator.cache.Tier. Disk files are named by a hash of (bucket, key)
— never by the key, so a key such as `../../etc/passwd` or one holding NUL bytes cannot name a
path — and written atomically (`.partial`, fsync-free `os.replace`). Each file carries the sha256
of its body; a file whose body does not match (torn write, disk corruption) is deleted and
counted as a miss, and the disk tier is rebuilt from its directory after a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Generic, TypeVar

from robolake.accelerator.cache import CachedObject, TierStats
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.policy import S3FIFO
from robolake.accelerator.replay import split_checksums

_MAGIC = b"RLC1"
_HEADER = struct.Struct(">4sI")  # magic, length of the JSON metadata that follows
V = TypeVar("V")


def object_id(key: ObjectKey) -> str:
    return hashlib.sha256(key[0].encode() + b"\0" + key[1].encode("utf-8", "surrogateescape")).hexdigest()


class _IndexedTier(Generic[V]):
    """What both tiers share: an index of the keys held, S3-FIFO over their costs, the counters."""

    name = ""

    def __init__(self, max_bytes: int) -> None:
        self._index: dict[ObjectKey, V] = {}
        self._policy: S3FIFO[ObjectKey] = S3FIFO(max_bytes, self._evicted)
        self.stats = TierStats()

    def _evicted(self, key: ObjectKey) -> None:
        self._drop(key)
        self.stats.evictions += 1

    def _drop(self, key: ObjectKey) -> bool:
        """Forget `key`'s entry (and whatever holds its bytes); True if there was one."""
        return self._index.pop(key, None) is not None

    def _hit(self, key: ObjectKey, size: int) -> None:
        self._policy.touch(key)
        self.stats.hits += 1
        self.stats.bytes_served += size

    def discard(self, key: ObjectKey) -> bool:
        self._policy.remove(key)
        return self._drop(key)

    def discard_bucket(self, bucket: str) -> int:
        keys = [k for k in self._index if k[0] == bucket]  # copied first: discarding mutates the index
        for key in keys:
            self.discard(key)
        return len(keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def used_bytes(self) -> int:
        return self._policy.used_bytes


class MemoryTier(_IndexedTier[CachedObject]):
    """Objects in a dict, bounded by `max_bytes` of bodies (S3-FIFO decides evictions)."""

    name = "memory"
    # Per-entry bookkeeping (dict slots, tuples, header strings) counted against the budget so
    # that many tiny objects cannot exceed it through overhead alone.
    ENTRY_OVERHEAD = 512

    def get(self, key: ObjectKey) -> CachedObject | None:
        obj = self._index.get(key)
        if obj is None:
            self.stats.misses += 1
            return None
        self._hit(key, obj.size)
        return obj

    def put(self, key: ObjectKey, obj: CachedObject) -> bool:
        cost = obj.size + self.ENTRY_OVERHEAD + obj.header_bytes
        if not self._policy.admit(key, cost):
            return False
        self._index[key] = obj
        return True

    def replace(self, key: ObjectKey, obj: CachedObject) -> None:
        if key in self._index:
            self._index[key] = obj


class DiskTier(_IndexedTier[str]):
    """Objects as files `<dir>/<id[:2]>/<id>` bounded by `max_bytes` (S3-FIFO decides evictions)."""

    name = "disk"

    def __init__(self, directory: Path, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.restored = self._restore()

    def _path(self, oid: str) -> Path:
        return self.dir / oid[:2] / oid

    def _drop(self, key: ObjectKey) -> bool:
        oid = self._index.pop(key, None)
        if oid is None:
            return False
        self._path(oid).unlink(missing_ok=True)
        return True

    def _restore(self) -> int:
        """Re-index files left by a previous run; drop partial and unreadable ones."""
        restored = 0
        for path in sorted(self.dir.glob("??/*")):
            if path.name.endswith(".partial"):
                path.unlink(missing_ok=True)
                continue
            try:
                key, size = self._read_meta(path)
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)
                self.stats.corrupt += 1
                continue
            if object_id(key) != path.name or not self._policy.admit(key, size):
                path.unlink(missing_ok=True)
                continue
            self._index[key] = path.name
            restored += 1
        return restored

    @staticmethod
    def _read_meta(path: Path) -> tuple[ObjectKey, int]:
        with path.open("rb") as fh:
            magic, length = _HEADER.unpack(fh.read(_HEADER.size))
            if magic != _MAGIC:
                raise ValueError("not a cache file")
            meta = json.loads(fh.read(length))
        return (meta["bucket"], meta["key"]), int(meta["size"])

    def get(self, key: ObjectKey) -> CachedObject | None:
        oid = self._index.get(key)
        if oid is None:
            self.stats.misses += 1
            return None
        try:
            obj = _decode(self._path(oid).read_bytes())
        except (OSError, ValueError, KeyError, struct.error):
            self.stats.corrupt += 1
            self.stats.misses += 1
            self.discard(key)
            return None
        self._hit(key, obj.size)
        return obj

    def put(self, key: ObjectKey, obj: CachedObject) -> bool:
        if not self._policy.admit(key, obj.size):
            return False
        if not self._write(key, obj):
            self.discard(key)
            return False
        return True

    def replace(self, key: ObjectKey, obj: CachedObject) -> None:
        if key in self._index and not self._write(key, obj):
            self.discard(key)

    def _write(self, key: ObjectKey, obj: CachedObject) -> bool:
        """Write the file atomically (`.partial`, then `os.replace`) and index it; False on an OSError."""
        oid = object_id(key)
        path = self._path(oid)
        tmp = path.with_name(path.name + ".partial")
        try:
            path.parent.mkdir(exist_ok=True)
            with tmp.open("wb") as fh:
                fh.write(_encode(key, obj))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return False
        self._index[key] = oid
        return True


def _encode(key: ObjectKey, obj: CachedObject) -> bytes:
    meta = json.dumps(
        {
            "bucket": key[0],
            "key": key[1],
            "size": obj.size,
            "etag": obj.etag,
            "sha256": hashlib.sha256(obj.body).hexdigest(),
            "headers": obj.headers,
            "checksums": obj.checksums,
            "validated_at": obj.validated_at,
        }
    ).encode()
    return _HEADER.pack(_MAGIC, len(meta)) + meta + obj.body


def _decode(raw: bytes) -> CachedObject:
    """A cache file's object; ValueError (or KeyError, struct.error) if the file is not whole."""
    magic, length = _HEADER.unpack_from(raw)
    if magic != _MAGIC:
        raise ValueError("bad magic")
    meta = json.loads(raw[_HEADER.size : _HEADER.size + length])
    body = raw[_HEADER.size + length :]
    if len(body) != meta["size"] or hashlib.sha256(body).hexdigest() != meta["sha256"]:
        raise ValueError("body does not match its checksum")
    headers = tuple((n, v) for n, v in meta["headers"])
    if "checksums" in meta:
        listed = meta["checksums"]
        checksums = None if listed is None else tuple((n, v) for n, v in listed)
    else:  # written before checksums were kept apart: they are among the headers, if MinIO sent any
        headers, found = split_checksums(headers)
        checksums = found or None
    return CachedObject(
        body=body, headers=headers, etag=meta["etag"], validated_at=float(meta["validated_at"]), checksums=checksums
    )
