"""One replay-buffer task: a raw episode in, its low-dim arrays and JPEG XL frames staged out.

What a task does, as UMI's ``07_generate_replay_buffer.py`` does per video: decode every frame
(PyAV, one thread: a Dask worker is one core), take the centre square of the frame, resize it to
224 x 224 (swscale's area filter, with its bit-exact flags, so every machine gives the same
pixels), black out the gripper mount, and encode it as UMI's ``JpegXl(level=99, numthreads=1)``
(robolake.umi.replay_buffer.encode_frame). One difference in order: UMI masks the full-size
frame before resizing; here the same region is masked on the square, which the generator's
renderer places identically. Low-dim arrays come from the pose and gripper files as UMI stores
them: eef position, rotation vector and gripper width as float32, the first and last
pose (x, y, z, rx, ry, rz) as float64, repeated over the episode.

The result is staged as one object, ``s3://umi-processed/staging/replay-buffer/<params>/<episode
identity>.npz`` (uncompressed npz: the low-dim arrays, every frame's bytes end to end and their
offsets), written with one PUT, so it is there whole or not at all, and carrying its sha256.
Nothing a task writes is in lakeFS: a job that dies leaves the branch as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import Interpolation

from robolake.errors import RobolakeError
from robolake.processing.errors import TaskFailedError
from robolake.processing.inputs import InputObject, RawEpisode, read_input
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.s3 import S3Target
from robolake.umi.errors import DatasetFormatError
from robolake.umi.replay_buffer import IMAGE_SIZE, encode_frame

STAGING_BUCKET = "umi-processed"
STAGING_PREFIX = "staging/replay-buffer"
FORMAT_VERSION = 1  # bump when a task's output for the same input and parameters changes
LOWDIM_NAMES = (
    "robot0_eef_pos",
    "robot0_eef_rot_axis_angle",
    "robot0_gripper_width",
    "robot0_demo_start_pose",
    "robot0_demo_end_pose",
)
_RESIZE = Interpolation.AREA | Interpolation.BITEXACT | Interpolation.ACCURATE_RND


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplayBufferParams:
    """How frames become observations; every field is part of the staged results' key."""

    image_size: int = IMAGE_SIZE[0]
    mask_gripper: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "image_size": self.image_size,
            "crop": "center_square",
            "resize": "area",
            "mask_gripper": self.mask_gripper,
            "codec": "imagecodecs_jpegxl level=99 numthreads=1",
        }


@dataclasses.dataclass(frozen=True)
class EpisodeTask:
    """Everything a worker needs, so it needs nothing else (no settings, no lakeFS keys)."""

    episode: RawEpisode
    params: ReplayBufferParams
    target: S3Target  # the accelerator: inputs are read and results staged through it
    staged_key: str
    video_target: S3Target | None = None  # where the video is read instead (a MinIO node), or None


@dataclasses.dataclass(frozen=True)
class EpisodeResult:
    index: int
    frames: int
    staged_key: str
    staged_bytes: int
    seconds: float
    video_read_s: float = 0.0  # reading the video (GET, sha256, temp file)


def staged_key(params_digest: str, episode: RawEpisode) -> str:
    return f"{STAGING_PREFIX}/{params_digest}/{episode.identity}.npz"


@functools.lru_cache(maxsize=4)
def gripper_mask(size: int) -> npt.NDArray[np.bool_]:
    """The gripper mount's trapezoid at the bottom centre of a square observation (True: black)."""
    s = float(size)
    poly = [(0.36 * s, s + 1.0), (0.40 * s, 0.86 * s), (0.60 * s, 0.86 * s), (0.64 * s, s + 1.0)]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    inside = np.ones((size, size), dtype=bool)
    for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1], strict=True):
        # Clockwise in image coordinates (y down): inside is to the right of every edge.
        inside &= (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0) >= 0
    return inside


def observation(image: npt.NDArray[np.uint8], params: ReplayBufferParams) -> npt.NDArray[np.uint8]:
    """A decoded RGB frame (H, W, 3) as the policy sees it: centre square, resized, mount masked."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side])
    size = params.image_size
    frame = av.VideoFrame.from_ndarray(square, format="rgb24")
    resized = frame.reformat(width=size, height=size, format="rgb24", interpolation=_RESIZE)
    out: npt.NDArray[np.uint8] = np.array(resized.to_ndarray(), dtype=np.uint8)
    if params.mask_gripper:
        out[gripper_mask(size)] = 0
    return out


def encode_video(path: Path, params: ReplayBufferParams, shown_as: str) -> list[bytes]:
    """Every frame of the video at `path`, as encoded JPEG XL observations."""
    chunks: list[bytes] = []
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise DatasetFormatError(shown_as, "has no video stream")
            stream = container.streams.video[0]
            stream.thread_count = 1
            for frame in container.decode(stream):
                image = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
                chunks.append(encode_frame(observation(image, params)))
    except av.FFmpegError as exc:
        raise DatasetFormatError(shown_as, f"does not decode ({exc})", "the video is damaged; upload it again") from exc
    return chunks


def _json(obj: InputObject, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetFormatError(obj.path, f"is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DatasetFormatError(obj.path, "is not a JSON object")
    return doc


def _column(doc: dict[str, Any], obj: InputObject, key: str, width: int, rows: int) -> npt.NDArray[np.float64]:
    try:
        values = np.asarray(doc[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(obj.path, f"has no numeric {key!r} ({exc})") from exc
    values = values.reshape(len(values), -1) if values.ndim else values.reshape(0, width)
    if values.shape != (rows, width) or not np.all(np.isfinite(values)):
        raise DatasetFormatError(
            obj.path,
            f"{key!r} is {list(values.shape)} (finite: {bool(np.all(np.isfinite(values)))}), "
            f"expected [{rows}, {width}] finite numbers",
        )
    return values


def lowdim_arrays(pose: dict[str, Any], gripper: dict[str, Any], episode: RawEpisode) -> dict[str, npt.NDArray[Any]]:
    """UMI's low-dim arrays of one episode, from its pose and gripper files."""
    rows = pose.get("frame_count")
    if not isinstance(rows, int) or rows < 1:
        raise DatasetFormatError(episode.pose.path, f"frame_count {rows!r} is not a positive integer")
    pos = _column(pose, episode.pose, "eef_position_m", 3, rows)
    rot = _column(pose, episode.pose, "eef_rot_axis_angle", 3, rows)
    width = _column(gripper, episode.gripper, "width_m", 1, rows)
    start, end = np.concatenate([pos[0], rot[0]]), np.concatenate([pos[-1], rot[-1]])
    return {
        "robot0_eef_pos": pos.astype(np.float32),
        "robot0_eef_rot_axis_angle": rot.astype(np.float32),
        "robot0_gripper_width": width.astype(np.float32),
        "robot0_demo_start_pose": np.tile(start, (rows, 1)),
        "robot0_demo_end_pose": np.tile(end, (rows, 1)),
    }


def pack(lowdim: dict[str, npt.NDArray[Any]], chunks: list[bytes]) -> bytes:
    """The staged object: an uncompressed npz of the low-dim arrays, the frames' bytes and offsets."""
    offsets = np.cumsum([0, *(len(c) for c in chunks)], dtype=np.int64)
    blob = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    arrays: dict[str, Any] = {"frames": blob, "frame_offsets": offsets, **lowdim}
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def unpack(raw: bytes, where: str) -> tuple[dict[str, npt.NDArray[Any]], list[bytes]]:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as doc:
            arrays = {k: doc[k] for k in doc.files}
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetFormatError(where, f"is not a staged episode ({exc})", "run the job again") from exc
    offsets, blob = arrays.pop("frame_offsets"), arrays.pop("frames").tobytes()
    return arrays, [blob[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]


def process_episode(task: EpisodeTask) -> EpisodeResult:
    """Run on a worker: read the episode at its commit, make its observations, stage the result."""
    started = time.monotonic()
    episode = task.episode
    try:
        pose = _json(episode.pose, read_input(task.target, episode.pose))
        gripper = _json(episode.gripper, read_input(task.target, episode.gripper))
        lowdim = lowdim_arrays(pose, gripper, episode)
        with tempfile.TemporaryDirectory(prefix="robolake-episode-") as tmp:
            video = Path(tmp) / "video.mp4"
            read_started = time.monotonic()
            read_input(task.video_target or task.target, episode.video, video)
            read_s = time.monotonic() - read_started
            chunks = encode_video(video, task.params, episode.video.path)
        rows = len(lowdim["robot0_eef_pos"])
        if len(chunks) != rows:
            raise DatasetFormatError(
                episode.video.path, f"has {len(chunks)} frames, the pose file {rows}", "the episode's files disagree"
            )
        body = pack(lowdim, chunks)
        put_staged(task.target, task.staged_key, body)
    except RobolakeError as exc:
        raise TaskFailedError(f"episode {episode.index}: {exc}", exc.exit_code) from None
    seconds = time.monotonic() - started
    return EpisodeResult(episode.index, len(chunks), task.staged_key, len(body), seconds, read_s)


def put_staged(target: S3Target, key: str, body: bytes) -> None:
    client = boto3_client(target, max_pool_connections=2, read_timeout_s=300.0)
    sha = hashlib.sha256(body).hexdigest()
    with boto_errors("PUT", STAGING_BUCKET, key, target, hint="staged results go to the umi-processed bucket"):
        client.put_object(Bucket=STAGING_BUCKET, Key=key, Body=body, Metadata={"sha256": sha})


def get_staged(target: S3Target, key: str) -> tuple[dict[str, npt.NDArray[Any]], list[bytes]]:
    """A staged episode, checked against the sha256 it was written with."""
    return unpack(get_staged_bytes(target, key), f"s3://{STAGING_BUCKET}/{key}")


def get_staged_bytes(target: S3Target, key: str) -> bytes:
    """A staged object's bytes, checked against the sha256 it was written with."""
    client = boto3_client(target, max_pool_connections=2, read_timeout_s=300.0)
    with boto_errors("GET", STAGING_BUCKET, key, target, hint="run the job again to redo the task"):
        answer = client.get_object(Bucket=STAGING_BUCKET, Key=key)
        raw: bytes = answer["Body"].read()
    want = answer.get("Metadata", {}).get("sha256")
    if want != hashlib.sha256(raw).hexdigest():
        raise DatasetFormatError(f"s3://{STAGING_BUCKET}/{key}", "does not match its sha256", "run the job again")
    return raw


def staged_keys(target: S3Target, params_digest: str, job_prefix: str = STAGING_PREFIX) -> set[str]:
    """Keys of the results already staged under `job_prefix` with these parameters (one LIST per 1000)."""
    client = boto3_client(target, max_pool_connections=2)
    prefix = f"{job_prefix}/{params_digest}/"
    found: set[str] = set()
    with boto_errors("LIST", STAGING_BUCKET, prefix, target, hint="staged results go to the umi-processed bucket"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=STAGING_BUCKET, Prefix=prefix):
            found.update(item["Key"] for item in page.get("Contents", []))
    return found
