"""Two cache tiers for small objects: bounded memory, then bounded disk, both under S3-FIFO.

A cached object is its body plus the response headers MinIO sent for it, so a hit is answered
with the same headers a miss would have had; its `x-amz-checksum-*` headers are kept apart, since
MinIO sends them only to some requests (robolake.accelerator.replay). Disk files are named by a hash of (bucket, key) —
never by the key, so a key such as `../../etc/passwd` or one holding NUL bytes cannot name a path
— and written atomically (`.partial`, fsync-free `os.replace`). Each file carries the sha256 of
its body; a file whose body does not match (torn write, disk corruption) is deleted and counted
as a miss, and the disk tier is rebuilt from its directory after a restart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from robolake.accelerator.policy import S3FIFO
from robolake.accelerator.replay import Headers, split_checksums

ObjectKey = tuple[str, str]  # (bucket, key)

_MAGIC = b"RLC1"
_HEADER = struct.Struct(">4sI")  # magic, length of the JSON metadata that follows
# Headers that belong to one response, not to the object: never stored, never replayed.
PER_RESPONSE = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
    "upgrade", "date", "x-amz-request-id", "content-length",
})


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
    def from_response(cls, body: bytes, headers: Iterable[tuple[str, str]], *, checksums_asked: bool,
                      validated_at: float) -> CachedObject:  # fmt: skip
        """What to keep of MinIO's 200 to a whole-object GET; `checksums_asked`: the GET had
        `x-amz-checksum-mode: ENABLED`, so an answer without checksum headers means there are none."""
        # Access-Control-* answer one request's Origin (requests with one are not answered from cache).
        kept = [(n, v) for n, v in headers
                if n.lower() not in PER_RESPONSE and not n.lower().startswith("access-control-")]
        rest, checksums = split_checksums(kept)
        etag = next((v for n, v in rest if n.lower() == "etag"), "")
        return cls(body=body, headers=rest, etag=etag, validated_at=validated_at,
                   checksums=checksums if checksums_asked or checksums else None)

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


def object_id(key: ObjectKey) -> str:
    return hashlib.sha256(key[0].encode() + b"\0" + key[1].encode("utf-8", "surrogateescape")).hexdigest()


def _discard_bucket(index: Iterable[ObjectKey], discard: Callable[[ObjectKey], bool], bucket: str) -> int:
    """Drop every key of `bucket` from a tier (its index is copied first: discarding mutates it)."""
    keys = [k for k in index if k[0] == bucket]
    for key in keys:
        discard(key)
    return len(keys)


class MemoryTier:
    """Objects in a dict, bounded by `max_bytes` of bodies (S3-FIFO decides evictions)."""

    # Per-entry bookkeeping (dict slots, tuples, header strings) counted against the budget so
    # that many tiny objects cannot exceed it through overhead alone.
    ENTRY_OVERHEAD = 512

    def __init__(self, max_bytes: int) -> None:
        self._data: dict[ObjectKey, CachedObject] = {}
        self.stats = TierStats()
        self.policy: S3FIFO[ObjectKey] = S3FIFO(max_bytes, self._evicted)
        self.evicted_hook: list[ObjectKey] = []

    def _evicted(self, key: ObjectKey) -> None:
        self._data.pop(key, None)
        self.stats.evictions += 1

    def get(self, key: ObjectKey) -> CachedObject | None:
        obj = self._data.get(key)
        if obj is None:
            self.stats.misses += 1
            return None
        self.policy.touch(key)
        self.stats.hits += 1
        self.stats.bytes_served += obj.size
        return obj

    def put(self, key: ObjectKey, obj: CachedObject) -> bool:
        cost = obj.size + self.ENTRY_OVERHEAD + obj.header_bytes
        if not self.policy.admit(key, cost):
            return False
        self._data[key] = obj
        return True

    def replace(self, key: ObjectKey, obj: CachedObject) -> None:
        """Swap in a revalidated copy without changing its place in the queues."""
        if key in self._data:
            self._data[key] = obj

    def discard(self, key: ObjectKey) -> bool:
        self.policy.remove(key)
        return self._data.pop(key, None) is not None

    def discard_bucket(self, bucket: str) -> int:
        return _discard_bucket(self._data, self.discard, bucket)

    @property
    def used_bytes(self) -> int:
        return self.policy.used_bytes

    def __len__(self) -> int:
        return len(self._data)


class DiskTier:
    """Objects as files `<dir>/<id[:2]>/<id>` bounded by `max_bytes` (S3-FIFO decides evictions)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stats = TierStats()
        self.policy: S3FIFO[ObjectKey] = S3FIFO(max_bytes, self._evicted)
        self._ids: dict[ObjectKey, str] = {}
        self.restored = self._restore()

    def _path(self, oid: str) -> Path:
        return self.dir / oid[:2] / oid

    def _evicted(self, key: ObjectKey) -> None:
        oid = self._ids.pop(key, None)
        if oid is not None:
            self._path(oid).unlink(missing_ok=True)
        self.stats.evictions += 1

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
            if object_id(key) != path.name or not self.policy.admit(key, size):
                path.unlink(missing_ok=True)
                continue
            self._ids[key] = path.name
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
        oid = self._ids.get(key)
        if oid is None:
            self.stats.misses += 1
            return None
        try:
            raw = self._path(oid).read_bytes()
            magic, length = _HEADER.unpack_from(raw)
            if magic != _MAGIC:
                raise ValueError("bad magic")
            meta = json.loads(raw[_HEADER.size:_HEADER.size + length])
            body = raw[_HEADER.size + length:]
            if len(body) != meta["size"] or hashlib.sha256(body).hexdigest() != meta["sha256"]:
                raise ValueError("body does not match its checksum")
        except (OSError, ValueError, KeyError, struct.error):
            self.stats.corrupt += 1
            self.stats.misses += 1
            self.discard(key)
            return None
        self.policy.touch(key)
        self.stats.hits += 1
        self.stats.bytes_served += len(body)
        headers = tuple((n, v) for n, v in meta["headers"])
        if "checksums" in meta:
            listed = meta["checksums"]
            checksums = None if listed is None else tuple((n, v) for n, v in listed)
        else:  # written before checksums were kept apart: they are among the headers, if MinIO sent any
            headers, found = split_checksums(headers)
            checksums = found or None
        return CachedObject(body=body, headers=headers, etag=meta["etag"], validated_at=float(meta["validated_at"]),
                            checksums=checksums)

    def put(self, key: ObjectKey, obj: CachedObject) -> bool:
        if not self.policy.admit(key, obj.size):
            return False
        oid = object_id(key)
        meta = json.dumps({
            "bucket": key[0], "key": key[1], "size": obj.size, "etag": obj.etag,
            "sha256": hashlib.sha256(obj.body).hexdigest(), "headers": obj.headers,
            "checksums": obj.checksums, "validated_at": obj.validated_at,
        }).encode()
        path = self._path(oid)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        try:
            with tmp.open("wb") as fh:
                fh.write(_HEADER.pack(_MAGIC, len(meta)))
                fh.write(meta)
                fh.write(obj.body)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            self.policy.remove(key)
            return False
        self._ids[key] = oid
        return True

    def discard(self, key: ObjectKey) -> bool:
        self.policy.remove(key)
        oid = self._ids.pop(key, None)
        if oid is None:
            return False
        self._path(oid).unlink(missing_ok=True)
        return True

    def discard_bucket(self, bucket: str) -> int:
        return _discard_bucket(self._ids, self.discard, bucket)

    @property
    def used_bytes(self) -> int:
        return self.policy.used_bytes

    def __len__(self) -> int:
        return len(self._ids)
