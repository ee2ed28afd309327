"""Aligned blocks of one object at one commit, kept on local disk and shared by every process.

    cache = BlockCache(Path("~/.cache/robolake/ml").expanduser(), "lakefs://repo/<commit>/x.zarr.zip", size)
    cache.read(source, start, length)      # the bytes, from block files; a missing block is one GET
    cache.fetch(source, k, wait=False)     # a prefetcher: fetch block k unless another process is on it

Why blocks. A training epoch visits samples in random order, and a UMI frame chunk is ~40 KB:
reading chunk by chunk costs one GET per frame, and such a GET costs ~11 ms of CPU (MinIO 7,
client 2.7, accelerator 1; the ml package docstring has the figures), almost four times the
decoding of the frame (2.9 ms). A block of 4 MiB (~100 frames) is one GET of ~21 ms of CPU in
all, so the first epoch reads the object once in ``size / block`` GETs and every later read is
a ``pread`` of a local file. An object at a lakeFS commit never changes, so a block is
never revalidated: the cache directory is keyed by the object's ``lakefs://repo/commit/path``
and size, and by the block size.

Sharing. DataLoader workers are separate processes: each block is fetched by one of them. The
fetcher holds a record lock (``lockf``) on the block's lock file, released by the kernel if the
process dies and never inherited by a fork; the others wait for it (a demand read) or skip to
the next block (a prefetcher). A block file is
written as ``.partial`` then renamed, so a reader sees a whole block or none.

Trust. A block file whose size is wrong is fetched again. Its content is checked where it is
used: every zip entry read from it is checked against the CRC-32 the zip's directory records,
and a failure drops the blocks it came from and reads them again (``drop``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from robolake.errors import ConfigError

BLOCK_BYTES = 4 * 1024 * 1024
MIN_BLOCK_BYTES = 64 * 1024


class Source(Protocol):
    """Where blocks come from: ranged reads of the object (RangeSource)."""

    def read(self, start: int, length: int) -> bytes: ...


class BlockCache:
    """Blocks ``[k * block_bytes, (k + 1) * block_bytes)`` of one object, one file each under ``dir``."""

    def __init__(self, root: Path, where: str, size: int, *, block_bytes: int = BLOCK_BYTES) -> None:
        if block_bytes < MIN_BLOCK_BYTES:
            raise ConfigError(f"block_bytes {block_bytes} is under {MIN_BLOCK_BYTES} (64 KiB); use 1-16 MiB")
        self.root, self.where, self.size, self.block_bytes = root, where, size, block_bytes
        key = hashlib.sha256(f"{where}\n{size}".encode()).hexdigest()[:32]
        self.dir = root / key / f"b{block_bytes}"
        self.hits = self.misses = self.fetched = self.dropped = 0
        self._pid = -1
        self._own()

    def __repr__(self) -> str:
        return (
            f"BlockCache({str(self.dir)!r}, block_bytes={self.block_bytes}, hits={self.hits}, "
            f"misses={self.misses}, fetched={self.fetched})"
        )

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_counts", "_block_locks")}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._pid = -1
        self._own()

    def _own(self) -> None:
        """Fresh thread locks in a new process: a fork copies locks, held or not, but not their holders."""
        if self._pid != os.getpid():
            self._counts, self._pid = threading.Lock(), os.getpid()
            self._block_locks: dict[int, threading.Lock] = {}

    # ---- geometry -----------------------------------------------------------------------

    @property
    def n_blocks(self) -> int:
        return -(-self.size // self.block_bytes)

    def span(self, k: int) -> tuple[int, int]:
        """(start, length) of block k."""
        start = k * self.block_bytes
        return start, min(self.block_bytes, self.size - start)

    def blocks(self, start: int, end: int) -> range:
        """The blocks holding bytes ``start .. end-1`` (clipped to the object)."""
        end = min(end, self.size)
        if end <= start:
            return range(0)
        return range(start // self.block_bytes, (end - 1) // self.block_bytes + 1)

    def _file(self, k: int) -> Path:
        return self.dir / f"{k:08d}"

    # ---- reading ------------------------------------------------------------------------

    def has(self, k: int) -> bool:
        try:
            return self._file(k).stat().st_size == self.span(k)[1]
        except OSError:
            return False

    def read(self, source: Source, start: int, length: int) -> bytes:
        """Bytes ``start .. start+length-1`` (fewer at the end of the object), fetching missing blocks."""
        end = min(self.size, start + length)
        parts = []
        for k in self.blocks(start, end):
            block_start, block_len = self.span(k)
            lo, hi = max(start, block_start) - block_start, min(end, block_start + block_len) - block_start
            part = self._pread(k, lo, hi - lo)
            if part is None:
                self._count("misses")
                self.fetch(source, k, wait=True)
                part = self._pread(k, lo, hi - lo)
                if part is None:  # dropped again between the fetch and the read: take it from the source
                    part = source.read(block_start + lo, hi - lo)
            else:
                self._count("hits")
            parts.append(part)
        return b"".join(parts)

    def _pread(self, k: int, offset: int, length: int) -> bytes | None:
        if not self.has(k):
            return None
        try:
            fd = os.open(self._file(k), os.O_RDONLY)
        except OSError:
            return None
        try:
            data = os.pread(fd, length, offset)
        except OSError:
            return None
        finally:
            os.close(fd)
        return data if len(data) == length else None

    # ---- fetching -----------------------------------------------------------------------

    def fetch(self, source: Source, k: int, *, wait: bool) -> bool:
        """Make block k a whole local file; False if another process holds it and `wait` is False."""
        if self.has(k):
            return True
        with self._locked(k, wait=wait) as locked:
            if not locked:
                return False
            if self.has(k):  # fetched by whoever held the lock before us
                return True
            start, length = self.span(k)
            data = source.read(start, length)
            if len(data) != length:
                raise ConfigError(
                    f"{self.where}: block {k} came back with {len(data)} bytes, expected {length}; "
                    "the object is shorter than lakeFS says: re-open the dataset"
                )
            self._write(k, data)
            self._count("fetched")
        return True

    def drop(self, k: int) -> None:
        """Forget block k (its content failed a check): the next read fetches it again."""
        with contextlib.suppress(FileNotFoundError):
            self._file(k).unlink()
        self._count("dropped")

    @contextlib.contextmanager
    def _locked(self, k: int, *, wait: bool) -> Iterator[bool]:
        """Hold block k against every other thread and process; yields False if busy and not `wait`.

        Two locks: a thread lock per block (POSIX record locks do not exclude threads of one
        process), then ``lockf`` on the block's lock file. Record locks belong to the process and a
        fork does not inherit them, so a DataLoader worker forked while one of our threads held
        a block is never blocked by a lock nobody will release (``flock`` would be inherited).
        The kernel drops the lock when its holder dies or closes the file.
        """
        local = self._thread_lock(k)
        if not local.acquire(blocking=wait):
            yield False
            return
        try:
            self._mkdir()
            fd = os.open(self.dir / f"{k:08d}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                got = self._lockf(fd, wait)
                yield got
            finally:
                os.close(fd)  # releases the record lock
        finally:
            local.release()

    @staticmethod
    def _lockf(fd: int, wait: bool) -> bool:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if not wait and exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        return True

    def _thread_lock(self, k: int) -> threading.Lock:
        self._own()
        with self._counts:
            return self._block_locks.setdefault(k, threading.Lock())

    def _write(self, k: int, data: bytes) -> None:
        target = self._file(k)
        partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise self._disk_error(exc) from exc

    def _mkdir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._disk_error(exc) from exc

    def _disk_error(self, exc: OSError) -> ConfigError:
        why = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        return ConfigError(
            f"cannot write the dataset's block cache {str(self.dir)!r}: {why}; it needs about "
            f"{self.size / 2**20:,.0f} MiB free: free space or give another cache_dir"
        )

    def _count(self, name: str) -> None:
        self._own()
        with self._counts:
            setattr(self, name, getattr(self, name) + 1)
