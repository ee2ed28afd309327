"""`process transcode`: every episode video of a raw dataset to a target codec and size, one commit.

    result = run_transcode(settings, "main", "datasets/cup", TranscodeParams(codec="av1", width=320, height=240))

Input: ``<dataset>/video/episode_XXXXX.mp4`` at the resolved commit (the generator's and ingest's
layout). Output: ``<dataset>/transcoded/<codec>-<W>x<H>/video/episode_XXXXX.mp4``, beside the raw
videos, which are never written. One task per video: read it at its physical address through the
accelerator (checked against its sha256), decode it (PyAV, one thread), scale every frame to
W x H (swscale's area filter with its bit-exact flags; the aspect ratio is the caller's to keep),
and encode it with the codec's encoder, every frame kept at its index over the source's frame
rate, so frame counts and times stay those of the source. The result is staged as
``s3://umi-processed/staging/transcode/<params hash>/<source sha256>.mp4`` and reused by any later
run with the same source content and parameters; the driver commits all videos as one commit
(commit.py), and a re-run at the same inputs commits nothing.

Encoders (whatever this machine's PyAV has; ``av.codecs_available``): H.264 is libx264 (crf 23,
preset veryfast, no B-frames, a keyframe every 2 frames as LeRobot's videos, one thread,
bit-exact: the same input gives the same bytes); AV1 is libsvtav1 (crf 30, preset 12, lerobot's
default encoder), else libaom-av1 (crf 30, cpu-used 8). A codec with no encoder in this build is
one line naming the encoders it does have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Collection
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.video.reformatter import Interpolation

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.ml.lerobot_export import require_clean_branch
from robolake.processing.commit import already_committed, commit_outputs
from robolake.processing.engine import EngineOptions
from robolake.processing.errors import TaskFailedError
from robolake.processing.frames import STAGING_BUCKET, get_staged_bytes, put_staged, staged_keys
from robolake.processing.inputs import InputObject, Source, params_hash, read_input, resolve_source, target_branch
from robolake.processing.jobs import (
    JobResult,
    ProgressFn,
    StatusFn,
    Ticker,
    _noop,
    commit_metadata,
    run_tasks,
    work_dir,
)
from robolake.storage.s3 import S3Target
from robolake.umi.errors import DatasetFormatError
from robolake.umi.naming import split_episode_file
from robolake.umi.video import open_encoder
from robolake.versioning import LakeFSClient, NotFoundError
from robolake.versioning.dataset import normalize_prefix

JOB = "transcode"
STAGING_PREFIX = "staging/transcode"
FORMAT_VERSION = 1
ENCODERS: dict[str, tuple[str, ...]] = {"h264": ("libx264",), "av1": ("libsvtav1", "libaom-av1")}
ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "23", "preset": "veryfast", "bf": "0", "g": "2", "threads": "1"},
    "libsvtav1": {"crf": "30", "preset": "12", "g": "2"},
    "libaom-av1": {"crf": "30", "cpu-used": "8", "g": "2", "threads": "1"},
}
_KNOWN = ("libx264", "libopenh264", "libx265", "libsvtav1", "libaom-av1", "librav1e", "libvpx-vp9", "mpeg4")
_SIZE_RE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_SCALE = Interpolation.AREA | Interpolation.BITEXACT | Interpolation.ACCURATE_RND


def parse_size(text: str) -> tuple[int, int]:
    """``"320x240"`` -> (320, 240); ConfigError naming the value otherwise."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise ConfigError(f"--size {text!r} is not WIDTHxHEIGHT in pixels, e.g. 320x240")
    return int(match.group(1)), int(match.group(2))


def video_encoders(available: Collection[str]) -> list[str]:
    """The video encoders of this build among those robolake knows, for messages."""
    found = []
    for name in _KNOWN:
        if name in available:
            try:
                if av.Codec(name, "w").type == "video":
                    found.append(name)
            except (av.FFmpegError, ValueError):
                continue
    return found


def pick_encoder(codec: str, available: Collection[str]) -> str:
    """The first of the codec's encoders in `available`; ConfigError naming the ones there are."""
    if codec not in ENCODERS:
        raise ConfigError(f"--codec {codec!r} is not one of {sorted(ENCODERS)}")
    for name in ENCODERS[codec]:
        if name in available:
            return name
    have = ", ".join(video_encoders(available)) or "none robolake knows"
    others = [c for c, names in ENCODERS.items() if c != codec and any(n in available for n in names)]
    instead = f"use --codec {others[0]}, or " if others else ""
    raise ConfigError(
        f"--codec {codec}: this PyAV build ({av.__version__}) has none of its encoders ({', '.join(ENCODERS[codec])}); "
        f"its video encoders: {have}. {instead}install PyAV's own wheel (pip install 'av>=15'), which bundles them"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class TranscodeParams:
    codec: str = "h264"
    width: int = 320
    height: int = 240

    def check(self) -> None:
        pick_encoder(self.codec, av.codecs_available)
        for side, value in (("width", self.width), ("height", self.height)):
            if not 16 <= value <= 8192 or value % 2:
                raise ConfigError(
                    f"--size {self.width}x{self.height}: the {side} {value} must be even and from 16 to 8192 "
                    "(yuv420p video halves both sides for colour)"
                )

    @property
    def encoder(self) -> str:
        return pick_encoder(self.codec, av.codecs_available)

    @property
    def folder(self) -> str:
        return f"{self.codec}-{self.width}x{self.height}"

    def as_dict(self) -> dict[str, Any]:
        encoder = self.encoder
        return {
            "format_version": FORMAT_VERSION, "codec": self.codec, "width": self.width, "height": self.height,
            "encoder": encoder, "options": ENCODER_OPTIONS[encoder], "scale": "area", "pix_fmt": "yuv420p",
        }  # fmt: skip


@dataclasses.dataclass(frozen=True)
class VideoTask:
    index: int
    video: InputObject
    params: TranscodeParams
    target: S3Target
    staged_key: str


@dataclasses.dataclass(frozen=True)
class VideoResult:
    index: int
    frames: int
    staged_bytes: int


def transcode_file(src: Path, dest: Path, params: TranscodeParams, shown_as: str) -> int:
    """Every frame of the video at `src`, scaled and encoded into `dest`; the number of frames."""
    encoder = params.encoder
    count = 0
    try:
        with av.open(str(src), mode="r") as inp:
            if not inp.streams.video:
                raise DatasetFormatError(shown_as, "has no video stream")
            stream = inp.streams.video[0]
            stream.thread_count = 1
            rate = Fraction(stream.average_rate or stream.guessed_rate or 30)
            with av.open(str(dest), mode="w", format="mp4", options={"fflags": "+bitexact"}) as out:
                enc = out.add_stream(encoder, rate=rate, options=dict(ENCODER_OPTIONS[encoder]))
                if not isinstance(enc, av.video.stream.VideoStream):
                    raise RobolakeError(f"{encoder} is not a video encoder")
                enc.width, enc.height, enc.pix_fmt, enc.time_base = params.width, params.height, "yuv420p", 1 / rate
                enc.codec_context.flags |= av.codec.context.Flags.bitexact
                open_encoder(enc)
                for frame in inp.decode(stream):
                    scaled = frame.reformat(params.width, params.height, "yuv420p", interpolation=_SCALE)
                    scaled.pts, scaled.time_base = count, 1 / rate
                    out.mux(enc.encode(scaled))
                    count += 1
                out.mux(enc.encode(None))
    except av.FFmpegError as exc:
        raise DatasetFormatError(
            shown_as, f"does not transcode ({exc})", "the video is damaged; upload it again"
        ) from exc
    if not count:
        raise DatasetFormatError(shown_as, "has no frames")
    return count


def transcode_video(task: VideoTask) -> VideoResult:
    """Run on a worker: read one video at its commit, transcode it, stage the result."""
    try:
        with tempfile.TemporaryDirectory(prefix="robolake-transcode-") as tmp:
            src, dest = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
            read_input(task.target, task.video, src)
            frames = transcode_file(src, dest, task.params, task.video.path)
            body = dest.read_bytes()
        put_staged(task.target, task.staged_key, body)
    except RobolakeError as exc:
        raise TaskFailedError(f"video {task.video.path!r}: {exc}", exc.exit_code) from None
    return VideoResult(task.index, frames, len(body))


def list_videos(client: LakeFSClient, source: Source, dataset: str) -> list[tuple[int, InputObject]]:
    """(index, object) of every ``video/episode_XXXXX.mp4`` under `dataset` at the source commit."""
    prefix = normalize_prefix(dataset) + "video/"
    found = []
    for stat in client.list_objects(source.repo, source.commit_id, prefix):
        named = split_episode_file(stat.path[len(prefix) :])
        if named is not None and named[1] == "mp4":
            found.append((named[0], InputObject.from_stat(stat)))
    if not found:
        raise NotFoundError(
            f"dataset path {dataset!r} holds no videos at {source.where} (ref {source.ref!r}): expected "
            "video/episode_XXXXX.mp4 under it (as `robolake generate` writes them); check the path",
            status=404,
        )
    return sorted(found, key=lambda item: item[0])


@dataclasses.dataclass(frozen=True)
class _Plan:
    source: Source
    branch: str
    out: str  # the output folder, ends with "/"
    digest: str
    paths: dict[str, VideoTask]  # lake path -> its task
    key: str


def _plan(settings: Settings, client: LakeFSClient, repo: str, ref: str, dataset: str, to_branch: str | None,
          params: TranscodeParams) -> _Plan:  # fmt: skip
    source = resolve_source(client, repo, ref)
    branch = target_branch(client, repo, ref, to_branch)
    require_clean_branch(client, repo, branch, "processing")
    videos = list_videos(client, source, dataset)
    out = f"{normalize_prefix(dataset)}transcoded/{params.folder}/video/"
    digest, target = params_hash(params.as_dict()), S3Target.from_settings(settings)
    tasks = [VideoTask(i, v, params, target, f"{STAGING_PREFIX}/{digest}/{_sha(v)}.mp4") for i, v in videos]
    text = json.dumps({"job": JOB, "params": digest, "out": out, "inputs": [t.video.identity for t in tasks]})
    paths = {f"{out}episode_{t.index:05d}.mp4": t for t in tasks}
    return _Plan(source, branch, out, digest, paths, hashlib.sha256(text.encode()).hexdigest()[:32])


def run_transcode(
    settings: Settings,
    ref: str,
    dataset: str,
    params: TranscodeParams,
    *,
    to_branch: str | None = None,
    engine: EngineOptions | None = None,
    repo: str | None = None,
    progress: ProgressFn = _noop,
    status: StatusFn = _noop,
) -> JobResult:
    """Every raw video under `dataset` at `ref`, transcoded beside the raw ones, in one commit on the branch."""
    started = time.monotonic()
    engine = engine or EngineOptions()
    params.check()
    engine.check()
    repo = repo or settings.lakefs_repo
    with LakeFSClient.from_settings(settings) as client:
        plan = _plan(settings, client, repo, ref, dataset, to_branch, params)
        tasks = list(plan.paths.values())
        common: dict[str, Any] = {
            "job": JOB, "repo": repo, "ref": ref, "source_commit": plan.source.commit_id, "source_path": dataset,
            "branch": plan.branch, "output_path": plan.out, "tasks_total": len(tasks),
        }  # fmt: skip
        if already_committed(client, repo, plan.branch, dict.fromkeys(plan.paths, plan.key)):
            status(f"{plan.out} on {plan.branch!r} already holds this job's output (job {plan.key[:12]})")
            return JobResult(
                **common, commit_id=client.get_commit(repo, plan.branch).id, up_to_date=True, tasks_run=0,
                tasks_reused=len(tasks), frames=0, frames_processed=0, task_seconds=0.0,
                seconds=round(time.monotonic() - started, 3), engine="none (up to date)", dashboard=None,
            )  # fmt: skip
        staged = staged_keys(tasks[0].target, plan.digest, STAGING_PREFIX)
        todo = [t for t in tasks if t.staged_key not in staged]
        status(f"{len(tasks)} videos at {plan.source.where} (ref {ref!r}); {len(tasks) - len(todo)} already staged")
        ticker = Ticker(len(todo), progress)
        engine_text, dashboard = run_tasks(
            engine, JOB, transcode_video, todo, index=lambda t: t.index,
            tick=lambda _t, r: ticker.tick(r.frames), ticker=ticker, status=status,
        )  # fmt: skip
        commit_id, up_to_date, frames = _assemble_and_commit(settings, client, plan, params, dataset, status)
    return JobResult(
        **common, commit_id=commit_id, up_to_date=up_to_date, tasks_run=len(todo),
        tasks_reused=len(tasks) - len(todo), frames=frames, frames_processed=ticker.frames,
        task_seconds=round(ticker.elapsed_s, 3) if todo else 0.0, seconds=round(time.monotonic() - started, 3),
        engine=engine_text, dashboard=dashboard, details={"files": sorted(plan.paths), "encoder": params.encoder},
    )  # fmt: skip


def _assemble_and_commit(
    settings: Settings, client: LakeFSClient, plan: _Plan, params: TranscodeParams, dataset: str, status: StatusFn
) -> tuple[str, bool, int]:
    """The staged videos, each checked to decode to its frames, committed; (commit, up to date, frames)."""
    repo, frames = plan.source.repo, 0
    with tempfile.TemporaryDirectory(prefix="transcode-", dir=work_dir(settings)) as tmp:
        files = {}
        for path, task in plan.paths.items():
            local = files[path] = Path(tmp) / Path(path).name
            local.write_bytes(get_staged_bytes(task.target, task.staged_key))
            frames += count_frames(local, f"s3://{STAGING_BUCKET}/{task.staged_key}")
        old = [o.path for o in client.list_objects(repo, plan.branch, plan.out)]
        meta = {
            **commit_metadata(JOB, plan.source, dataset, params.as_dict()), "output_path": plan.out,
            "videos": len(files), "frames": frames,
        }  # fmt: skip
        message = (
            f"process transcode: {len(files)} videos of {dataset!r} at {plan.source.commit_id[:12]} to {params.folder}"
        )
        status(f"committing {len(files)} videos under {plan.out} to {plan.branch!r}")
        done = commit_outputs(
            client, repo, plan.branch, files, job_key=plan.key, message=message, metadata=meta, remove=old
        )
    return done.commit_id, done.up_to_date, frames


def count_frames(path: Path, shown_as: str) -> int:
    """The video packets of an MP4 (one a frame for the encoders here), read without decoding."""
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.video[0]
            return sum(1 for p in container.demux(stream) if p.pts is not None)
    except (av.FFmpegError, IndexError) as exc:
        raise DatasetFormatError(shown_as, f"is not a readable video ({exc})", "run the job again") from exc


def _sha(video: InputObject) -> str:
    return video.sha256 or hashlib.sha256(video.identity.encode()).hexdigest()
