"""A UMI replay buffer at a lakeFS commit, exported as a LeRobot v3.0 dataset (locally, or as a commit).

    result = export_lerobot(settings, "v1.0", "replay_buffer/dataset.zarr.zip", Path("cup"), ExportOptions(fps=20))
    LeRobotDataset("umi/cup", root="cup")            # lerobot 0.4.4 loads it, with no network

Per output frame (``R`` robots, ``C`` cameras, as the buffer has them):

    observation.state            float32 (7 R,)  robotN eef_pos xyz (m), eef_rot_axis_angle xyz (rad,
                                                 a rotation vector), gripper_width (m); robot0 first
    action                       float32 (7 R,)  the same layout (see "Action")
    observation.images.cameraN   video, (224, 224, 3) from cameraN_rgb
    timestamp, frame_index, episode_index, index, task_index     as every v3.0 dataset; one task

Time. The buffer stores no clock: its steps are GoPro frames at 60000/1001 Hz (59.94). LeRobot
stores fps as a whole number, and reads the frame of time ``t`` of an episode at ``from_timestamp
+ t``. Output frame ``i`` of an episode stands at ``t_i = i / fps`` and takes the source step
nearest in time, ``k_i = round(t_i * 60000 / 1001)`` (halves up), for ``i = 0 ..
floor((n - 1) * fps * 1001 / 60000)``, so the last output time is not after the last step. State,
action and image of a frame all come from that one step, unchanged, so they stay in step with
each other. The time error ``|k_i * 1001 / 60000 - i / fps|`` is at most half a source period,
1001 / 120000 s = 8.34 ms, at every frame of any episode length: it never accumulates (stamping
every step at ``i / 60`` instead would drift by 1 ms every 60 steps, 60 ms after a minute). At
``--fps 60`` (the default) steps are kept one for one up to about step 500 of an episode, then
one in 1000 is shown twice; at ``--fps 20`` (UMI trains on every 3rd step, 19.98 Hz) steps 3
apart are kept, 2 apart once in 333 frames. The result reports the largest error actually made.

Action. UMI has no action array: its sampler (``diffusion_policy/common/sampler.py``) builds one as
the concatenation of eef_pos, eef_rot_axis_angle and gripper_width *of the same step*, and takes
the action window from the current step forwards. ``action="same"`` (the default) keeps that
convention: ``action[t] = observation.state[t]``, and LeRobot's ``delta_timestamps={"action":
[k / fps for k in range(16)]}`` at fps 20 is the counterpart of UMI's 16-step action window at
down-sampling 3 (the same poses, up to the resampling above; lerobot pads at an episode's end
where UMI drops the window).
``action="next"`` is the teleoperation convention of most LeRobot datasets: the state of the next
output frame (the last frame repeats its own).

Reading: the ref is resolved once (``robolake.ml.dataset.resolve``) and the zip is read by byte
range through the accelerator; low-dim arrays whole, frames in batches of neighbours, each JPEG XL
frame decoded once even when two output frames take it. The folder is written next to ``out``
and renamed into place when complete and checked by ``robolake.ingest.lerobot.check_folder``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.ingest.lerobot import Feature, check_folder
from robolake.ingest.lerobot_write import LeRobotWriter, VideoCodec
from robolake.ml.dataset import Located, Via, resolve
from robolake.ml.dataset import range_source as dataset_range_source
from robolake.ml.remote import RemoteZip, array_info, decode, read_array
from robolake.umi.errors import DatasetFormatError
from robolake.umi.zarr_store import JPEGXL_CODEC_ID, ArrayInfo
from robolake.versioning import BadRequestError, LakeFSClient, TransferProgress, put_dataset
from robolake.versioning.dataset import normalize_prefix

SOURCE_RATE = Fraction(60000, 1001)  # UMI's steps: GoPro frames at 59.94 Hz
STATE_PARTS = (("eef_pos", ("x", "y", "z")), ("eef_rot_axis_angle", ("x", "y", "z")), ("gripper_width", ("",)))
ACTIONS = ("same", "next")
CODECS = ("h264", "av1")
_FRAME_BATCH = 32  # frames per ranged read: neighbours in a UMI zip, so one GET each
Progress = Callable[[int, int], None]


def _noop(*_: Any) -> None:
    return None


# ---- time --------------------------------------------------------------------------------------


def resample_steps(n_source: int, fps: int, rate: Fraction = SOURCE_RATE) -> npt.NDArray[np.int64]:
    """The source step each output frame takes: nearest in time to ``i / fps`` (see the module docstring)."""
    if n_source < 1 or fps < 1:
        raise ConfigError(f"cannot resample {n_source} steps to {fps} fps: both must be at least 1")
    n_out = (n_source - 1) * fps * rate.denominator // rate.numerator + 1
    ratio = rate / fps  # source steps per output frame
    i = np.arange(n_out, dtype=np.int64)
    return (2 * i * ratio.numerator + ratio.denominator) // (2 * ratio.denominator)


def time_errors(steps: npt.NDArray[np.int64], fps: int, rate: Fraction = SOURCE_RATE) -> npt.NDArray[np.float64]:
    """Seconds between each output frame's time ``i / fps`` and the time of the step it took."""
    i = np.arange(len(steps), dtype=np.float64)
    return np.abs(steps * (rate.denominator / rate.numerator) - i / fps)


def error_bound_s(rate: Fraction = SOURCE_RATE) -> float:
    """The worst case of :func:`time_errors` at any fps and length: half a source period."""
    return float(1 / (2 * rate))


# ---- options and result ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """How to export: output fps, the action convention, the video codec, the task text."""

    fps: int = 60
    action: str = "same"
    codec: str = "h264"
    crf: int | None = None
    task: str | None = None  # default: the replay buffer's file name without .zarr.zip
    robot_type: str = "umi"
    via: Via = "accelerator"

    def check(self) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or not 1 <= self.fps <= 1000:
            raise ConfigError(f"fps {self.fps!r} must be a whole number from 1 to 1000 (LeRobot stores it as one)")
        if self.action not in ACTIONS:
            raise ConfigError(f"action {self.action!r} is not one of {list(ACTIONS)}")
        if self.task is not None and not self.task.strip():
            raise ConfigError("the task text must not be empty")
        VideoCodec.named(self.codec, self.crf)
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise ConfigError(f"crf {self.crf} must be between 0 and 63")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    out: str
    repo: str
    ref: str
    commit_id: str
    path: str
    fps: int
    action: str
    codec: str
    task: str
    episodes: int
    frames: int
    source_steps: int
    robots: list[str]
    cameras: list[str]
    repeated_steps: int  # output frames taking the same step as the frame before them
    skipped_steps: int  # source steps no output frame takes
    max_time_error_ms: float  # the largest error made
    time_error_bound_ms: float  # the largest possible
    seconds: float
    lake: dict[str, Any] | None = None  # where `export_lerobot_to_lake` committed it

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- the source --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BufferSource:
    zf: RemoteZip
    ends: npt.NDArray[np.int64]
    robots: list[str]
    cameras: dict[str, ArrayInfo]
    state: npt.NDArray[np.float32]
    names: list[str]


def open_source(zf: RemoteZip, where: str) -> BufferSource:
    arrays = sorted(n[len("data/") : -len("/.zarray")] for n in zf.infos if re.fullmatch(r"data/[^/]+/\.zarray", n))
    robots = sorted({n.split("_", 1)[0] for n in arrays if re.fullmatch(r"robot\d+_eef_pos", n)})
    needed = [f"{r}_{part}" for r in robots for part, _ in STATE_PARTS]
    missing = [n for n in needed if n not in arrays] if robots else ["robot0_eef_pos"]
    if missing:
        raise ConfigError(f"the replay buffer {where} lacks {missing}, which observation.state needs; it has {arrays}")
    ends = read_array(zf, "meta/episode_ends").astype(np.int64)
    if ends.ndim != 1 or not len(ends) or ends[0] <= 0 or np.any(np.diff(ends) <= 0):
        raise DatasetFormatError(where, "meta/episode_ends must be positive and strictly increasing")
    parts, names = [], []
    for r in robots:
        for part, axes in STATE_PARTS:
            values = read_array(zf, f"data/{r}_{part}")
            if values.ndim != 2 or values.shape != (int(ends[-1]), len(axes)):
                raise DatasetFormatError(
                    where, f"data/{r}_{part} is {list(values.shape)}, expected [{int(ends[-1])}, {len(axes)}]"
                )
            parts.append(values.astype(np.float32))
            names += [f"{r}_{part}_{a}" if a else f"{r}_{part}" for a in axes]
    cameras = {c: _camera(zf, c, int(ends[-1]), where) for c in arrays if re.fullmatch(r"camera\d+_rgb", c)}
    return BufferSource(zf, ends, robots, cameras, np.concatenate(parts, axis=1), names)


def _camera(zf: RemoteZip, key: str, steps: int, where: str) -> ArrayInfo:
    info, _ = array_info(zf, f"data/{key}")
    shape = info.shape
    if len(shape) != 4 or shape[3] != 3 or info.dtype != "|u1" or info.chunks != (1, *shape[1:]):
        raise DatasetFormatError(
            where, f"data/{key} is {info.dtype} {list(shape)} chunks {list(info.chunks)}, expected |u1 (N, H, W, 3)"
        )
    if info.compressor_id != JPEGXL_CODEC_ID or shape[0] != steps:
        raise DatasetFormatError(
            where, f"data/{key}: codec {info.compressor_id!r}, {shape[0]} frames; expected JPEG XL, {steps} frames"
        )
    return info


def _frames(src: BufferSource, key: str, steps: npt.NDArray[np.int64], tick: Callable[[], None]) -> Iterator[Any]:
    return camera_frames(src.zf, key, src.cameras[key], steps, tick)


def camera_frames(
    zf: RemoteZip, key: str, info: ArrayInfo, steps: npt.NDArray[np.int64], tick: Callable[[], None] = _noop
) -> Iterator[npt.NDArray[np.uint8]]:
    """The decoded frames of camera `key` at `steps` (buffer rows), in order; each distinct step decoded once."""
    for at in range(0, len(steps), _FRAME_BATCH):
        part = steps[at : at + _FRAME_BATCH]
        names = {int(s): f"data/{key}/{int(s)}.0.0.0" for s in np.unique(part)}
        raw = zf.read_entries(names.values())
        decoded = {s: decode(zf, f"data/{key}", info, None, raw[n]) for s, n in names.items()}
        for s in part.tolist():
            frame = decoded[s]
            if frame.shape != info.shape[1:] or frame.dtype != np.uint8:
                raise DatasetFormatError(zf.where, f"frame {s} of {key} decodes to {frame.dtype} {frame.shape}")
            yield frame
            tick()


def buffer_features(src: BufferSource) -> list[Feature]:
    width = len(src.names)
    features = [
        Feature("observation.state", "float32", (width,), list(src.names)),
        Feature("action", "float32", (width,), list(src.names)),
    ]
    for key, info in src.cameras.items():
        name = f"observation.images.{key.removesuffix('_rgb')}"
        features.append(Feature(name, "video", tuple(info.shape[1:]), ["height", "width", "channels"]))
    return features


# ---- export ------------------------------------------------------------------------------------


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {str(out)!r} exists and is not an empty folder; give a new or empty one")


def export_lerobot(
    settings: Settings,
    ref: str,
    path: str,
    out: Path,
    options: ExportOptions | None = None,
    *,
    repo: str | None = None,
    client: LakeFSClient | None = None,
    progress: Progress = _noop,
    status: Callable[[str], None] = _noop,
) -> ExportResult:
    """Write the replay buffer at `path` (a ``*.zarr.zip``, or a prefix holding one) at `ref` as LeRobot v3.0."""
    options = options or ExportOptions()
    options.check()
    _check_out(out)
    started = time.monotonic()
    lakefs = client or LakeFSClient.from_settings(settings)
    try:
        found = resolve(lakefs, repo or settings.lakefs_repo, ref, path)
    finally:
        if client is None:
            lakefs.close()
    status(f"reading {found.where}")
    zf = RemoteZip(dataset_range_source(settings, found, options.via), found.stat.size_bytes, found.where)
    src = open_source(zf, found.where)
    starts = np.concatenate([[0], src.ends[:-1]])
    plans = [resample_steps(int(e - s), options.fps) for s, e in zip(starts, src.ends, strict=True)]
    task = options.task or Path(found.path).name.removesuffix(".zarr.zip")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _write(partial, src, plans, options, task, progress)
        status("checking the dataset written")
        check_folder(partial)
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return _result(out, found, options, task, src, plans, time.monotonic() - started)


def _write(
    root: Path,
    src: BufferSource,
    plans: list[npt.NDArray[np.int64]],
    options: ExportOptions,
    task: str,
    progress: Progress,
) -> None:
    """Every episode through a LeRobotWriter: state and action rows, and each camera's frames."""
    writer = LeRobotWriter(
        root, fps=options.fps, features=buffer_features(src), video=VideoCodec.named(options.codec, options.crf)
    )
    total, done = sum(len(p) for p in plans), 0

    def tick() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    starts = np.concatenate([[0], src.ends[:-1]]).tolist()
    for start, steps in zip(starts, plans, strict=True):
        columns = episode_columns(src, start, steps, options.action)
        ticks = iter([tick] + [_noop] * len(src.cameras))  # progress counts the first camera's frames
        frames = {
            f"observation.images.{c.removesuffix('_rgb')}": _frames(src, c, start + steps, next(ticks))
            for c in src.cameras
        }
        writer.add_episode(columns, frames, task)
        if not src.cameras:
            done += len(steps)
            progress(done, total)
    writer.finish(options.robot_type)


def episode_columns(
    src: BufferSource, start: int, steps: npt.NDArray[np.int64], action: str
) -> dict[str, npt.NDArray[np.float32]]:
    """One episode's observation.state and action rows: the state of the steps it takes (see "Action")."""
    state = src.state[start + steps]
    moved = state if action == "same" else np.concatenate([state[1:], state[-1:]])
    return {"observation.state": state, "action": moved}


def _result(
    out: Path,
    found: Located,
    options: ExportOptions,
    task: str,
    src: BufferSource,
    plans: list[npt.NDArray[np.int64]],
    seconds: float,
) -> ExportResult:
    errors = np.concatenate([time_errors(p, options.fps) for p in plans])
    lengths = np.diff(np.concatenate([[0], src.ends]))
    return ExportResult(
        out=str(out),
        repo=found.repo,
        ref=found.ref,
        commit_id=found.commit_id,
        path=found.path,
        fps=options.fps,
        action=options.action,
        codec=options.codec,
        task=task,
        episodes=len(plans),
        frames=sum(len(p) for p in plans),
        source_steps=int(src.ends[-1]),
        robots=src.robots,
        cameras=list(src.cameras),
        repeated_steps=sum(int(np.sum(np.diff(p) == 0)) for p in plans),
        skipped_steps=int(sum(n - len(np.unique(p)) for n, p in zip(lengths.tolist(), plans, strict=True))),
        max_time_error_ms=round(float(errors.max()) * 1000, 4),
        time_error_bound_ms=round(error_bound_s() * 1000, 4),
        seconds=round(seconds, 2),
    )


def export_lerobot_to_lake(
    settings: Settings,
    ref: str,
    path: str,
    *,
    branch: str,
    lake_path: str,
    out: Path | None = None,
    options: ExportOptions | None = None,
    repo: str | None = None,
    progress: Progress = _noop,
    upload_progress: Callable[[TransferProgress], None] | None = None,
    status: Callable[[str], None] = _noop,
) -> ExportResult:
    """:func:`export_lerobot`, then commit the folder to `lake_path` on `branch`, the source named in the metadata.

    The branch is checked first (it must exist and hold no uncommitted changes), so a bad branch
    fails before any frame is read. Without `out`, the folder is written to a temporary directory.
    """
    options = options or ExportOptions()
    repo = repo or settings.lakefs_repo
    prefix = normalize_prefix(lake_path)
    if not prefix:
        raise ConfigError("--lake-path must name a folder in the repository, not its root")
    with LakeFSClient.from_settings(settings) as lakefs:
        require_clean_branch(lakefs, repo, branch, "export")
        with tempfile.TemporaryDirectory(prefix="lerobot-", dir=_work_dir(settings)) as tmp:
            target = out or Path(tmp) / "dataset"
            result = export_lerobot(
                settings, ref, path, target, options, repo=repo, client=lakefs, progress=progress, status=status
            )
            status(f"committing {result.frames} frames to {prefix} on {branch!r}")
            done = put_dataset(
                lakefs,
                repo,
                branch,
                target,
                prefix,
                _lake_metadata(result),
                upload_progress,
                name=Path(prefix.rstrip("/")).name,
                message=f"Export {result.path} at {result.commit_id[:12]} as LeRobot v3.0 ({result.fps} fps)",
            )
    lake = {"branch": branch, "path": prefix, "commit_id": done.commit.id, "objects": done.object_count}
    return dataclasses.replace(result, out=str(out) if out else "", lake=lake)


def require_clean_branch(lakefs: LakeFSClient, repo: str, branch: str, what: str) -> None:
    """NotFoundError for a branch that does not exist, BadRequestError for one with uncommitted changes."""
    lakefs.get_branch(repo, branch)
    dirty = next(iter(lakefs.uncommitted(repo, branch)), None)
    if dirty is not None:
        raise BadRequestError(
            f"branch {branch!r} of {repo!r} has uncommitted changes (e.g. {dirty.path!r}); the {what} commit "
            f"must hold only the {what}. Commit or reset them first, or {what} into a new branch"
        )


def _work_dir(settings: Settings) -> Path:
    work = settings.cache_dir / "export"
    work.mkdir(parents=True, exist_ok=True)
    return work


def _lake_metadata(result: ExportResult) -> Mapping[str, object]:
    return {
        "format": "lerobot",
        "codebase_version": "v3.0",
        "source_repo": result.repo,
        "source_ref": result.ref,
        "source_commit": result.commit_id,
        "source_path": result.path,
        "fps": result.fps,
        "resample": "nearest source step to i/fps (source 60000/1001 Hz)",
        "max_time_error_ms": result.max_time_error_ms,
        "action": result.action,
        "video_codec": result.codec,
        "total_episodes": result.episodes,
        "total_frames": result.frames,
        "exported_by": "robolake export lerobot",
    }
