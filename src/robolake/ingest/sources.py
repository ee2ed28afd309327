"""Turn one UMI source into a checked list of lake objects, before anything is uploaded.

Sources and what they become (keys in ``umi-raw`` unless said otherwise; see storage/layout.py):

- a replay buffer ``<task>.zarr.zip`` (single-arm or bimanual): validated, then split by
  ``meta/episode_ends`` into ``pose/<ds>/episode_XXXXX.json`` and ``gripper/<ds>/...`` JSON, plus
  the file itself under ``original/<ds>/``;
- a zip of episode MP4s (UMI's ``<task>_mp4s.zip``): every entry CRC-checked and probed, the
  videos as ``video/<ds>/episode_XXXXX.mp4`` (in name order), the zip under ``original/<ds>/``;
- a folder of MP4s: probed, uploaded as ``video/<ds>/...`` straight from the folder;
- a robolake-generated layout (``manifest.json`` at its root): every file's size and sha256
  checked against the manifest, the replay buffer validated, videos probed; per-episode files
  keep their place, the replay buffer and manifest go under ``original/<ds>/``, experiment
  configs to ``umi-experiments/configs/<ds>/``.

Every problem raises DatasetFormatError naming the file (and the zip entry) and what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robolake.ingest.lerobot import is_lerobot_folder
from robolake.storage.download import file_sha256
from robolake.storage.layout import (
    EXPERIMENTS_BUCKET,
    RAW_BUCKET,
    config_key,
    original_key,
    sensor_key,
)
from robolake.umi.errors import DatasetFormatError
from robolake.umi.generator import Manifest, synthetic_name
from robolake.umi.naming import episode_of
from robolake.umi.replay_buffer import ReplayBufferInfo, open_replay_buffer, validate_replay_buffer
from robolake.umi.video import VideoInfo, check_video

UMI_FPS = 60000 / 1001  # GoPro 59.94 Hz; UMI's replay buffer stores no time stamps
Status = Callable[[str], None]  # reports what is being checked, one line at a time


@dataclasses.dataclass(frozen=True)
class PlannedObject:
    """One object an ingest will write: where from, where to, and its digest."""

    bucket: str
    key: str
    path: Path
    size: int
    sha256: str
    kind: str  # pose | gripper | video | original | config
    episode: int | None = None


@dataclasses.dataclass(frozen=True)
class SourcePlan:
    kind: str  # replay_buffer | videos | generated
    episodes: int
    objects: tuple[PlannedObject, ...]
    info: dict[str, Any]  # described in the dataset manifest under sources.<kind>


def detect_kind(path: Path) -> str:
    """replay_buffer, video_zip, video_folder, generated or lerobot; DatasetFormatError for anything else."""
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return "generated"
        if is_lerobot_folder(path):
            return "lerobot"
        if any(p.suffix.lower() == ".mp4" for p in path.rglob("*") if p.is_file()):
            return "video_folder"
        raise DatasetFormatError(
            path,
            "holds neither a robolake manifest.json nor any .mp4 file",
            "give a UMI *.zarr.zip, a zip or folder of episode MP4s, or a generated dataset",
        )
    if not path.is_file():
        raise DatasetFormatError(path, "no such file or directory", "check the path")
    name = path.name.lower()
    if name.endswith(".zarr.zip"):
        return "replay_buffer"
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, EOFError, OSError, ValueError):
            return "replay_buffer"  # the validator explains what is wrong with the zip
        if ".zgroup" in names or "zarr.json" in names:
            return "replay_buffer"
        if any(n.lower().endswith(".mp4") for n in names):
            return "video_zip"
        raise DatasetFormatError(
            path,
            "not a zarr store (no .zgroup) and holds no .mp4 files",
            "expected a UMI <task>.zarr.zip or <task>_mp4s.zip",
        )
    raise DatasetFormatError(
        path,
        f"is not a supported source ({path.suffix or 'no extension'})",
        "give a UMI *.zarr.zip, a zip or folder of episode MP4s, or a generated dataset",
    )


def default_dataset_name(path: Path, kind: str) -> str:
    """The dataset name when none is given: from the file or folder name, or the generator's manifest."""
    if kind == "generated":
        manifest = _load_manifest(path / "manifest.json")
        return synthetic_name(manifest.profile, manifest.seed, manifest.episodes)
    name = path.name
    for suffix in (".zarr.zip", ".zip"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.removesuffix("_mp4s").removesuffix("_mp4") or "dataset"


# ---- replay buffer -----------------------------------------------------------------------------


def _rows(array: np.ndarray[Any, Any], decimals: int = 7) -> list[Any]:
    return np.round(array.astype(np.float64), decimals).tolist()  # type: ignore[no-any-return]


def _write_json(path: Path, obj: dict[str, Any]) -> tuple[int, str]:
    data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()


def plan_replay_buffer(path: Path, dataset: str, staging: Path, status: Status) -> SourcePlan:
    status(f"validating replay buffer {path.name}")
    info = validate_replay_buffer(path)
    robots = sorted({name.split("/")[1].split("_", 1)[0] for name in info.arrays if name.startswith("data/robot")})
    status(f"splitting {info.n_episodes} episodes ({info.n_steps} steps, {len(robots)} robot(s))")
    lowdim: dict[str, np.ndarray[Any, Any]] = {}
    try:
        root = open_replay_buffer(path)
        ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
        for name in info.arrays:
            if name.startswith("data/robot"):
                lowdim[name.removeprefix("data/")] = np.asarray(root[name][:])
    except DatasetFormatError:
        raise
    except Exception as exc:  # zarr/numcodecs raise many types; all mean the file is unreadable
        raise DatasetFormatError(path, f"cannot be read with zarr ({type(exc).__name__}: {exc})") from exc
    objects: list[PlannedObject] = []
    starts = np.concatenate([[0], ends[:-1]])
    for index, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        pose, gripper = _episode_docs(dataset, index, start, end, robots, lowdim)
        for sensor, doc in (("pose", pose), ("gripper", gripper)):
            key = sensor_key(sensor, dataset, index)
            local = staging / key
            size, digest = _write_json(local, doc)
            objects.append(PlannedObject(RAW_BUCKET, key, local, size, digest, sensor, index))
    objects.append(_original(path, dataset, path.name, status))
    return SourcePlan("replay_buffer", info.n_episodes, tuple(objects), _buffer_info(info, objects[-1]))


def _episode_docs(
    dataset: str, index: int, start: int, end: int, robots: list[str], lowdim: dict[str, np.ndarray[Any, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    n = end - start
    common = {
        "schema_version": 1,
        "dataset": dataset,
        "source": "replay_buffer",
        "episode_index": index,
        "first_step": start,
        "frame_count": n,
        "fps": round(UMI_FPS, 5),
        "timestamps_s": np.round(np.arange(n) / UMI_FPS, 6).tolist(),
    }
    poses: dict[str, Any] = {}
    grippers: dict[str, Any] = {}
    for robot in robots:
        pose: dict[str, Any] = {
            "eef_position_m": _rows(lowdim[f"{robot}_eef_pos"][start:end]),
            "eef_rot_axis_angle": _rows(lowdim[f"{robot}_eef_rot_axis_angle"][start:end]),
        }
        for which in ("demo_start_pose", "demo_end_pose"):  # one constant 6-D pose per episode
            if f"{robot}_{which}" in lowdim:
                pose[which] = _rows(lowdim[f"{robot}_{which}"][start])
        poses[robot] = pose
        grippers[robot] = {"width_m": _rows(lowdim[f"{robot}_gripper_width"][start:end, 0])}
    frame = "UMI replay buffer frame (metres, rotation vectors in radians)"
    return {**common, "frame": frame, "robots": poses}, {**common, "robots": grippers}


def _buffer_info(info: ReplayBufferInfo, original: PlannedObject) -> dict[str, Any]:
    return {
        "file": original.path.name,
        "size_bytes": info.size_bytes,
        "sha256": original.sha256,
        "episodes": info.n_episodes,
        "steps": info.n_steps,
        "robots": info.n_robots,
        "cameras": list(info.cameras),
        "image_shape": list(info.image_shape),
        "has_demo_poses": info.has_demo_poses,
        "original_key": original.key,
    }


def _original(path: Path, dataset: str, relpath: str, status: Status, sha256: str | None = None) -> PlannedObject:
    status(f"hashing {path.name}")
    digest = sha256 or file_sha256(path)
    return PlannedObject(RAW_BUCKET, original_key(dataset, relpath), path, path.stat().st_size, digest, "original")


# ---- videos ------------------------------------------------------------------------------------


def _video_entry(info: VideoInfo, index: int, name: str, key: str) -> dict[str, Any]:
    return {
        "episode": index,
        "name": name,
        "key": key,
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "frames": info.frame_count,
        "fps": round(float(info.rate), 5),
        "camera_serial": info.camera_serial,
        "creation_time": info.creation_time,
    }


def plan_video_zip(path: Path, dataset: str, staging: Path, status: Status) -> SourcePlan:
    status(f"checking the MP4s in {path.name}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise DatasetFormatError(path, f"truncated or damaged zip ({exc})", "download it again") from exc
    objects: list[PlannedObject] = []
    entries = []
    with zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".mp4") and not n.startswith("__MACOSX/"))
        if not names:
            raise DatasetFormatError(path, "holds no .mp4 files", "expected UMI's <task>_mp4s.zip")
        for index, name in enumerate(names):
            key = sensor_key("video", dataset, index)
            local = staging / key
            local.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            try:  # zipfile checks each entry's CRC-32 as it is read to the end
                with zf.open(name) as src, local.open("wb") as dst:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        dst.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
                raise DatasetFormatError(
                    path, f"entry {name!r} cannot be read ({exc})", "the zip is damaged; download it again"
                ) from exc
            info = check_video(local, shown_as=f"{path}[{name}]")
            objects.append(
                PlannedObject(RAW_BUCKET, key, local, local.stat().st_size, digest.hexdigest(), "video", index)
            )
            entries.append(_video_entry(info, index, name, key))
    objects.append(_original(path, dataset, path.name, status))
    return SourcePlan(
        "videos",
        len(names),
        tuple(objects),
        {
            "file": path.name,
            "size_bytes": objects[-1].size,
            "sha256": objects[-1].sha256,
            "original_key": objects[-1].key,
            "episodes": entries,
        },
    )


def plan_video_folder(path: Path, dataset: str, status: Status) -> SourcePlan:
    files = sorted(
        (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".mp4"),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    status(f"checking {len(files)} MP4s in {path}")
    objects, entries = [], []
    for index, file in enumerate(files):
        info = check_video(file)
        key = sensor_key("video", dataset, index)
        objects.append(PlannedObject(RAW_BUCKET, key, file, file.stat().st_size, file_sha256(file), "video", index))
        entries.append(_video_entry(info, index, file.relative_to(path).as_posix(), key))
    return SourcePlan("videos", len(files), tuple(objects), {"folder": path.name, "episodes": entries})


# ---- a generated layout ------------------------------------------------------------------------


def _load_manifest(path: Path) -> Manifest:
    try:
        return Manifest.load(path)
    except FileNotFoundError as exc:
        raise DatasetFormatError(path, "no such file", "a generated dataset has a manifest.json") from exc
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise DatasetFormatError(
            path, f"is not a robolake dataset manifest ({type(exc).__name__}: {exc})", "regenerate the dataset"
        ) from exc


def plan_generated(path: Path, dataset: str, status: Status) -> SourcePlan:
    manifest_path = path / "manifest.json"
    manifest = _load_manifest(manifest_path)
    status(f"checking {len(manifest.files)} files against {manifest_path.name}")
    objects: list[PlannedObject] = []
    for entry in manifest.files:
        file = path / entry.path
        if ".." in Path(entry.path).parts or not file.is_file():
            raise DatasetFormatError(file, "is listed in manifest.json but missing", "regenerate the dataset")
        size = file.stat().st_size
        if size != entry.size_bytes:
            raise DatasetFormatError(
                file,
                f"has {size} bytes, manifest.json says {entry.size_bytes}",
                "the file changed or is damaged; regenerate the dataset",
            )
        actual = file_sha256(file)
        if actual != entry.sha256:
            raise DatasetFormatError(
                file,
                f"has sha256 {actual}, manifest.json says {entry.sha256}",
                "the file changed or is damaged; regenerate the dataset",
            )
        objects.append(_generated_object(path, file, entry.path, dataset, size, actual))
    for obj in objects:
        if obj.kind == "video":
            check_video(obj.path)
        elif obj.path.name.endswith(".zarr.zip"):
            status(f"validating {obj.path.name}")
            validate_replay_buffer(obj.path)
    manifest_sha = file_sha256(manifest_path)
    objects.append(
        PlannedObject(
            RAW_BUCKET,
            original_key(dataset, "manifest.json"),
            manifest_path,
            manifest_path.stat().st_size,
            manifest_sha,
            "original",
        )
    )
    info = {
        "generator": manifest.generator,
        "seed": manifest.seed,
        "profile": manifest.profile,
        "episodes": manifest.episodes,
        "frames_total": manifest.frames_total,
        "fps": manifest.fps,
        "manifest_sha256": manifest_sha,
        "experiments": manifest.experiments,
    }
    return SourcePlan("generated", manifest.episodes, tuple(objects), info)


def _generated_object(root: Path, file: Path, rel: str, dataset: str, size: int, sha256: str) -> PlannedObject:
    top, _, name = rel.partition("/")
    episode = episode_of(rel)
    if top in ("pose", "gripper", "video") and episode is not None and "/" not in name:
        return PlannedObject(RAW_BUCKET, sensor_key(top, dataset, episode), file, size, sha256, top, episode)
    if top == "configs" and "/" not in name:
        return PlannedObject(EXPERIMENTS_BUCKET, config_key(dataset, name), file, size, sha256, "config")
    return PlannedObject(RAW_BUCKET, original_key(dataset, rel), file, size, sha256, "original")
