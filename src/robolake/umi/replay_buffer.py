"""UMI's replay buffer (``dataset.zarr.zip``): write it byte for byte as UMI does, and check one.

UMI's ``07_generate_replay_buffer.py`` fills an in-memory zarr 2.16 store and saves it once with
``zarr.ZipStore``. We write the same bytes without zarr, streaming, and deterministically:

- Zarr v2 metadata as zarr's ``json_dumps`` writes it (indent 4, sorted keys, ASCII); zarr 2.16
  writes no ``dimension_separator``. ``meta/episode_ends`` starts with chunk (1,) and is re-chunked
  to ``int(len * 1.5)`` whenever it outgrows its chunk (UMI's ``add_episode``); each re-chunk is a
  ``zarr.copy``, which leaves an empty ``.zattrs`` behind.
- Low-dim arrays: no compressor, chunk length from UMI's ``get_optimal_chunks`` on the first
  episode (= the first episode's length below 2 MB), the last chunk zero-padded to full size.
- Images: one frame per chunk, ``imagecodecs_jpegxl`` with the config of UMI's
  ``JpegXl(level=99, numthreads=1)`` (level 99 = libjxl distance 0.19, lossy).
- Zip: ZIP_STORED entries (mode 0644), in the order ``zarr.copy_store`` writes them (root
  ``.zgroup``, ``meta/`` keys sorted, ``data/.zgroup``, then each array's keys sorted), and a fixed
  1980-01-01 timestamp where zarr would put the wall clock.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import imagecodecs
import numpy as np
import numpy.typing as npt

from robolake.umi.errors import DatasetFormatError

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
IMAGE_SIZE = (224, 224)
JPEGXL_CODEC_ID = "imagecodecs_jpegxl"
# What UMI's vendored imagecodecs_numcodecs.JpegXl(level=99, numthreads=1).get_config() returns, key for
# key. No more: UMI's loader rebuilds the codec as JpegXl(**config), and its __init__ rejects the keys
# newer imagecodecs records (bitspersample, squeeze) with a TypeError. Our readers (validate_replay_buffer,
# open_replay_buffer, so ingest) take either shape.
JPEGXL_CONFIG: dict[str, Any] = {
    "id": JPEGXL_CODEC_ID,
    "level": 99,
    "effort": None,
    "distance": None,
    "lossless": False,
    "decodingspeed": None,
    "photometric": None,
    "planar": None,
    "usecontainer": None,
    "index": None,
    "keeporientation": None,
    "numthreads": 1,
}
_TARGET_CHUNK_BYTES = 2e6  # UMI's get_optimal_chunks default


def encode_frame(image: npt.NDArray[np.uint8]) -> bytes:
    """One camera chunk: JPEG XL exactly as UMI's ``JpegXl(level=99, numthreads=1)`` encodes it."""
    out = imagecodecs.jpegxl_encode(
        image, level=99, effort=None, distance=None, lossless=False, decodingspeed=None,
        photometric=None, planar=None, usecontainer=None, numthreads=1,
    )  # fmt: skip
    return bytes(out)


def zarr_json(obj: Mapping[str, Any]) -> bytes:
    """zarr 2's ``json_dumps``: the bytes of every ``.zarray``/``.zgroup``/``.zattrs``."""
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=True, separators=(",", ": ")).encode("ascii")


def zarray_meta(shape: Sequence[int], chunks: Sequence[int], dtype: np.dtype[Any],
                compressor: Mapping[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    fill: int | float = 0.0 if dtype.kind == "f" else 0
    return {
        "chunks": list(chunks),
        "compressor": None if compressor is None else dict(compressor),
        "dtype": dtype.str,
        "fill_value": fill,
        "filters": None,
        "order": "C",
        "shape": list(shape),
        "zarr_format": 2,
    }


def optimal_chunks(shape: Sequence[int], itemsize: int, target_bytes: float = _TARGET_CHUNK_BYTES) -> tuple[int, ...]:
    """UMI's ``get_optimal_chunks``: keep trailing dims whole, cut the time axis near 2 MB."""
    rshape = list(shape[::-1])
    split = len(shape) - 1
    for i in range(len(shape) - 1):
        here = itemsize * math.prod(rshape[:i])
        nxt = itemsize * math.prod(rshape[: i + 1])
        if here <= target_bytes < nxt:
            split = i
    rchunks = rshape[:split]
    item_bytes = itemsize * math.prod(rshape[:split])
    rchunks.append(min(rshape[split], math.ceil(target_bytes / item_bytes)))
    rchunks.extend([1] * (len(shape) - len(rchunks)))
    return tuple(int(c) for c in rchunks[::-1])


def episode_ends_chunking(n_episodes: int) -> tuple[int, bool]:
    """Chunk length of ``meta/episode_ends`` after UMI adds ``n_episodes``, and whether it was copied."""
    chunk, copied = 1, False
    for length in range(1, n_episodes + 1):
        if chunk < length:
            chunk, copied = int(length * 1.5), True
    return chunk, copied


def _lowdim_chunks(array: npt.NDArray[Any], chunk_len: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    n = array.shape[0]
    suffix = ".0" * (array.ndim - 1)
    for k in range(math.ceil(n / chunk_len)):
        block = np.zeros((chunk_len, *array.shape[1:]), dtype=array.dtype.newbyteorder("<"))
        part = array[k * chunk_len : (k + 1) * chunk_len]
        block[: part.shape[0]] = part
        out[f"{k}{suffix}"] = block.tobytes(order="C")
    return out


class ReplayBufferWriter:
    """Collects episodes, then writes ``dataset.zarr.zip`` atomically on :meth:`close`.

    Encoded frames go to a spool file beside the output as they come, so memory holds only the
    low-dim arrays; :meth:`close` copies them into the zip in zarr's key order.
    """

    def __init__(self, path: str | Path, cameras: Sequence[str] = ("camera0_rgb",),
                 image_size: tuple[int, int] = IMAGE_SIZE) -> None:  # fmt: skip
        self.path = Path(path)
        self.cameras = tuple(cameras)
        self.image_size = image_size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Closed by close()/abort(); a with-block cannot span the writer's lifetime.
        self._spool: IO[bytes] = tempfile.TemporaryFile(dir=self.path.parent, prefix=".spool-")  # noqa: SIM115
        self._frames: dict[str, list[tuple[int, int]]] = {c: [] for c in self.cameras}
        self._lowdim: dict[str, list[npt.NDArray[Any]]] = {}
        self._ends: list[int] = []

    @property
    def n_steps(self) -> int:
        return self._ends[-1] if self._ends else 0

    def add_episode(self, lowdim: Mapping[str, npt.NDArray[Any]], frames: Mapping[str, Sequence[bytes]]) -> None:
        """Append one episode: low-dim arrays with T rows each and T encoded frames per camera."""
        lengths = {name: arr.shape[0] for name, arr in lowdim.items()}
        lengths.update({cam: len(chunks) for cam, chunks in frames.items()})
        if len(set(lengths.values())) != 1:
            raise ValueError(f"episode {len(self._ends)}: arrays disagree on the episode length: {lengths!r}")
        if set(frames) != set(self.cameras):
            raise ValueError(f"episode {len(self._ends)}: frames for {sorted(frames)!r}, expected {self.cameras!r}")
        if self._lowdim and set(lowdim) != set(self._lowdim):
            raise ValueError(f"episode {len(self._ends)}: arrays {sorted(lowdim)!r} differ from the first episode's")
        for name, arr in lowdim.items():
            self._lowdim.setdefault(name, []).append(np.asarray(arr))
        for cam, chunks in frames.items():
            for chunk in chunks:
                self._frames[cam].append((self._spool.tell(), len(chunk)))
                self._spool.write(chunk)
        self._ends.append(self.n_steps + next(iter(lengths.values())))

    def _entries(self) -> list[tuple[str, bytes | tuple[int, int]]]:
        n, n_episodes = self.n_steps, len(self._ends)
        group = zarr_json({"zarr_format": 2})
        entries: list[tuple[str, bytes | tuple[int, int]]] = [(".zgroup", group)]
        ends_chunk, copied = episode_ends_chunking(n_episodes)
        ends = np.asarray(self._ends, dtype="<i8")
        meta: dict[str, bytes] = {
            "meta/.zgroup": group,
            "meta/episode_ends/.zarray": zarr_json(zarray_meta((n_episodes,), (ends_chunk,), ends.dtype, None)),
        }
        if copied:
            meta["meta/episode_ends/.zattrs"] = zarr_json({})
        meta.update({f"meta/episode_ends/{k}": v for k, v in _lowdim_chunks(ends, ends_chunk).items()})
        # zarr.copy_store's order: plain string order within a group, so "10.0" sorts before "2.0".
        entries.extend((k, meta[k]) for k in sorted(meta))
        entries.append(("data/.zgroup", group))
        names = sorted([*self._lowdim, *self.cameras])
        for name in names:
            prefix = f"data/{name}/"
            array_entries: dict[str, bytes | tuple[int, int]] = {}
            if name in self.cameras:
                h, w = self.image_size
                dtype = np.dtype("|u1")
                array_entries[".zarray"] = zarr_json(zarray_meta((n, h, w, 3), (1, h, w, 3), dtype, JPEGXL_CONFIG))
                for i, span in enumerate(self._frames[name]):
                    array_entries[f"{i}.0.0.0"] = span
            else:
                first = self._lowdim[name][0]
                full = np.concatenate(self._lowdim[name], axis=0)
                chunks = optimal_chunks(first.shape, first.dtype.itemsize)
                array_entries[".zarray"] = zarr_json(
                    zarray_meta(full.shape, chunks, full.dtype.newbyteorder("<"), None)
                )
                array_entries.update(_lowdim_chunks(full, chunks[0]))
            entries.extend((prefix + k, array_entries[k]) for k in sorted(array_entries))
        return entries

    def close(self) -> None:
        """Write the zip to ``<path>.partial``, then rename it over ``path``."""
        if not self._ends:
            self.abort()
            raise ValueError(f"{self.path}: no episodes were added; a replay buffer needs at least one")
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, value in self._entries():
                    if isinstance(value, tuple):
                        self._spool.seek(value[0])
                        value = self._spool.read(value[1])
                    info = zipfile.ZipInfo(filename=key, date_time=ZIP_DATE_TIME)
                    info.compress_type = zipfile.ZIP_STORED
                    info.create_system = 3  # Unix, whatever the host, so the bytes do not depend on it
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, value)
            os.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)
            self._spool.close()

    def abort(self) -> None:
        self._spool.close()

    def __enter__(self) -> ReplayBufferWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------- reading and validation


@dataclass(frozen=True)
class ArrayInfo:
    """One array's metadata as stored in its ``.zarray``."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    compressor_id: str | None


@dataclass(frozen=True)
class ReplayBufferInfo:
    """What :func:`validate_replay_buffer` found in a ``*.zarr.zip``."""

    path: str
    size_bytes: int
    n_steps: int
    n_episodes: int
    episode_lengths: tuple[int, ...]
    n_robots: int
    cameras: tuple[str, ...]
    image_shape: tuple[int, int, int]
    has_demo_poses: bool
    all_entries_stored: bool
    arrays: dict[str, ArrayInfo] = field(default_factory=dict)


def open_replay_buffer(path: str | Path) -> Any:
    """Open a replay buffer with zarr 2 as UMI's loader does (JPEG XL codec registered); read-only."""
    import zarr  # type: ignore[import-untyped]
    from imagecodecs.numcodecs import register_codecs

    register_codecs(verbose=False)
    return zarr.open_group(zarr.ZipStore(str(path), mode="r"), mode="r")


_LOWDIM_SPECS: dict[str, tuple[tuple[int, ...], str, bool]] = {
    # suffix: (trailing shape, dtype, required)
    "eef_pos": ((3,), "<f4", True),
    "eef_rot_axis_angle": ((3,), "<f4", True),
    "gripper_width": ((1,), "<f4", True),
    "demo_start_pose": ((6,), "<f8", False),
    "demo_end_pose": ((6,), "<f8", False),
}
_IMAGE_CODECS = {JPEGXL_CODEC_ID}
_GENERIC_CODECS = {"blosc", "zstd", "lz4", "zlib", "gzip", "bz2", "lzma"}


class _Store:
    """Read-only access to a zip's entries without trusting its directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise DatasetFormatError(path, "no such file", "check the path")
        self.size = path.stat().st_size
        try:
            self.zf = zipfile.ZipFile(path)
        except OSError as exc:
            raise DatasetFormatError(path, f"cannot be read ({exc.strerror or exc})", "check its permissions") from exc
        except (zipfile.BadZipFile, EOFError, ValueError) as exc:
            with path.open("rb") as fh:
                head = fh.read(4)
            if head == b"PK\x03\x04":
                raise DatasetFormatError(
                    path, f"truncated or damaged zip ({exc}); {self.size} bytes on disk", "download it again"
                ) from exc
            raise DatasetFormatError(
                path, f"not a zip archive (starts with {head!r})", "expected a *.zarr.zip"
            ) from exc
        self.infos = {info.filename: info for info in self.zf.infolist()}
        for info in self.infos.values():
            if info.header_offset + info.compress_size > self.size:
                self.zf.close()
                raise DatasetFormatError(
                    path, f"truncated zip: entry {info.filename!r} ends past the end of the file", "download it again"
                )

    def read(self, key: str) -> bytes:
        try:
            return self.zf.read(key)
        except KeyError as exc:
            raise DatasetFormatError(self.path, f"missing {key!r}") from exc
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            raise DatasetFormatError(self.path, f"cannot read {key!r}: {exc}", "the zip is damaged") from exc

    def json(self, key: str) -> dict[str, Any]:
        try:
            obj = json.loads(self.read(key))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetFormatError(self.path, f"{key!r} is not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise DatasetFormatError(self.path, f"{key!r} is not a JSON object")
        return obj


def _array_info(store: _Store, name: str) -> ArrayInfo:
    key = f"{name}/.zarray"
    meta = store.json(key)
    try:
        shape, chunks = tuple(int(x) for x in meta["shape"]), tuple(int(x) for x in meta["chunks"])
        dtype = np.dtype(meta["dtype"]).str
        compressor = meta["compressor"]
        if meta.get("zarr_format") != 2 or meta.get("filters") is not None or meta.get("order", "C") != "C":
            raise ValueError("only zarr_format 2, order C, no filters are supported")
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(store.path, f"{key!r} is not valid zarr v2 array metadata ({exc})") from exc
    if len(shape) != len(chunks) or any(c <= 0 for c in chunks):
        raise DatasetFormatError(store.path, f"{key!r}: chunks {list(chunks)} do not fit shape {list(shape)}")
    codec = None if compressor is None else str(compressor.get("id")) if isinstance(compressor, dict) else "?"
    if codec is not None and codec not in _IMAGE_CODECS | _GENERIC_CODECS:
        raise DatasetFormatError(
            store.path, f"{name!r} uses unknown codec id {codec!r}", f"known: {sorted(_IMAGE_CODECS | _GENERIC_CODECS)}"
        )
    return ArrayInfo(shape, chunks, dtype, codec)


def _check_chunk_entries(store: _Store, name: str, info: ArrayInfo) -> None:
    counts = [math.ceil(s / c) for s, c in zip(info.shape, info.chunks, strict=True)]
    raw_size = math.prod(info.chunks) * np.dtype(info.dtype).itemsize
    for index in np.ndindex(*counts):
        key = f"{name}/" + ".".join(str(i) for i in index)
        entry = store.infos.get(key)
        if entry is None:
            raise DatasetFormatError(store.path, f"chunk {key!r} is missing", "the file is incomplete")
        if info.compressor_id is None and entry.file_size != raw_size:
            raise DatasetFormatError(
                store.path, f"chunk {key!r} has {entry.file_size} bytes, expected {raw_size} (uncompressed)"
            )


def _decode_chunk(store: _Store, name: str, info: ArrayInfo, key: str) -> npt.NDArray[Any]:
    raw = store.read(f"{name}/{key}")
    try:
        if info.compressor_id == JPEGXL_CODEC_ID:
            out: npt.NDArray[Any] = np.asarray(imagecodecs.jpegxl_decode(raw, numthreads=1))
            return out
        if info.compressor_id is not None:
            import numcodecs  # type: ignore[import-untyped]

            raw = bytes(numcodecs.get_codec(store.json(f"{name}/.zarray")["compressor"]).decode(raw))
        return np.frombuffer(raw, dtype=info.dtype).reshape(info.chunks)
    except DatasetFormatError:
        raise
    except Exception as exc:  # a codec's own error types vary; all mean "this chunk is bad"
        raise DatasetFormatError(store.path, f"chunk {name}/{key} does not decode ({exc})") from exc


def _read_all(store: _Store, name: str, info: ArrayInfo) -> npt.NDArray[Any]:
    """A small array (episode_ends, low-dim) read whole."""
    parts = [_decode_chunk(store, name, info, f"{k}" + ".0" * (len(info.shape) - 1))
             for k in range(math.ceil(info.shape[0] / info.chunks[0]))]  # fmt: skip
    return np.concatenate(parts, axis=0)[: info.shape[0]]


def validate_replay_buffer(path: str | Path) -> ReplayBufferInfo:
    """Check a UMI ``*.zarr.zip`` without trusting it; raise DatasetFormatError naming the problem.

    Reads metadata, the zip directory, ``episode_ends``, the low-dim arrays and at most two
    frames per camera; never the whole image array.
    """
    store = _Store(Path(path))
    try:
        return _validate(store)
    finally:
        store.zf.close()


def _validate(store: _Store) -> ReplayBufferInfo:
    if ".zgroup" not in store.infos:
        hint = "this is a zarr v3 store; UMI uses zarr v2" if "zarr.json" in store.infos else "expected UMI's layout"
        raise DatasetFormatError(store.path, "not a zarr v2 store: no '.zgroup' at the root", hint)
    for group in (".zgroup", "data/.zgroup", "meta/.zgroup"):
        if group not in store.infos:
            raise DatasetFormatError(store.path, f"missing group {group!r}", "expected UMI's data/ and meta/ groups")
        if store.json(group).get("zarr_format") != 2:
            raise DatasetFormatError(store.path, f"{group!r} is not zarr_format 2")

    ends_info = _array_info(store, "meta/episode_ends")
    if len(ends_info.shape) != 1 or ends_info.dtype != "<i8":
        raise DatasetFormatError(
            store.path, f"meta/episode_ends is {ends_info.dtype} {list(ends_info.shape)}, expected <i8 (E,)"
        )
    _check_chunk_entries(store, "meta/episode_ends", ends_info)
    ends = _read_all(store, "meta/episode_ends", ends_info).astype(np.int64)
    if ends.size == 0 or ends[0] <= 0 or np.any(np.diff(ends) <= 0):
        raise DatasetFormatError(
            store.path, f"meta/episode_ends must be positive and strictly increasing, got {ends[:8].tolist()}..."
        )
    n = int(ends[-1])

    names = sorted({k[len("data/") : -len("/.zarray")] for k in store.infos
                    if k.startswith("data/") and k.endswith("/.zarray") and k.count("/") == 2})  # fmt: skip
    arrays = {f"data/{name}": _array_info(store, f"data/{name}") for name in names}
    arrays["meta/episode_ends"] = ends_info
    for name, info in arrays.items():
        if name != "meta/episode_ends" and (not info.shape or info.shape[0] != n):
            raise DatasetFormatError(
                store.path,
                f"{name} has {info.shape[0] if info.shape else 0} steps but episode_ends[-1] = {n}",
                "episode_ends disagrees with the array lengths",
            )
    robots = sorted({name.split("_", 1)[0] for name in names if name.startswith("robot")})
    if "robot0" not in robots:
        raise DatasetFormatError(store.path, "missing data/robot0_eef_pos", "not a UMI replay buffer")
    has_poses = True
    for robot in robots:
        for suffix, (tail, dtype, required) in _LOWDIM_SPECS.items():
            name = f"data/{robot}_{suffix}"
            if name not in arrays:
                if required:
                    raise DatasetFormatError(store.path, f"missing {name}", "every robot needs eef_pos, "
                                             "eef_rot_axis_angle and gripper_width")  # fmt: skip
                has_poses = False
                continue
            info = arrays[name]
            if info.shape[1:] != tail or info.dtype != dtype:
                raise DatasetFormatError(
                    store.path,
                    f"{name} is {info.dtype} {list(info.shape)}, expected {dtype} [{n}, {', '.join(map(str, tail))}]",
                )
            _check_chunk_entries(store, name, info)
            if not np.all(np.isfinite(_read_all(store, name, info))):
                raise DatasetFormatError(store.path, f"{name} holds NaN or infinite values")

    cameras = tuple(name for name in names if name.startswith("camera") and name.endswith("_rgb"))
    if "camera0_rgb" not in cameras:
        raise DatasetFormatError(store.path, "missing data/camera0_rgb", "a UMI replay buffer has camera images")
    image_shape: tuple[int, int, int] = (0, 0, 0)
    for cam in cameras:
        info = arrays[f"data/{cam}"]
        if len(info.shape) != 4 or info.shape[3] != 3 or info.dtype != "|u1" or info.chunks != (1, *info.shape[1:]):
            raise DatasetFormatError(
                store.path,
                f"data/{cam} is {info.dtype} {list(info.shape)} chunks {list(info.chunks)}, "
                "expected |u1 [N, H, W, 3] with one frame per chunk",
            )
        image_shape = (info.shape[1], info.shape[2], 3)
        _check_chunk_entries(store, f"data/{cam}", info)
        for frame in sorted({0, n - 1}):
            img = _decode_chunk(store, f"data/{cam}", info, f"{frame}.0.0.0")
            if img.shape != image_shape or img.dtype != np.uint8:
                raise DatasetFormatError(
                    store.path,
                    f"frame {frame} of {cam} decodes to {img.dtype} {list(img.shape)}, expected {image_shape}",
                )
    for name, info in arrays.items():  # arrays UMI does not define still need all their chunks
        _check_chunk_entries(store, name, info)
    lengths = np.diff(np.concatenate([[0], ends]))
    return ReplayBufferInfo(
        path=str(store.path),
        size_bytes=store.size,
        n_steps=n,
        n_episodes=int(ends.size),
        episode_lengths=tuple(int(x) for x in lengths),
        n_robots=len(robots),
        cameras=cameras,
        image_shape=image_shape,
        has_demo_poses=has_poses,
        all_entries_stored=all(i.compress_type == zipfile.ZIP_STORED for i in store.infos.values()),
        arrays=arrays,
    )
