"""Write a LeRobot v3.0 dataset: parquet tables, statistics as lerobot computes them, and MP4 videos.

    writer = LeRobotWriter(root, fps=20, features=[...], video=VideoCodec.h264())
    writer.add_episode(columns, frames_by_key, task="pick up the cup")   # frames: iterables of (H, W, 3)
    writer.finish(robot_type="umi")                                      # meta/*.json, *.parquet

The layout and columns are the ones lerobot 0.4.4 writes (see robolake.ingest.lerobot). Choices:

- Statistics: per feature and episode, min / max / mean / std (population) / count and the
  quantiles q01, q10, q50, q90, q99, as lerobot's ``compute_episode_stats``: vectors over frames,
  images per channel in [0, 1] over frames sampled as lerobot samples them (all of a short
  episode, about n^0.75 of a long one, down-sampled when a side reaches 300 px). The dataset's
  stats aggregate the episodes' as lerobot's ``aggregate_stats`` does (count-weighted means,
  pooled variance, extreme min/max, count-weighted quantiles). One difference: our per-episode
  quantiles are exact (numpy's linear interpolation), lerobot's come from 5000-bin histograms.
  min / max / mean / std / count equal what lerobot's own functions compute from the frames
  lerobot loads (tests/e2e/test_lerobot.py checks it).
- Files: a new data file (and video file) is started between episodes once the current one
  reaches lerobot's size limits (100 MB of parquet, 200 MB of video; ``file_mb``); episode rows
  all go into meta/episodes/chunk-000/file-000.parquet (lerobot starts a new one at 100 MB too,
  which takes some hundred thousand episodes).
- Video: one encoder per camera, frames presented at ``k / fps`` (k counted in the file), so an
  episode's ``from_timestamp`` is exactly the frames before it over fps; yuv420p and a keyframe
  every 2 frames (lerobot's ``g=2``: a random frame costs at most two decodes). H.264 (libx264,
  the default) without B-frames, one thread and FFmpeg's bitexact flags: the same frames give the
  same bytes, so exporting a commit again changes nothing in the lake. AV1 (libsvtav1, lerobot's
  own default, crf 30, preset 12) decodes with lerobot as well, but is not byte-reproducible, and
  the UMI validation hook accepts H.264 only.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from robolake.errors import ConfigError, RobolakeError
from robolake.ingest.lerobot import (
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILE_MB,
    DATA_PATH,
    EPISODES_PATH,
    FRAME_FEATURES,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_FILE_MB,
    VIDEO_PATH,
    Feature,
)
from robolake.umi.video import open_encoder

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
Stats = dict[str, npt.NDArray[Any]]


# ---- statistics --------------------------------------------------------------------------------


def feature_stats(values: npt.NDArray[Any]) -> Stats:
    """Stats of one feature over an episode's frames (axis 0); a scalar feature gets shape (1,)."""
    data = values.reshape(len(values), -1)
    as_float = data.astype(np.float64)
    stats: Stats = {
        "min": data.min(axis=0),
        "max": data.max(axis=0),
        "mean": as_float.mean(axis=0),
        "std": as_float.std(axis=0),
        "count": np.array([len(values)], dtype=np.int64),
    }
    for q, value in zip(QUANTILES, np.quantile(as_float, QUANTILES, axis=0), strict=True):
        stats[f"q{round(q * 100):02d}"] = value
    return stats


def sampled_frames(n: int) -> npt.NDArray[np.int64]:
    """Which of an episode's `n` frames image stats look at, as lerobot chooses them."""
    count = n if n < 100 else max(100, min(int(n**0.75), 10_000))
    return np.unique(np.round(np.linspace(0, n - 1, count)).astype(np.int64))


def image_stats(frames: npt.NDArray[np.uint8]) -> Stats:
    """Per-channel stats in [0, 1] of sampled (N, H, W, 3) frames, values shaped (3, 1, 1) as lerobot's.

    Computed from each channel's 256-bin histogram, which for 8-bit pixels is exact (and fast):
    the same numbers as :func:`feature_stats` over every pixel.
    """
    step = max(frames.shape[1:3]) // 150 if max(frames.shape[1:3]) >= 300 else 1
    pixels = frames[:, ::step, ::step, :].reshape(-1, frames.shape[-1])
    n = len(pixels)
    levels = np.arange(256, dtype=np.float64) / 255.0
    per_channel: dict[str, list[float]] = {}
    for c in range(pixels.shape[1]):
        hist = np.bincount(pixels[:, c], minlength=256).astype(np.float64)
        present = np.flatnonzero(hist)
        mean = float((hist * levels).sum() / n)
        values = {
            "min": levels[present[0]],
            "max": levels[present[-1]],
            "mean": mean,
            "std": float(np.sqrt((hist * (levels - mean) ** 2).sum() / n)),
        }
        cumulative = np.cumsum(hist)
        for q in QUANTILES:  # numpy's "linear" quantile: between the values of ranks floor(h) and floor(h) + 1
            h = q * (n - 1)
            lo, hi = (levels[np.searchsorted(cumulative, r, side="right")] for r in (int(h), min(int(h) + 1, n - 1)))
            values[f"q{round(q * 100):02d}"] = lo + (h - int(h)) * (hi - lo)
        for name, value in values.items():
            per_channel.setdefault(name, []).append(float(value))
    out = {name: np.array(v, dtype=np.float64).reshape(-1, 1, 1) for name, v in per_channel.items()}
    out["count"] = np.array([len(frames)], dtype=np.int64)
    return out


def aggregate_stats(per_episode: Sequence[Mapping[str, Stats]]) -> dict[str, Stats]:
    """The dataset's stats from its episodes' (lerobot's aggregation, see the module docstring)."""
    out: dict[str, Stats] = {}
    for key in per_episode[0]:
        parts = [ep[key] for ep in per_episode]
        counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
        total = counts.sum()
        w = counts.reshape(-1, *([1] * parts[0]["mean"].ndim))
        means = np.stack([p["mean"] for p in parts])
        mean = (means * w).sum(axis=0) / total
        variance = ((np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2) * w).sum(axis=0) / total
        agg: Stats = {
            "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
            "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
            "mean": mean,
            "std": np.sqrt(variance),
            "count": np.array([int(total)], dtype=np.int64),
        }
        for q in (k for k in parts[0] if k.startswith("q")):
            agg[q] = (np.stack([p[q] for p in parts]) * w).sum(axis=0) / total
        out[key] = agg
    return out


def _jsonable(stats: Mapping[str, Stats]) -> dict[str, dict[str, Any]]:
    return {key: {name: value.tolist() for name, value in s.items()} for key, s in stats.items()}


# ---- video -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VideoCodec:
    """An FFmpeg encoder and its options; ``name`` is what info.json's video.codec will say."""

    name: str
    encoder: str
    options: Mapping[str, str]

    @classmethod
    def h264(cls, crf: int = 23) -> VideoCodec:
        return cls("h264", "libx264", {"crf": str(crf), "g": "2", "bf": "0", "preset": "veryfast", "threads": "1"})

    @classmethod
    def av1(cls, crf: int = 30) -> VideoCodec:
        return cls("av1", "libsvtav1", {"crf": str(crf), "g": "2", "preset": "12"})

    @classmethod
    def named(cls, name: str, crf: int | None = None) -> VideoCodec:
        if name == "h264":
            return cls.h264(23 if crf is None else crf)
        if name == "av1":
            return cls.av1(30 if crf is None else crf)
        raise ConfigError(f"video codec {name!r} is not 'h264' or 'av1'")


class VideoFile:
    """One MP4 being written: frames at pts 0, 1, 2 ... in a 1/fps time base."""

    def __init__(self, path: Path, fps: int, width: int, height: int, codec: VideoCodec) -> None:
        if codec.encoder not in av.codecs_available:
            raise RobolakeError(
                f"this PyAV build ({av.__version__}) has no {codec.encoder} encoder; "
                "install the PyPI wheel: pip install 'av>=15'"
            )
        if width % 2 or height % 2:
            raise ConfigError(f"frames of {width}x{height} cannot be stored as yuv420p video: both sides must be even")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.frames, self.shape, self.bytes = path, 0, (height, width, 3), 0
        self.container = av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"})
        stream = self.container.add_stream(codec.encoder, rate=fps, options=dict(codec.options))
        if not isinstance(stream, av.video.stream.VideoStream):
            raise RobolakeError(f"{codec.encoder} is not a video encoder")
        self.stream = stream
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.time_base = Fraction(1, fps)
        self.stream.codec_context.thread_count = 1
        self.stream.codec_context.flags |= av.codec.context.Flags.bitexact
        open_encoder(self.stream)

    def add(self, image: npt.NDArray[np.uint8]) -> None:
        if image.shape != self.shape or image.dtype != np.uint8:
            raise ValueError(f"{self.path.name}: frame is {image.dtype} {image.shape}, expected uint8 {self.shape}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        self._mux(self.stream.encode(frame))
        self.frames += 1

    def _mux(self, packets: list[Any]) -> None:
        self.bytes += sum(p.size for p in packets)  # the file itself may not exist yet (encoders buffer)
        self.container.mux(packets)

    def close(self) -> None:
        self._mux(self.stream.encode(None))
        self.container.close()


class FileRotation:
    """(chunk, file) indices of a series of files that roll over at a size limit, as lerobot numbers them."""

    def __init__(self, limit_bytes: int, chunks_size: int) -> None:
        self.limit, self.chunks_size, self.chunk, self.file = limit_bytes, chunks_size, 0, 0

    def advance(self) -> None:
        self.file += 1
        if self.file == self.chunks_size:
            self.chunk, self.file = self.chunk + 1, 0


# ---- the dataset -------------------------------------------------------------------------------


def _arrow_type(feature: Feature) -> Any:
    scalar = pa.from_numpy_dtype(np.dtype(feature.dtype))
    return scalar if feature.shape == (1,) else pa.list_(scalar, math.prod(feature.shape))


def _hf_feature(feature: Feature) -> dict[str, Any]:
    value = {"dtype": feature.dtype, "_type": "Value"}
    return value if feature.shape == (1,) else {"feature": value, "length": feature.shape[0], "_type": "List"}


class LeRobotWriter:
    """Episodes in, a LeRobot v3.0 folder out. Low-dim features come as arrays, videos as frames."""

    def __init__(
        self,
        root: Path,
        *,
        fps: int,
        features: Sequence[Feature],
        video: VideoCodec,
        chunks_size: int = CHUNKS_SIZE,
        file_mb: tuple[float, float] = (DATA_FILE_MB, VIDEO_FILE_MB),  # when to start a new data / video file
    ) -> None:
        self.root, self.fps, self.video = root, fps, video
        defaults = [Feature(name, dtype, (1,)) for name, dtype in FRAME_FEATURES.items()]
        self.features = {f.name: f for f in [*features, *defaults]}
        self.columns = [f for f in self.features.values() if not f.is_video]
        if any(len(f.shape) != 1 for f in self.columns):
            raise ConfigError("LeRobotWriter writes 1-D numeric features and videos only")
        self.tasks: list[str] = []
        self.frames = 0
        self.episode_rows: list[dict[str, Any]] = []
        self.episode_stats: list[dict[str, Stats]] = []
        self.file_mb = file_mb
        self._data = FileRotation(int(file_mb[0] * 1024 * 1024), chunks_size)
        self._data_bytes = 0
        self._data_writer: Any = None
        self._videos: dict[str, VideoFile] = {}
        self._video_rotation = {k: FileRotation(int(file_mb[1] * 1024 * 1024), chunks_size) for k in self.video_keys}
        hf_features = {f.name: _hf_feature(f) for f in self.columns}  # what `datasets` reads the columns as
        self._schema = pa.schema(
            [pa.field(f.name, _arrow_type(f)) for f in self.columns],
            metadata={"huggingface": json.dumps({"info": {"features": hf_features}})},
        )

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.is_video]

    def add_episode(
        self,
        columns: Mapping[str, npt.NDArray[Any]],
        frames: Mapping[str, Iterable[npt.NDArray[np.uint8]]],
        task: str,
    ) -> None:
        """One episode: `columns` per non-video feature except the five frame columns, `frames` per video key."""
        length = len(next(iter(columns.values())))
        index = len(self.episode_rows)
        if task not in self.tasks:
            self.tasks.append(task)
        full = dict(columns)
        full["timestamp"] = (np.arange(length, dtype=np.float64) / self.fps).astype(np.float32)
        full["frame_index"] = np.arange(length, dtype=np.int64)
        full["episode_index"] = np.full(length, index, dtype=np.int64)
        full["index"] = np.arange(self.frames, self.frames + length, dtype=np.int64)
        full["task_index"] = np.full(length, self.tasks.index(task), dtype=np.int64)
        stats = {f.name: feature_stats(full[f.name]) for f in self.columns}
        row: dict[str, Any] = {"episode_index": index, "tasks": [task], "length": length}
        row.update(self._write_rows(full, length))
        for key in self.video_keys:
            row.update(self._write_video(key, frames[key], length, stats))
        row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        for key, s in stats.items():
            row.update({f"stats/{key}/{name}": value.tolist() for name, value in s.items()})
        self.episode_rows.append(row)
        self.episode_stats.append(stats)
        self.frames += length

    def _write_rows(self, full: Mapping[str, npt.NDArray[Any]], length: int) -> dict[str, Any]:
        arrays = []
        for f in self.columns:
            values = np.asarray(full[f.name], dtype=f.dtype)
            if values.shape != ((length,) if f.shape == (1,) else (length, f.shape[0])):
                raise ValueError(f"feature {f.name!r}: {values.shape} for {length} frames of shape {f.shape}")
            flat = pa.array(values.reshape(-1))
            arrays.append(flat if f.shape == (1,) else pa.FixedSizeListArray.from_arrays(flat, f.shape[0]))
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        if self._data_writer is not None and self._data_bytes >= self._data.limit:
            self._data_writer.close()
            self._data_writer, self._data_bytes = None, 0
            self._data.advance()
        if self._data_writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self._data.chunk, file_index=self._data.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, self._schema, compression="snappy")
        self._data_writer.write_table(table)
        self._data_bytes += table.nbytes
        return {
            "data/chunk_index": self._data.chunk,
            "data/file_index": self._data.file,
            "dataset_from_index": self.frames,
            "dataset_to_index": self.frames + length,
        }

    def _write_video(
        self, key: str, frames: Iterable[npt.NDArray[np.uint8]], length: int, stats: dict[str, Stats]
    ) -> dict[str, Any]:
        rotation, current = self._video_rotation[key], self._videos.get(key)
        if current is not None and current.bytes >= rotation.limit:
            current.close()
            rotation.advance()
            current = None
        height, width, _ = self.features[key].shape
        if current is None:
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=rotation.chunk, file_index=rotation.file)
            current = self._videos[key] = VideoFile(path, self.fps, width, height, self.video)
        first, picks, kept = current.frames, set(sampled_frames(length).tolist()), []
        for i, image in enumerate(frames):
            current.add(image)
            if i in picks:
                kept.append(image)
        if current.frames - first != length:
            raise ValueError(f"{key}: {current.frames - first} frames for an episode of {length}")
        stats[key] = image_stats(np.stack(kept))
        return {
            f"videos/{key}/chunk_index": rotation.chunk,
            f"videos/{key}/file_index": rotation.file,
            f"videos/{key}/from_timestamp": first / self.fps,
            f"videos/{key}/to_timestamp": (first + length) / self.fps,
        }

    def finish(self, robot_type: str | None = None) -> dict[str, Any]:
        """Close the files and write meta/: info.json, stats.json, tasks and episodes; returns info.json."""
        if not self.episode_rows:
            raise ConfigError("no episodes to write: a LeRobot dataset needs at least one")
        if self._data_writer is not None:
            self._data_writer.close()
        for video in self._videos.values():
            video.close()
        episodes = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episode_rows), episodes, compression="snappy")
        pq.write_table(tasks_table(self.tasks), self.root / TASKS_PATH)
        _write_json(self.root / STATS_PATH, _jsonable(aggregate_stats(self.episode_stats)))
        info = self.info(robot_type)
        _write_json(self.root / INFO_PATH, info)
        return info

    def info(self, robot_type: str | None) -> dict[str, Any]:
        features = {}
        for name, f in self.features.items():
            doc = f.as_json()
            if f.is_video:
                doc["info"] = {
                    "video.height": f.shape[0],
                    "video.width": f.shape[1],
                    "video.codec": self.video.name,
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": 3,
                    "has_audio": False,
                }
            features[name] = doc
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": len(self.episode_rows),
            "total_frames": self.frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self._data.chunks_size,
            "data_files_size_in_mb": max(1, math.ceil(self.file_mb[0])),
            "video_files_size_in_mb": max(1, math.ceil(self.file_mb[1])),
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": features,
        }


def tasks_table(tasks: Sequence[str]) -> Any:
    """meta/tasks.parquet as pandas writes a frame indexed by task text (lerobot reads it with pandas)."""
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64"},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object"},
        ],
        "pandas_version": "2.2.0",
    }
    schema = pa.schema(
        [("task_index", pa.int64()), ("__index_level_0__", pa.string())],
        metadata={"pandas": json.dumps(pandas_meta)},
    )
    return pa.table({"task_index": list(range(len(tasks))), "__index_level_0__": list(tasks)}, schema=schema)


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(doc, indent=4) + "\n")
    os.replace(partial, path)
