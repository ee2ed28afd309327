"""LeRobot v3.0 datasets: the format as lerobot 0.4.4 reads it, and a full check of a folder.

Layout, relative to the dataset root (``XXX`` are three-digit chunk and file indices; a chunk
folder holds at most ``chunks_size`` files, and a file holds many episodes back to back):

    meta/info.json                        codebase_version "v3.0", fps (a whole number), features
                                          (dtype, shape, names; videos add an "info" block),
                                          total_episodes / total_frames / total_tasks, path templates
    meta/stats.json                       per feature: min, max, mean, std, count, q01 .. q99
    meta/tasks.parquet                    one row per task: task_index; the task text is the pandas index
    meta/episodes/chunk-XXX/file-XXX.parquet
                                          one row per episode: episode_index, tasks, length,
                                          data/chunk_index, data/file_index, dataset_from_index,
                                          dataset_to_index, per video key videos/<key>/chunk_index,
                                          file_index, from_timestamp, to_timestamp; stats/<feature>/<stat>
    data/chunk-XXX/file-XXX.parquet       one row per frame: every non-video feature, plus timestamp,
                                          frame_index, episode_index, index, task_index
    videos/<key>/chunk-XXX/file-XXX.mp4   one stream per camera; an episode's frames are the ones
                                          presented in [from_timestamp, to_timestamp)

How ``LeRobotDataset(repo_id, root=DIR)`` uses it (lerobot 0.4.4, ``datasets/lerobot_dataset.py``):
it reads info.json, tasks and every ``meta/episodes/*/*.parquet``; it loads *every*
``data/*/*.parquet`` (so a stray data file adds frames); if the frames do not cover every episode
or a video file is missing, it tries to download the dataset from the Hugging Face Hub instead.
A frame of camera ``key`` is the one decoded at ``from_timestamp + timestamp`` of its episode,
within ``tolerance_s`` (1e-4 s). :func:`check_folder` therefore refuses everything that would make
lerobot read other frames than the episodes say, or go to the network.

Every problem raises DatasetFormatError naming the file and what is wrong, in one line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from robolake.umi.errors import DatasetFormatError
from robolake.umi.video import probe_mp4

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = f"data/{CHUNK_FILE}.parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = f"{EPISODES_DIR}/{CHUNK_FILE}.parquet"
CHUNKS_SIZE = 1000  # lerobot's defaults: files per chunk folder, MB per data / video file
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
# The per-frame columns every v3.0 dataset has, with their dtype (shape [1]).
FRAME_FEATURES: dict[str, str] = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}
NUMERIC_DTYPES = frozenset(
    {"bool", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)
KNOWN_DTYPES = NUMERIC_DTYPES | {"video", "image", "string"}
EPISODE_COLUMNS = ("episode_index", "length", "data/chunk_index", "data/file_index")
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
V21_HINT = "convert it first with lerobot's converter (python -m lerobot.datasets.v30.convert_dataset_v21_to_v30)"
Status = Callable[[str], None]


def _noop(_: str) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Feature:
    """One entry of info.json's ``features``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    names: Any = None
    info: Mapping[str, Any] | None = None

    @property
    def is_video(self) -> bool:
        return self.dtype == "video"

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}
        if self.info is not None:
            doc["info"] = dict(self.info)
        return doc


@dataclasses.dataclass(frozen=True)
class LeRobotInfo:
    """meta/info.json, checked."""

    fps: int
    features: Mapping[str, Feature]
    total_episodes: int
    total_frames: int
    total_tasks: int
    chunks_size: int
    data_path: str
    video_path: str | None
    robot_type: str | None

    @property
    def video_keys(self) -> list[str]:
        return [name for name, f in self.features.items() if f.is_video]

    def data_file(self, chunk: int, file: int) -> str:
        return self.data_path.format(chunk_index=chunk, file_index=file)

    def video_file(self, key: str, chunk: int, file: int) -> str:
        return str(self.video_path).format(video_key=key, chunk_index=chunk, file_index=file)


@dataclasses.dataclass(frozen=True)
class EpisodeRow:
    """One row of meta/episodes: where its frames are."""

    index: int
    length: int
    from_index: int
    to_index: int
    tasks: tuple[str, ...]
    data_file: str
    videos: Mapping[str, tuple[str, float, float]]  # video key -> (file, from_timestamp, to_timestamp)


@dataclasses.dataclass(frozen=True)
class FolderCheck:
    """A LeRobot v3.0 folder that passed :func:`check_folder`, and the files it is made of."""

    root: Path
    info: LeRobotInfo
    tasks: tuple[str, ...]
    episodes: tuple[EpisodeRow, ...]
    files: tuple[str, ...]  # relative paths of every file to keep (hidden files and folders left out)
    size_bytes: int


def is_lerobot_folder(path: Path) -> bool:
    """A folder with meta/info.json: what ingest treats as a LeRobot dataset (then checks in full)."""
    return path.is_dir() and (path / INFO_PATH).is_file()


# ---- meta/info.json ----------------------------------------------------------------------------


def _whole(doc: Mapping[str, Any], key: str, where: Path, minimum: int = 0) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        shown = "missing" if key not in doc else f"{value!r} ({type(value).__name__})"
        raise DatasetFormatError(where, f"{key} is {shown}, expected a whole number >= {minimum}")
    return value


def _feature(name: str, spec: Any, where: Path) -> Feature:
    if not isinstance(spec, dict):
        raise DatasetFormatError(where, f"feature {name!r} is {type(spec).__name__}, expected an object")
    dtype, shape = spec.get("dtype"), spec.get("shape")
    if dtype not in KNOWN_DTYPES:
        raise DatasetFormatError(where, f"feature {name!r} has dtype {dtype!r}, expected one of {sorted(KNOWN_DTYPES)}")
    if (
        not isinstance(shape, list)
        or not shape
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
    ):
        raise DatasetFormatError(where, f"feature {name!r} has shape {shape!r}, expected a list of positive integers")
    if dtype in ("video", "image") and len(shape) != 3:
        raise DatasetFormatError(where, f"feature {name!r} ({dtype}) has shape {shape}, expected [height, width, 3]")
    if "/" in name:
        raise DatasetFormatError(where, f"feature name {name!r} contains '/', which lerobot refuses")
    info = spec.get("info")
    return Feature(name, dtype, tuple(shape), spec.get("names"), info if isinstance(info, dict) else None)


def _template(doc: Mapping[str, Any], key: str, where: Path, fields: dict[str, Any]) -> str:
    value = doc.get(key)
    try:
        if not isinstance(value, str) or value.startswith("/") or ".." in value.split("/"):
            raise ValueError
        value.format(**fields)
    except (ValueError, KeyError, IndexError):
        raise DatasetFormatError(
            where, f"{key} is {value!r}, expected a relative path template with {sorted(fields)}"
        ) from None
    return value


def parse_info(root: Path) -> LeRobotInfo:
    """meta/info.json of the dataset at `root`, every field lerobot relies on checked."""
    where = root / INFO_PATH
    try:
        doc = json.loads(where.read_bytes())
    except FileNotFoundError:
        raise DatasetFormatError(where, "no such file", "a LeRobot v3.0 dataset has meta/info.json") from None
    except OSError as exc:
        raise DatasetFormatError(where, f"cannot be read ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(where, f"is not valid JSON ({exc})", "fix or regenerate the file") from exc
    if not isinstance(doc, dict):
        raise DatasetFormatError(where, f"holds a JSON {type(doc).__name__}, expected an object")
    version = doc.get("codebase_version")
    if version != CODEBASE_VERSION:
        hint = V21_HINT if isinstance(version, str) and version.startswith("v2") else ""
        raise DatasetFormatError(where, f"codebase_version is {version!r}, expected {CODEBASE_VERSION!r}", hint)
    fps = doc.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise DatasetFormatError(
            where, f"fps is {fps!r}, expected a positive whole number (LeRobot v3.0 stores fps as an integer)"
        )
    specs = doc.get("features")
    if not isinstance(specs, dict) or not specs:
        raise DatasetFormatError(where, "features is missing or empty, expected an object of feature specs")
    features = {name: _feature(name, spec, where) for name, spec in specs.items()}
    for name, dtype in FRAME_FEATURES.items():
        if name not in features or features[name].dtype != dtype:
            got = features[name].dtype if name in features else "missing"
            raise DatasetFormatError(where, f"feature {name!r} is {got}, every v3.0 dataset has it as {dtype}")
    has_video = any(f.is_video for f in features.values())
    video_path = _template(doc, "video_path", where, {"video_key": "k", "chunk_index": 0, "file_index": 0})
    return LeRobotInfo(
        fps=fps,
        features=features,
        total_episodes=_whole(doc, "total_episodes", where),
        total_frames=_whole(doc, "total_frames", where),
        total_tasks=_whole(doc, "total_tasks", where),
        chunks_size=_whole(doc, "chunks_size", where, minimum=1),
        data_path=_template(doc, "data_path", where, {"chunk_index": 0, "file_index": 0}),
        video_path=video_path if has_video else doc.get("video_path"),
        robot_type=doc.get("robot_type") if isinstance(doc.get("robot_type"), str) else None,
    )


# ---- parquet files -----------------------------------------------------------------------------


def _read_table(path: Path, columns: list[str], *, only: bool = True) -> Any:
    """The table at `path` with `columns` (all columns when not `only`); DatasetFormatError when one lacks."""
    if not path.is_file():
        raise DatasetFormatError(path, "no such file")
    try:
        schema = pq.read_schema(path)
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise DatasetFormatError(path, f"lacks column(s) {missing}; it has {schema.names}")
        return pq.read_table(path, columns=columns if only else None)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetFormatError(path, f"is not a readable parquet file ({type(exc).__name__}: {exc})") from exc


def read_tasks(root: Path, info: LeRobotInfo) -> tuple[str, ...]:
    """The task texts in task_index order; their number must be info.json's total_tasks."""
    path = root / TASKS_PATH
    table = _read_table(path, ["task_index"], only=False)
    pandas_meta = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}") or b"{}")
    index_columns = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
    text_column = next((c for c in [*index_columns, "task", "__index_level_0__"] if c in table.column_names), None)
    if text_column is None:
        raise DatasetFormatError(path, "has no task text (neither a pandas index nor a 'task' column)")
    if table.num_rows != info.total_tasks:
        raise DatasetFormatError(
            path, f"holds {table.num_rows} tasks, meta/info.json says total_tasks = {info.total_tasks}"
        )
    order = table.column("task_index").to_pylist()
    if sorted(order) != list(range(table.num_rows)):
        raise DatasetFormatError(path, f"task_index values are {sorted(order)[:10]}, expected 0..{table.num_rows - 1}")
    texts = table.column(text_column).to_pylist()
    return tuple(str(texts[order.index(i)]) for i in range(table.num_rows))


def _episode_rows(root: Path, info: LeRobotInfo, tasks: tuple[str, ...]) -> tuple[EpisodeRow, ...]:
    folder = root / EPISODES_DIR
    files = sorted(folder.glob("*/*.parquet"))  # what lerobot loads, in its order
    if not files:
        raise DatasetFormatError(folder, "holds no episode files (chunk-XXX/file-XXX.parquet)")
    columns = [*EPISODE_COLUMNS, "tasks", "dataset_from_index", "dataset_to_index"]
    columns += [f"videos/{key}/{c}" for key in info.video_keys for c in VIDEO_COLUMNS]
    rows: list[tuple[Path, dict[str, Any]]] = []
    for file in files:
        rows += [(file, row) for row in _read_table(file, columns).to_pylist()]
    if len(rows) != info.total_episodes:
        raise DatasetFormatError(
            folder, f"lists {len(rows)} episodes, meta/info.json says total_episodes = {info.total_episodes}"
        )
    episodes = [_episode(file, row, n, info, tasks) for n, (file, row) in enumerate(rows)]
    frames = sum(e.length for e in episodes)
    if frames != info.total_frames:
        raise DatasetFormatError(
            folder, f"episode lengths add up to {frames} frames, meta/info.json says total_frames = {info.total_frames}"
        )
    return tuple(episodes)


def _episode(file: Path, row: dict[str, Any], n: int, info: LeRobotInfo, tasks: tuple[str, ...]) -> EpisodeRow:
    index, length = row["episode_index"], row["length"]
    if index != n:
        raise DatasetFormatError(file, f"row {n} has episode_index {index!r}, expected {n} (episodes in order from 0)")
    if not isinstance(length, int) or length < 1:
        raise DatasetFormatError(file, f"episode {n} has length {length!r}, expected a positive number of frames")
    start, end = row["dataset_from_index"], row["dataset_to_index"]
    if not isinstance(start, int) or not isinstance(end, int) or end - start != length:
        raise DatasetFormatError(
            file, f"episode {n}: dataset_from_index {start!r} .. dataset_to_index {end!r} is not {length} frames"
        )
    unknown = [t for t in row["tasks"] or [] if t not in tasks]
    if unknown:
        raise DatasetFormatError(file, f"episode {n} names task(s) {unknown}, which meta/tasks.parquet does not list")
    videos: dict[str, tuple[str, float, float]] = {}
    for key in info.video_keys:
        chunk, fileno, t0, t1 = (row[f"videos/{key}/{c}"] for c in VIDEO_COLUMNS)
        if not isinstance(t0, float | int) or not isinstance(t1, float | int) or t0 < 0 or t1 <= t0:
            raise DatasetFormatError(file, f"episode {n}: {key} from_timestamp {t0!r} .. to_timestamp {t1!r} is empty")
        if abs((t1 - t0) - length / info.fps) > 1 / info.fps:
            raise DatasetFormatError(
                file,
                f"episode {n}: {key} spans {t1 - t0:.4f} s of video, but {length} frames at {info.fps} fps "
                f"last {length / info.fps:.4f} s",
            )
        videos[key] = (info.video_file(key, chunk, fileno), float(t0), float(t1))
    data = info.data_file(row["data/chunk_index"], row["data/file_index"])
    return EpisodeRow(index, length, start, end, tuple(row["tasks"] or ()), data, videos)


def _check_data(root: Path, info: LeRobotInfo, episodes: tuple[EpisodeRow, ...]) -> None:
    by_file: dict[str, list[EpisodeRow]] = {}
    for e in episodes:
        by_file.setdefault(e.data_file, []).append(e)
    stray = sorted(p.relative_to(root).as_posix() for p in (root / "data").glob("*/*.parquet"))
    stray = [p for p in stray if p not in by_file]
    if stray:
        raise DatasetFormatError(
            root / stray[0], "is named by no episode in meta/episodes, but lerobot would load its rows too"
        )
    columns = [name for name, f in info.features.items() if not f.is_video]
    for rel, eps in by_file.items():
        path = root / rel
        if not path.is_file():
            raise DatasetFormatError(path, f"is missing, but meta/episodes places episode {eps[0].index} in it")
        table = _read_table(path, columns)
        if table.num_rows != sum(e.length for e in eps):
            raise DatasetFormatError(
                path,
                f"holds {table.num_rows} frames, its episodes {eps[0].index}..{eps[-1].index} "
                f"have {sum(e.length for e in eps)} by meta/episodes",
            )
        values, found = np.unique(np.asarray(table.column("episode_index").to_numpy()), return_counts=True)
        counts = dict(zip(values.tolist(), found.tolist(), strict=True))
        for e in eps:
            if counts.get(e.index, 0) != e.length:
                raise DatasetFormatError(
                    path, f"holds {counts.get(e.index, 0)} frames of episode {e.index}, meta/episodes says {e.length}"
                )
        index = np.asarray(table.column("index").to_numpy(), dtype=np.int64)
        expected = np.concatenate([np.arange(e.from_index, e.to_index) for e in eps])
        if not np.array_equal(np.sort(index), np.sort(expected)):
            raise DatasetFormatError(path, "its 'index' column does not match the episodes' dataset_from/to_index")
        task_index = table.column("task_index").to_numpy()
        if len(task_index) and (task_index.min() < 0 or task_index.max() >= info.total_tasks):
            raise DatasetFormatError(path, f"has task_index {int(task_index.max())}, but there are {info.total_tasks}")


def _check_videos(root: Path, info: LeRobotInfo, episodes: tuple[EpisodeRow, ...]) -> None:
    spans: dict[str, tuple[float, int]] = {}  # file -> (latest to_timestamp, episode holding it)
    for e in episodes:
        for rel, _, end in e.videos.values():
            if rel not in spans or end > spans[rel][0]:
                spans[rel] = (end, e.index)
    for rel, (end, episode) in spans.items():
        path = root / rel
        if not path.is_file():
            raise DatasetFormatError(path, f"is missing, but meta/episodes places episode {episode} in it")
        probed = probe_mp4(path)
        frames = probed.frame_count or probe_mp4(path, count_frames=True).frame_count
        if abs(float(probed.rate) - info.fps) > 0.01:
            raise DatasetFormatError(path, f"runs at {float(probed.rate):.3f} fps, meta/info.json says {info.fps}")
        if round(end * info.fps) > frames:
            raise DatasetFormatError(
                path, f"holds {frames} frames ({frames / info.fps:.3f} s), but episode {episode} ends at {end:.3f} s"
            )


def _check_stats(root: Path) -> None:
    path = root / STATS_PATH
    if not path.exists():
        return  # lerobot loads a dataset without stats (policies then need them from elsewhere)
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(path, f"is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DatasetFormatError(path, f"holds a JSON {type(doc).__name__}, expected an object of feature stats")


def check_folder(root: Path, status: Status = _noop) -> FolderCheck:
    """Check a LeRobot v3.0 folder in full, reading no frame: see the module docstring for what is checked."""
    if not root.is_dir():
        raise DatasetFormatError(root, "is not a folder", "give the folder that holds meta/info.json")
    status(f"checking {INFO_PATH}")
    info = parse_info(root)
    tasks = read_tasks(root, info)
    status(f"checking {info.total_episodes} episodes in {EPISODES_DIR}")
    episodes = _episode_rows(root, info, tasks)
    status(f"checking {info.total_frames} frames in data/")
    _check_data(root, info, episodes)
    if info.video_keys:
        status(f"checking the videos of {len(info.video_keys)} camera(s)")
        _check_videos(root, info, episodes)
    _check_stats(root)
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    size = sum((root / f).stat().st_size for f in files)
    return FolderCheck(root, info, tasks, episodes, tuple(files), size)
