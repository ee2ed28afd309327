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

The zip itself is written by the standard library's ``zipfile`` (one ``ZipInfo`` per entry, as
zarr's ZipStore does); nothing of the format is hand-written. What we do not take from zarr is
the store: ``zarr.ZipStore.__setitem__`` stamps ``time.localtime()`` into every entry (two runs
would differ), and UMI's path fills a MemoryStore first, holding every encoded frame in memory
(~40 KB each: ~950 MB for the medium profile's 23,813 frames), where this writer spools them to
a temporary file. Reading goes through ``zarr_store`` (the untrusted-zip reader); UMI's rules
are checked here.
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
from robolake.umi.zarr_store import (
    JPEGXL_CODEC_ID,
    ArrayInfo,
    ZarrZip,
    array_info,
    check_chunk_entries,
    decode_chunk,
    read_all,
)

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
IMAGE_SIZE = (224, 224)
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
# The recorded config is what the codec encodes with: JpegXl.encode passes these to jpegxl_encode.
_ENCODE_ARGS = {k: v for k, v in JPEGXL_CONFIG.items() if k not in ("id", "index", "keeporientation")}
_TARGET_CHUNK_BYTES = 2e6  # UMI's get_optimal_chunks default


def encode_frame(image: npt.NDArray[np.uint8]) -> bytes:
    """One camera chunk: JPEG XL exactly as UMI's ``JpegXl(level=99, numthreads=1)`` encodes it."""
    return bytes(imagecodecs.jpegxl_encode(image, **_ENCODE_ARGS))


def zarr_json(obj: Mapping[str, Any]) -> bytes:
    """zarr 2's ``json_dumps``: the bytes of every ``.zarray``/``.zgroup``/``.zattrs``."""
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=True, separators=(",", ": ")).encode("ascii")


def zarray_meta(
    shape: Sequence[int], chunks: Sequence[int], dtype: np.dtype[Any], compressor: Mapping[str, Any] | None
) -> dict[str, Any]:
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

    def __init__(
        self, path: str | Path, cameras: Sequence[str] = ("camera0_rgb",), image_size: tuple[int, int] = IMAGE_SIZE
    ) -> None:
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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------- reading and validation


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


def validate_replay_buffer(path: str | Path) -> ReplayBufferInfo:
    """Check a UMI ``*.zarr.zip`` without trusting it; raise DatasetFormatError naming the problem.

    Reads metadata, the zip directory, ``episode_ends``, the low-dim arrays and at most two
    frames per camera; never the whole image array.
    """
    store = ZarrZip(Path(path))
    try:
        return _validate(store)
    finally:
        store.close()


def _validate(store: ZarrZip) -> ReplayBufferInfo:
    _check_groups(store)
    ends_info, ends = _episode_ends(store)
    n = int(ends[-1])
    names, arrays = _data_arrays(store, n)
    arrays["meta/episode_ends"] = ends_info
    robots, has_poses = _check_robots(store, names, arrays, n)
    cameras, image_shape = _check_cameras(store, names, arrays, n)
    for name, info in arrays.items():  # arrays UMI does not define still need all their chunks
        check_chunk_entries(store, name, info)
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


def _check_groups(store: ZarrZip) -> None:
    """A zarr v2 root with UMI's data/ and meta/ groups."""
    if ".zgroup" not in store.infos:
        hint = "this is a zarr v3 store; UMI uses zarr v2" if "zarr.json" in store.infos else "expected UMI's layout"
        raise DatasetFormatError(store.path, "not a zarr v2 store: no '.zgroup' at the root", hint)
    for group in (".zgroup", "data/.zgroup", "meta/.zgroup"):
        if group not in store.infos:
            raise DatasetFormatError(store.path, f"missing group {group!r}", "expected UMI's data/ and meta/ groups")
        if store.json(group).get("zarr_format") != 2:
            raise DatasetFormatError(store.path, f"{group!r} is not zarr_format 2")


def _episode_ends(store: ZarrZip) -> tuple[ArrayInfo, npt.NDArray[np.int64]]:
    """``meta/episode_ends``: int64, positive and strictly increasing (cumulative, exclusive ends)."""
    info = array_info(store, "meta/episode_ends")
    if len(info.shape) != 1 or info.dtype != "<i8":
        raise DatasetFormatError(store.path, f"meta/episode_ends is {info.dtype} {list(info.shape)}, expected <i8 (E,)")
    check_chunk_entries(store, "meta/episode_ends", info)
    ends = read_all(store, "meta/episode_ends", info).astype(np.int64)
    if ends.size == 0 or ends[0] <= 0 or np.any(np.diff(ends) <= 0):
        raise DatasetFormatError(
            store.path, f"meta/episode_ends must be positive and strictly increasing, got {ends[:8].tolist()}..."
        )
    return info, ends


def _data_arrays(store: ZarrZip, n: int) -> tuple[list[str], dict[str, ArrayInfo]]:
    """The names under data/ and their metadata; every one must have `n` steps."""
    names = sorted(
        {
            k[len("data/") : -len("/.zarray")]
            for k in store.infos
            if k.startswith("data/") and k.endswith("/.zarray") and k.count("/") == 2
        }
    )
    arrays = {f"data/{name}": array_info(store, f"data/{name}") for name in names}
    for name, info in arrays.items():
        if not info.shape or info.shape[0] != n:
            raise DatasetFormatError(
                store.path,
                f"{name} has {info.shape[0] if info.shape else 0} steps but episode_ends[-1] = {n}",
                "episode_ends disagrees with the array lengths",
            )
    return names, arrays


def _check_robots(store: ZarrZip, names: list[str], arrays: dict[str, ArrayInfo], n: int) -> tuple[list[str], bool]:
    """Every robotN has UMI's low-dim arrays, finite; returns the robots and whether demo poses are there."""
    robots = sorted({name.split("_", 1)[0] for name in names if name.startswith("robot")})
    if "robot0" not in robots:
        raise DatasetFormatError(store.path, "missing data/robot0_eef_pos", "not a UMI replay buffer")
    has_poses = True
    for robot in robots:
        for suffix, (tail, dtype, required) in _LOWDIM_SPECS.items():
            name = f"data/{robot}_{suffix}"
            if name not in arrays:
                if required:
                    raise DatasetFormatError(
                        store.path, f"missing {name}", "every robot needs eef_pos, eef_rot_axis_angle and gripper_width"
                    )
                has_poses = False
                continue
            info = arrays[name]
            if info.shape[1:] != tail or info.dtype != dtype:
                raise DatasetFormatError(
                    store.path,
                    f"{name} is {info.dtype} {list(info.shape)}, expected {dtype} [{n}, {', '.join(map(str, tail))}]",
                )
            check_chunk_entries(store, name, info)
            if not np.all(np.isfinite(read_all(store, name, info))):
                raise DatasetFormatError(store.path, f"{name} holds NaN or infinite values")
    return robots, has_poses


def _check_cameras(
    store: ZarrZip, names: list[str], arrays: dict[str, ArrayInfo], n: int
) -> tuple[tuple[str, ...], tuple[int, int, int]]:
    """cameraN_rgb: uint8 (N, H, W, 3), one frame per chunk; the first and last frames decode to that shape."""
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
        check_chunk_entries(store, f"data/{cam}", info)
        for frame in sorted({0, n - 1}):
            img = decode_chunk(store, f"data/{cam}", info, f"{frame}.0.0.0")
            if img.shape != image_shape or img.dtype != np.uint8:
                raise DatasetFormatError(
                    store.path,
                    f"frame {frame} of {cam} decodes to {img.dtype} {list(img.shape)}, expected {image_shape}",
                )
    return cameras, image_shape
