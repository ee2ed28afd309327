"""The two cache tiers for small objects: bounded memory, then bounded disk, both under S3-FIFO.

Both implement robolake.accelerator.cache.Tier. A fill lands in memory; the disk tier gets the
copies memory evicts (MemoryTier.on_evict), so a working set that fits in memory costs no disk
write at all (a write-through measured ~100 us of kernel and ~80 us of Python time per miss).
Disk files are named by a hash of (bucket, key) — never by the key, so a key such as
`../../etc/passwd` or one holding NUL bytes cannot name a path — and written atomically
(`.partial`, fsync-free `os.replace`). Each file carries the sha256
of its body; a file whose body does not match (torn write, disk corruption) is deleted and
counted as a miss, and the disk tier is rebuilt from its directory after a restart.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import queue
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from robolake.accelerator.cache import CachedObject, TierStats
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.policy import S3FIFO
from robolake.accelerator.replay import split_checksums

log = logging.getLogger(__name__)
_MAGIC = b"RLC1"
WRITE_BACKLOG = 4096  # queued disk writes; past it a fill writes its file in the loop, as before
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

    def close(self) -> None:
        """Finish what is queued (the disk tier's writes)."""

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

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        # Told of each copy evicted (TieredCache hands it to the disk tier): never of a discard.
        self.on_evict: Callable[[ObjectKey, CachedObject], object] | None = None

    def _evicted(self, key: ObjectKey) -> None:
        obj = self._index.get(key)
        super()._evicted(key)
        if obj is not None and self.on_evict is not None:
            self.on_evict(key, obj)

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

    def peek(self, key: ObjectKey) -> CachedObject | None:
        return self._index.get(key)


class DiskTier(_IndexedTier[str]):
    """Objects as files `<dir>/<id[:2]>/<id>` bounded by `max_bytes` (S3-FIFO decides evictions)."""

    name = "disk"

    def __init__(self, directory: Path, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.restored = self._restore()
        self._lock = threading.Lock()  # _pending, _failed, and moving files into place or out
        self._pending: dict[ObjectKey, tuple[int, CachedObject]] = {}  # indexed, file not yet in place
        self._failed: set[ObjectKey] = set()  # a write that failed: dropped on the next lookup
        self._generations = itertools.count(1)
        self._queue: queue.SimpleQueue[tuple[ObjectKey, str, int, CachedObject] | threading.Event | None]
        self._queue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    def _path(self, oid: str) -> Path:
        return self.dir / oid[:2] / oid

    def _drop(self, key: ObjectKey) -> bool:
        oid = self._index.pop(key, None)
        if oid is None:
            return False
        with self._lock:  # a queued write of this key checks its generation under this lock
            self._pending.pop(key, None)
            self._failed.discard(key)
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
        with self._lock:
            waiting = self._pending.get(key)
            failed = key in self._failed
        if failed:
            self.discard(key)
            self.stats.misses += 1
            return None
        try:
            obj = waiting[1] if waiting is not None else _decode(self._path(oid).read_bytes())
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
        self._index[key] = object_id(key)
        self._queue_write(key, obj)
        return True

    def peek(self, key: ObjectKey) -> CachedObject | None:
        return None  # reading a file is a lookup: its copy is judged on its own read

    def replace(self, key: ObjectKey, obj: CachedObject) -> None:
        if key in self._index:
            self._queue_write(key, obj)

    def flush(self) -> None:
        """Wait until every write queued so far is done."""
        if self._writer is not None:
            done = threading.Event()
            self._queue.put(done)
            done.wait()

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    def _queue_write(self, key: ObjectKey, obj: CachedObject) -> None:
        generation = next(self._generations)
        oid = self._index[key]
        with self._lock:
            self._pending[key] = (generation, obj)
            self._failed.discard(key)
            backlog = len(self._pending)
        if backlog > WRITE_BACKLOG:  # the writer is behind: this one in the loop
            self._write(key, oid, generation, obj)
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_queued, name="robolake-disk-tier", daemon=True)
            self._writer.start()
        self._queue.put((key, oid, generation, obj))

    def _write_queued(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._write(*item)
            except Exception:  # a bug must not stop every later write: this copy is dropped on lookup
                log.exception("disk tier write of %s/%s failed", *item[0])
                with self._lock:
                    self._pending.pop(item[0], None)
                    self._failed.add(item[0])

    def _write(self, key: ObjectKey, oid: str, generation: int, obj: CachedObject) -> None:
        """Write the file (`.partial`, then `os.replace`) if `generation` is still the key's latest."""
        path = self._path(oid)
        tmp = path.with_name(f"{path.name}.{generation}.partial")
        try:
            path.parent.mkdir(exist_ok=True)
            tmp.write_bytes(_encode(key, obj))
        except OSError:
            tmp.unlink(missing_ok=True)
            with self._lock:
                if self._pending.get(key, (0,))[0] == generation:
                    del self._pending[key]
                    self._failed.add(key)
            return
        with self._lock:
            current = self._pending.get(key, (0,))[0] == generation
            if current:
                del self._pending[key]
                try:
                    os.replace(tmp, path)
                except OSError:
                    self._failed.add(key)
                    current = False
        if not current:  # dropped or written again since: this copy must not land
            tmp.unlink(missing_ok=True)


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
