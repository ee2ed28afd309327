"""One LeRobot-export task: an episode's frames in, its video segment and image statistics staged out.

What a task does, for each camera of the replay buffer: read the JPEG XL frames of the source
steps the episode's output frames take (robolake.ml.lerobot_export.resample_steps: the nearest
step to ``i / fps``), by byte range through the accelerator, decode them, encode them as one MP4
segment with the export's encoder and options (robolake.ingest.lerobot_write: H.264 with a
keyframe every 2 frames, bitexact; or AV1), and compute the per-episode image statistics LeRobot
stores (per channel in [0, 1], over the frames lerobot samples). That is all the per-frame work of
the export. The low-dim rows (state, action, the frame columns) are not a task's: they are ~30
bytes a frame, read once by the driver, which writes the one parquet file anyway.

A task never opens the zip's directory (for a large buffer, tens of MB of entries): the driver
hands it the directory entries of its own frames (``zipfile.ZipInfo``, pickled), so a task reads
only its frames' bytes. Its identity is its frames' content (each entry's CRC-32 and size, the
camera's array description) and the steps taken, so the same episode at another commit, or in a
buffer with more episodes appended, is not encoded twice.

The result is staged as one uncompressed npz under ``s3://umi-processed/staging/lerobot/<params
hash>/<identity>.npz``: per camera the segment's bytes and its statistics, written with one PUT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from robolake.errors import ConfigError, RobolakeError
from robolake.ingest.lerobot_write import Stats, VideoCodec, VideoFile, image_stats, sampled_frames
from robolake.ml.lerobot_export import ACTIONS, ExportOptions, camera_frames
from robolake.ml.remote import RangeSource, RemoteZip
from robolake.processing.errors import TaskFailedError
from robolake.processing.frames import put_staged
from robolake.processing.transcode import video_encoders
from robolake.storage.s3 import S3Target
from robolake.umi.errors import DatasetFormatError
from robolake.umi.zarr_store import ArrayInfo

STAGING_PREFIX = "staging/lerobot"
FORMAT_VERSION = 1  # bump when a task's output for the same frames and parameters changes


@dataclasses.dataclass(frozen=True, kw_only=True)
class LeRobotParams:
    """The export's options (robolake.ml.lerobot_export.ExportOptions); all of them key the staged parts."""

    fps: int = 60
    action: str = "same"
    codec: str = "h264"
    crf: int | None = None
    task: str | None = None
    robot_type: str = "umi"

    def check(self) -> None:
        if self.action not in ACTIONS:  # ExportOptions checks it too; here with the flag's name
            raise ConfigError(f"--action {self.action!r} is not one of {list(ACTIONS)}")
        self.export_options().check()
        encoder = self.video().encoder
        if encoder not in av.codecs_available:  # before any task runs, not in every task
            have = ", ".join(video_encoders(av.codecs_available)) or "none robolake knows"
            raise ConfigError(
                f"--codec {self.codec}: this PyAV build ({av.__version__}) has no {encoder} encoder, which LeRobot's "
                f"{self.codec} videos are written with; its video encoders: {have}. Install PyAV's own wheel "
                "(pip install 'av>=15'), or choose the other codec"
            )

    def export_options(self) -> ExportOptions:
        return ExportOptions(
            fps=self.fps, action=self.action, codec=self.codec, crf=self.crf, task=self.task, robot_type=self.robot_type
        )

    def video(self) -> VideoCodec:
        return VideoCodec.named(self.codec, self.crf)

    def task_params(self) -> dict[str, Any]:
        """What a task's output depends on: the frames' times and the encoder."""
        codec = self.video()
        return {"format_version": FORMAT_VERSION, "fps": self.fps, "encoder": codec.encoder, **codec.options}

    def as_dict(self) -> dict[str, Any]:
        return {**self.task_params(), "action": self.action, "task": self.task, "robot_type": self.robot_type}


@dataclasses.dataclass(frozen=True)
class CameraPart:
    """One camera of one episode: its array description and the directory entries of the frames taken."""

    key: str  # "camera0_rgb"
    info: ArrayInfo
    entries: tuple[zipfile.ZipInfo, ...]


@dataclasses.dataclass(frozen=True)
class PartTask:
    """Everything a worker needs: where the buffer's bytes are, which frames, how to encode them."""

    index: int  # the episode's position in the buffer
    source: RangeSource
    size_bytes: int
    where: str
    steps: tuple[int, ...]  # buffer rows, one per output frame
    cameras: tuple[CameraPart, ...]
    fps: int
    codec: VideoCodec
    target: S3Target
    staged_key: str


@dataclasses.dataclass(frozen=True)
class PartResult:
    index: int
    frames: int
    staged_key: str
    staged_bytes: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class Part:
    """A staged part read back: per video key ("observation.images.camera0"), the segment and its stats."""

    videos: dict[str, bytes]
    stats: dict[str, Stats]


def video_key(camera: str) -> str:
    return f"observation.images.{camera.removesuffix('_rgb')}"


def part_identity(steps: npt.NDArray[np.int64], cameras: tuple[CameraPart, ...]) -> str:
    """A fingerprint of the frames a part encodes: steps, each camera's array, each frame's CRC-32 and size."""
    digest = hashlib.sha256(",".join(map(str, steps.tolist())).encode())
    for camera in cameras:
        digest.update(f"\n{camera.key} {camera.info}\n".encode())
        digest.update(",".join(f"{e.CRC:08x}:{e.file_size}" for e in camera.entries).encode())
    return digest.hexdigest()


def camera_parts(zf: RemoteZip, cameras: dict[str, ArrayInfo], steps: npt.NDArray[np.int64]) -> tuple[CameraPart, ...]:
    """The directory entries of the frames at `steps` (distinct, in order), per camera."""
    rows = np.unique(steps).tolist()
    return tuple(
        CameraPart(key, info, tuple(zf.infos[f"data/{key}/{s}.0.0.0"] for s in rows)) for key, info in cameras.items()
    )


class _EntriesZip(RemoteZip):
    """A RemoteZip that knows only the entries it was given: a task reads its frames, not the directory."""

    def __init__(self, source: RangeSource, size: int, where: str, entries: tuple[zipfile.ZipInfo, ...]) -> None:
        self.source, self.size, self.where, self.blocks = source, size, where, None
        self.infos = {e.filename: e for e in entries}


def encode_segment(frames: Any, length: int, path: Path, fps: int, codec: VideoCodec, shape: tuple[int, ...]) -> Stats:
    """Encode `length` frames into the MP4 at `path`; the image stats of the frames lerobot samples."""
    height, width, _ = shape
    video = VideoFile(path, fps, width, height, codec)
    picks, kept = set(sampled_frames(length).tolist()), []
    for i, image in enumerate(frames):
        video.add(image)
        if i in picks:
            kept.append(image)
    video.close()
    if video.frames != length:
        raise DatasetFormatError(str(path), f"{video.frames} frames encoded for an episode of {length}")
    return image_stats(np.stack(kept))


def encode_part(task: PartTask) -> PartResult:
    """Run on a worker: every camera's frames of one episode, encoded and staged as one object."""
    started = time.monotonic()
    steps = np.asarray(task.steps, dtype=np.int64)
    arrays: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="robolake-lerobot-") as tmp:
            for camera in task.cameras:
                zf = _EntriesZip(task.source, task.size_bytes, task.where, camera.entries)
                frames = camera_frames(zf, camera.key, camera.info, steps)
                path = Path(tmp) / f"{camera.key}.mp4"
                stats = encode_segment(frames, len(steps), path, task.fps, task.codec, camera.info.shape[1:])
                arrays[f"video/{camera.key}"] = np.frombuffer(path.read_bytes(), dtype=np.uint8)
                arrays.update({f"stats/{camera.key}/{name}": value for name, value in stats.items()})
        body = _pack(arrays)
        put_staged(task.target, task.staged_key, body)
    except RobolakeError as exc:
        raise TaskFailedError(f"episode {task.index}: {exc}", exc.exit_code) from None
    return PartResult(task.index, len(steps), task.staged_key, len(body), time.monotonic() - started)


def _pack(arrays: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def unpack_part(raw: bytes, where: str) -> Part:
    """A staged part's segments and statistics, by video key."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as doc:
            arrays = {k: doc[k] for k in doc.files}
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetFormatError(where, f"is not a staged LeRobot part ({exc})", "run the job again") from exc
    videos: dict[str, bytes] = {}
    stats: dict[str, Stats] = {}
    for name, value in arrays.items():
        kind, camera, *rest = name.split("/")
        if kind == "video":
            videos[video_key(camera)] = value.tobytes()
        elif kind == "stats" and len(rest) == 1:
            stats.setdefault(video_key(camera), {})[rest[0]] = value
    return Part(videos, stats)
