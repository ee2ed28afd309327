"""Read a zarr v2 zip kept in the lake by byte range: its directory once, then entries on demand.

    source = RangeSource(target, "lakefs-storage", "robotics-data/data/g.../c...")
    zip = RemoteZip(source, size_bytes, "lakefs://robotics-data/<commit>/replay_buffer/dataset.zarr.zip")
    zip.read_entries(["data/camera0_rgb/5.0.0.0", "data/camera0_rgb/8.0.0.0"])   # one ranged GET

The directory is parsed by the standard library's ``zipfile`` over a file object whose reads are
ranged GETs (read ahead in one block from the end, so a small directory costs one request).
Entries are read from their local headers: UMI's zips are ZIP_STORED, so an entry's bytes are
one contiguous range; entries that lie close together are fetched in one GET. Each entry is
checked against the CRC-32 its directory records. An object at a lakeFS commit never changes,
so nothing read here is ever revalidated, and an optional EntryCache keeps each entry read on
local disk for later epochs (and other processes) to take from there.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from robolake.errors import ConfigError
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

    def __repr__(self) -> str:
        return f"RangeSource({self.target.endpoint}/{self.bucket}/{self.key})"

    def __getstate__(self) -> dict[str, Any]:
        # A DataLoader worker gets a pickled copy: it opens its own connections, not the parent's.
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> Any:
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
        self.requests += 1
        self.bytes_read += len(body)
        return body


class _RangedFile(io.RawIOBase):
    """Just enough of a seekable file for ``zipfile.ZipFile`` to parse a directory: ranged reads, one tail block."""

    def __init__(self, source: RangeSource, size: int) -> None:
        self.source, self.size, self.pos = source, size, 0
        tail_start = max(0, size - _TAIL_BYTES)
        self.tail_start, self.tail = tail_start, source.read(tail_start, size - tail_start)

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
            out = self.source.read(self.pos, end - self.pos)
        self.pos += len(out)
        return out


class EntryCache:
    """Entries kept on local disk for ever: the object at a commit never changes, so neither do they.

    One file per entry under ``root/<sha256 of the object's lakefs:// name>/``, written as
    ``.partial`` then renamed, so a reader never sees half an entry; hits and misses are counted.
    """

    def __init__(self, root: Path, where: str) -> None:
        self.dir = root / hashlib.sha256(where.encode()).hexdigest()[:32]
        self.hits = self.misses = 0

    def __repr__(self) -> str:
        return f"EntryCache({str(self.dir)!r}, hits={self.hits}, misses={self.misses})"

    def _file(self, name: str) -> Path:
        return self.dir / name.replace("/", "%")

    def get(self, info: zipfile.ZipInfo) -> bytes | None:
        try:
            data = self._file(info.filename).read_bytes()
        except OSError:
            self.misses += 1
            return None
        if len(data) != info.file_size or zlib.crc32(data) != info.CRC:  # damaged on disk: read it again
            self.misses += 1
            return None
        self.hits += 1
        return data

    def put(self, name: str, data: bytes) -> None:
        target = self._file(name)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ConfigError(
                f"cannot write the dataset cache {str(self.dir)!r}: {exc.strerror}; free space or change cache_dir"
            ) from exc


class RemoteZip:
    """The entries of a zip in the lake, by name; `where` names it in every error."""

    def __init__(self, source: RangeSource, size: int, where: str, *, cache: EntryCache | None = None) -> None:
        self.source, self.size, self.where, self.cache = source, size, where, cache
        try:
            with zipfile.ZipFile(_RangedFile(source, size)) as zf:
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
        """The stored bytes of each entry; neighbours within 256 KiB come in one ranged GET."""
        out: dict[str, bytes] = {}
        wanted: list[zipfile.ZipInfo] = []
        for entry in sorted({self._info(n) for n in names}, key=lambda i: i.header_offset):
            cached = self.cache.get(entry) if self.cache is not None else None
            if cached is None:
                wanted.append(entry)
            else:
                out[entry.filename] = cached
        group: list[zipfile.ZipInfo] = []
        for info in [*wanted, None]:
            if group and (info is None or info.header_offset - _span_end(group[-1]) > _COALESCE_GAP):
                out.update(self._read_group(group))
                group = []
            if info is not None:
                group.append(info)
        return out

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
        start = group[0].header_offset
        blob = self.source.read(start, _span_end(group[-1]) - start)
        out: dict[str, bytes] = {}
        for info in group:
            at = info.header_offset - start
            header = blob[at : at + _LOCAL_HEADER.size]
            if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
                raise DatasetFormatError(self.where, f"entry {info.filename!r} has no local header at its offset")
            name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
            data_at = at + _LOCAL_HEADER.size + name_len + extra_len
            data = blob[data_at : data_at + info.file_size]
            if len(data) < info.file_size:  # a local extra field longer than the slack: fetch the rest
                got = len(data)
                data += self.source.read(start + data_at + got, info.file_size - got)
            if zlib.crc32(data) != info.CRC:
                raise DatasetFormatError(self.where, f"entry {info.filename!r} fails its CRC-32", "read it again")
            if self.cache is not None:
                self.cache.put(info.filename, data)
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
