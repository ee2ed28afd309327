"""Read a zarr v2 zip kept in the lake by byte range: its directory once, then entries on demand.

    source = RangeSource(target, "lakefs-storage", "robotics-data/data/g.../c...")
    zip = RemoteZip(source, size_bytes, "lakefs://robotics-data/<commit>/replay_buffer/dataset.zarr.zip")
    zip.read_entries(["data/camera0_rgb/5.0.0.0", "data/camera0_rgb/8.0.0.0"])   # one ranged GET
    RemoteZip(source, size, where, blocks=BlockCache(root, where, size))     # every byte through local blocks

The directory is parsed by the standard library's ``zipfile`` over a file object whose reads are
ranged reads (read ahead in one block from the end, so a small directory costs one request).
Entries are read from their local headers: UMI's zips are ZIP_STORED, so an entry's bytes are
one contiguous range; entries that lie close together are read as one range. Each entry is
checked against the CRC-32 its directory records. An object at a lakeFS commit never changes,
so nothing read here is ever revalidated. Without ``blocks`` every range is a GET; with them
(blocks.py) every entry is read from aligned blocks on local disk, each fetched once; an entry
whose cached bytes fail their check has its blocks dropped and read again, once. The directory,
which has no checksum, is always read from the lake (one or two GETs per open).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from robolake.ml.blocks import BlockCache
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.s3 import S3Target
from robolake.umi.errors import DatasetFormatError
from robolake.umi.zarr_store import JPEGXL_CODEC_ID, ArrayInfo, parse_zarray

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # signature, version .. crc, sizes, name and extra lengths
_LOCAL_MAGIC = b"PK\x03\x04"
_EXTRA_SLACK = 512  # bytes read past name + data for the local extra field, so one GET usually suffices
_COALESCE_GAP = 256 * 1024  # entries closer than this are fetched in one GET (cheaper than a second request)
_TAIL_BYTES = 256 * 1024


class RangeSource:
    """One object, read by ``Range`` GETs through an S3 endpoint (the accelerator or lakeFS's gateway)."""

    def __init__(self, target: S3Target, bucket: str, key: str) -> None:
        self.target, self.bucket, self.key = target, bucket, key
        self.requests = 0
        self.bytes_read = 0
        self._client: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RangeSource({self.target.endpoint}/{self.bucket}/{self.key})"

    def __getstate__(self) -> dict[str, Any]:
        # A DataLoader worker gets a pickled copy: it opens its own connections, not the parent's.
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client, self._lock = None, threading.Lock()

    @property
    def client(self) -> Any:
        if getattr(self, "_pid", None) != os.getpid():  # forked: the parent's sockets are not ours to share
            self._client, self._lock, self._pid = None, threading.Lock(), os.getpid()
        with self._lock:  # prefetch threads and the reader share one client (boto3 clients are thread-safe)
            if self._client is None:
                self._client = boto3_client(self.target, max_pool_connections=4)
            return self._client

    def read(self, start: int, length: int) -> bytes:
        """Bytes ``start .. start+length-1`` (fewer at the end of the object)."""
        if length <= 0:
            return b""
        with boto_errors("GET", self.bucket, self.key, self.target, hint="the dataset's object must stay readable"):
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{start + length - 1}"
            )
            body: bytes = answer["Body"].read()
        with self._lock:
            self.requests += 1
            self.bytes_read += len(body)
        return body


class _RangedFile(io.RawIOBase):
    """Just enough of a seekable file for ``zipfile.ZipFile`` to parse a directory: ranged reads, one tail block."""

    def __init__(self, read: Callable[[int, int], bytes], size: int) -> None:
        self.read_range, self.size, self.pos = read, size, 0
        tail_start = max(0, size - _TAIL_BYTES)
        self.tail_start, self.tail = tail_start, read(tail_start, size - tail_start)

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.pos + size)
        if end <= self.pos:
            return b""
        if self.pos >= self.tail_start:
            out = self.tail[self.pos - self.tail_start : end - self.tail_start]
        else:
            out = self.read_range(self.pos, end - self.pos)
        self.pos += len(out)
        return out


class RemoteZip:
    """The entries of a zip in the lake, by name; `where` names it in every error."""

    def __init__(self, source: RangeSource, size: int, where: str, *, blocks: BlockCache | None = None) -> None:
        self.source, self.size, self.where, self.blocks = source, size, where, blocks
        try:
            # The directory has no checksum of its own: it comes from the lake, never from a disk copy.
            with zipfile.ZipFile(_RangedFile(source.read, size)) as zf:
                self.infos = {info.filename: info for info in zf.infolist()}
        except (zipfile.BadZipFile, EOFError, ValueError) as exc:
            raise DatasetFormatError(where, f"not a readable zip ({exc})", "expected UMI's *.zarr.zip") from exc
        for info in self.infos.values():
            if info.compress_type != zipfile.ZIP_STORED:
                raise DatasetFormatError(
                    where,
                    f"entry {info.filename!r} is compressed (zip method {info.compress_type})",
                    "reading by byte range needs ZIP_STORED entries, as zarr 2's ZipStore writes them",
                )
            if info.header_offset + info.file_size > size:
                raise DatasetFormatError(where, f"entry {info.filename!r} ends past the end of the object")

    def read_entries(self, names: Iterable[str]) -> dict[str, bytes]:
        """The stored bytes of each entry; neighbours within 256 KiB are read as one range (one GET)."""
        out: dict[str, bytes] = {}
        for group in self._groups(names):
            out.update(self._read_group(group))
        return out

    def fetch_blocks(self, names: Iterable[str]) -> int:
        """Put the blocks holding these entries on local disk, skipping any another process is fetching.

        For a prefetcher: returns the number of blocks now local. Without a block cache, nothing.
        """
        if self.blocks is None:
            return 0
        wanted = sorted({k for i in map(self._info, names) for k in self.blocks.blocks(i.header_offset, _span_end(i))})
        return sum(self.blocks.fetch(self.source, k, wait=False) for k in wanted)

    def _groups(self, names: Iterable[str]) -> list[list[zipfile.ZipInfo]]:
        groups: list[list[zipfile.ZipInfo]] = []
        for info in sorted({self._info(n) for n in names}, key=lambda i: i.header_offset):
            if groups and info.header_offset - _span_end(groups[-1][-1]) <= _COALESCE_GAP:
                groups[-1].append(info)
            else:
                groups.append([info])
        return groups

    def _read(self, start: int, length: int) -> bytes:
        if self.blocks is None:
            return self.source.read(start, length)
        return self.blocks.read(self.source, start, length)

    def read_json(self, name: str) -> dict[str, Any]:
        raw = self.read_entries([name])[name]
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetFormatError(self.where, f"{name!r} is not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise DatasetFormatError(self.where, f"{name!r} is not a JSON object")
        return obj

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = self.infos.get(name)
        if info is None:
            raise DatasetFormatError(self.where, f"missing entry {name!r}", "the replay buffer is incomplete")
        return info

    def _read_group(self, group: list[zipfile.ZipInfo]) -> dict[str, bytes]:
        start, end = group[0].header_offset, _span_end(group[-1])
        try:
            return self._parse_group(group, start, self._read(start, end - start))
        except DatasetFormatError:
            if self.blocks is None:
                raise
        # Bytes from local blocks failed a check: a disk copy is damaged. Find the entries it hit,
        # drop the blocks under them and read those once more from the lake.
        out: dict[str, bytes] = {}
        for info in group:
            begin = info.header_offset
            try:
                out.update(self._parse_group([info], begin, self._read(begin, _span_end(info) - begin)))
                continue
            except DatasetFormatError:
                pass
            for k in self.blocks.blocks(begin, begin + _LOCAL_HEADER.size + len(info.filename) + info.file_size):
                self.blocks.drop(k)
            out.update(self._parse_group([info], begin, self._read(begin, _span_end(info) - begin)))
        return out

    def _parse_group(self, group: list[zipfile.ZipInfo], start: int, blob: bytes) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for info in group:
            at = info.header_offset - start
            header = blob[at : at + _LOCAL_HEADER.size]
            if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
                raise DatasetFormatError(self.where, f"entry {info.filename!r} has no local header at its offset")
            name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
            data_at = at + _LOCAL_HEADER.size + name_len + extra_len
            data = blob[data_at : data_at + info.file_size]
            if len(data) < info.file_size:  # a local extra field longer than the slack: read the rest
                got = len(data)
                data += self._read(start + data_at + got, info.file_size - got)
            if zlib.crc32(data) != info.CRC:
                raise DatasetFormatError(self.where, f"entry {info.filename!r} fails its CRC-32", "read it again")
            out[info.filename] = data
        return out


def _span_end(info: zipfile.ZipInfo) -> int:
    return info.header_offset + _LOCAL_HEADER.size + len(info.filename.encode()) + info.file_size + _EXTRA_SLACK


# ---------------------------------------------------------------- zarr v2 arrays in a RemoteZip


def array_info(zf: RemoteZip, name: str) -> tuple[ArrayInfo, dict[str, Any] | None]:
    """An array's ``.zarray`` as ArrayInfo, plus its compressor config (None: uncompressed)."""
    key = f"{name}/.zarray"
    info, compressor = parse_zarray(zf.read_json(key), name, zf.where)
    if not info.shape:
        raise DatasetFormatError(zf.where, f"{key!r}: a 0-dimensional array holds no samples")
    return info, compressor


def chunk_keys(name: str, info: ArrayInfo) -> list[str]:
    """Chunk entries along the first axis (the others whole, as in every UMI array)."""
    if any(c != s for c, s in zip(info.chunks[1:], info.shape[1:], strict=True)):
        raise ValueError(f"{name}: only arrays chunked along the first axis are read whole")
    suffix = ".0" * (len(info.shape) - 1)
    return [f"{name}/{k}{suffix}" for k in range(math.ceil(info.shape[0] / info.chunks[0]))]


def read_array(zf: RemoteZip, name: str) -> npt.NDArray[Any]:
    """A small (low-dim, meta) array read whole, in as few GETs as its chunks' layout allows."""
    info, compressor = array_info(zf, name)
    try:
        keys = chunk_keys(name, info)
    except ValueError as exc:
        raise DatasetFormatError(zf.where, str(exc)) from exc
    raw = zf.read_entries(keys)
    parts = [decode(zf, name, info, compressor, raw[k]) for k in keys]
    return np.concatenate(parts, axis=0)[: info.shape[0]]


def decode(zf: RemoteZip, name: str, info: ArrayInfo, compressor: dict[str, Any] | None, raw: bytes) -> Any:
    """One chunk's array (a JPEG XL frame decodes to (H, W, C))."""
    try:
        if info.compressor_id == JPEGXL_CODEC_ID:
            import imagecodecs

            return np.asarray(imagecodecs.jpegxl_decode(raw, numthreads=1))
        if compressor is not None:
            import numcodecs  # type: ignore[import-untyped]

            raw = bytes(numcodecs.get_codec(compressor).decode(raw))
        return np.frombuffer(raw, dtype=info.dtype).reshape(info.chunks)
    except Exception as exc:  # a codec's own error types vary; all mean "this chunk is bad"
        raise DatasetFormatError(zf.where, f"a chunk of {name} does not decode ({exc})") from exc
