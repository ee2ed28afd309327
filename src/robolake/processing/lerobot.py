"""`process lerobot`: a replay buffer at a ref -> a LeRobot v3.0 dataset, one task per episode, one commit.

    result = run_lerobot(settings, "cup-processed", "datasets/cup/processed/", params=LeRobotParams(fps=20))

The same dataset as ``robolake export lerobot`` (robolake.ml.lerobot_export) makes from the same
buffer: the same files, parquet tables, info.json, tasks and stats.json. Only the MP4 bytes differ:

1. The driver reads the buffer's directory and low-dim arrays once (robolake.ml.lerobot_export),
   and plans every episode's output frames (``resample_steps``).
2. One task per episode (lerobot_parts.py) reads and decodes its frames and encodes them, per
   camera, as one MP4 segment, with its image statistics; staged in ``umi-processed`` under the
   frames' content and the parameters. Parts already staged are not redone.
3. The driver writes the folder with robolake.ingest.lerobot_write.LeRobotWriter (rows, per-episode
   stats, lerobot's aggregation of them, meta/), appending each episode's segment to the camera's
   current video file by remuxing its packets at the episode's ``from_timestamp`` (no re-encoding;
   what lerobot's own ``concatenate_video_files`` does when it grows a video file, and how its
   recorder builds one: an encoder per episode). The folder is checked (``check_folder``) and
   committed as one squash-merged commit (commit.py), objects of an older output under the same
   path removed in that commit.

Video: ``export lerobot`` runs one encoder across all episodes of a file; here every episode starts
a fresh encoder (it runs in another process), so every episode starts on a keyframe and the
encoder's rate control restarts; the decoded frames differ from the serial export's by codec noise
only (tests/e2e/test_process_lerobot.py bounds it), frame counts and timestamps are the same. A
video file is rolled over at lerobot's 200 MB like the export's, counted on the segments' sizes,
so on very large datasets a rollover may fall one episode apart from the export's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tempfile
import time
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.ingest.lerobot import INFO_PATH, VIDEO_PATH, check_folder
from robolake.ingest.lerobot_write import FileRotation, LeRobotWriter, Stats
from robolake.keys import check_prefix
from robolake.ml.dataset import Located, range_source, resolve
from robolake.ml.lerobot_export import (
    BufferSource,
    buffer_features,
    episode_columns,
    open_source,
    require_clean_branch,
    resample_steps,
)
from robolake.ml.remote import RemoteZip
from robolake.processing.commit import Committed, already_committed, commit_outputs
from robolake.processing.engine import EngineOptions
from robolake.processing.frames import get_staged_bytes, staged_keys
from robolake.processing.inputs import Source, params_hash, target_branch
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
from robolake.processing.lerobot_parts import (
    STAGING_PREFIX,
    LeRobotParams,
    Part,
    PartTask,
    camera_parts,
    encode_part,
    part_identity,
    unpack_part,
)
from robolake.storage.s3 import S3Target
from robolake.umi.errors import DatasetFormatError
from robolake.versioning import LakeFSClient
from robolake.versioning.dataset import normalize_prefix

JOB = "lerobot"


class _Remuxed:
    """One output MP4 that episodes' segments are appended to, packets copied, timestamps shifted."""

    def __init__(self, path: Path, fps: int, template: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.frames, self.bytes = path, fps, 0, 0
        self.container = av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"})
        with av.open(_memory(template), mode="r") as first:
            self.stream = self.container.add_stream_from_template(first.streams.video[0])
        self.stream.time_base = Fraction(1, fps)

    def append(self, segment: bytes, length: int, where: str) -> None:
        with av.open(_memory(segment), mode="r") as src:
            stream = src.streams.video[0]
            count = 0
            for packet in src.demux(stream):
                if packet.pts is None or packet.time_base is None:
                    continue  # the demuxer's end-of-stream packet
                frame = round(float(packet.pts * packet.time_base * self.fps))
                packet.pts = packet.dts = self.frames + frame
                packet.duration = 1
                packet.time_base = Fraction(1, self.fps)
                packet.stream = self.stream
                self.bytes += packet.size
                self.container.mux(packet)
                count += 1
        if count != length:
            raise DatasetFormatError(where, f"a staged segment holds {count} frames, the episode {length}")
        self.frames += length

    def close(self) -> None:
        self.container.close()


def _memory(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


class SegmentWriter(LeRobotWriter):
    """A LeRobotWriter whose videos come as encoded per-episode segments (with their stats), not frames."""

    def __init__(self, root: Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self._outputs: dict[str, _Remuxed] = {}
        self._part: Part | None = None

    def add_part(self, columns: Mapping[str, npt.NDArray[Any]], part: Part, task: str) -> None:
        missing = sorted(set(self.video_keys) - set(part.videos))
        if missing:
            raise DatasetFormatError(str(self.root), f"a staged part lacks the videos {missing}", "run the job again")
        self._part = part
        try:
            self.add_episode(columns, {k: () for k in self.video_keys}, task)
        finally:
            self._part = None

    def _write_video(
        self, key: str, frames: Iterable[npt.NDArray[np.uint8]], length: int, stats: dict[str, Stats]
    ) -> dict[str, Any]:
        assert self._part is not None  # only add_part calls add_episode here
        rotation = self._video_rotation[key]
        current = self._outputs.get(key)
        if current is not None and current.bytes >= rotation.limit:
            current.close()
            rotation.advance()
            current = None
        segment = self._part.videos[key]
        if current is None:
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=rotation.chunk, file_index=rotation.file)
            current = self._outputs[key] = _Remuxed(path, self.fps, segment)
        first = current.frames
        current.append(segment, length, f"{key} of episode {len(self.episode_rows)}")
        stats[key] = self._part.stats[key]
        return _video_row(key, rotation, first, length, self.fps)

    def finish(self, robot_type: str | None = None) -> dict[str, Any]:
        for output in self._outputs.values():
            output.close()
        return super().finish(robot_type)


def _video_row(key: str, rotation: FileRotation, first: int, length: int, fps: int) -> dict[str, Any]:
    return {
        f"videos/{key}/chunk_index": rotation.chunk,
        f"videos/{key}/file_index": rotation.file,
        f"videos/{key}/from_timestamp": first / fps,
        f"videos/{key}/to_timestamp": (first + length) / fps,
    }


# ---- the job -----------------------------------------------------------------------------------


def default_output(buffer_path: str) -> str:
    """``<dataset>/processed/lerobot/`` beside ``<dataset>/processed/replay_buffer/``; else ``<folder>/lerobot/``."""
    folder = PurePosixPath(buffer_path).parent
    base = folder.parent if folder.name == "replay_buffer" else folder
    return normalize_prefix(f"{base}/lerobot" if str(base) not in ("", ".") else "lerobot")


@dataclasses.dataclass(frozen=True)
class _Plan:
    found: Located
    branch: str
    output: str  # a folder, ends with "/"
    params: LeRobotParams
    src: BufferSource
    steps: list[npt.NDArray[np.int64]]
    tasks: list[PartTask]
    key: str
    task_text: str


def _plan(settings: Settings, client: LakeFSClient, repo: str, ref: str, dataset: str, to_branch: str | None,
          out_path: str | None, params: LeRobotParams) -> _Plan:  # fmt: skip
    found = resolve(client, repo, ref, dataset)
    branch = target_branch(client, repo, ref, to_branch)
    require_clean_branch(client, repo, branch, "processing")
    output = normalize_prefix(check_prefix(out_path, "--out-path")) if out_path else default_output(found.path)
    if not output:
        raise ConfigError("--out-path must name a folder in the repository, not its root")
    source = range_source(settings, found, "accelerator")
    zf = RemoteZip(source, found.stat.size_bytes, found.where)
    src = open_source(zf, found.where)
    starts = np.concatenate([[0], src.ends[:-1]])
    steps = [
        s + resample_steps(int(e - s), params.fps) for s, e in zip(starts.tolist(), src.ends.tolist(), strict=True)
    ]
    digest, target = params_hash(params.task_params()), S3Target.from_settings(settings)
    tasks = []
    for index, rows in enumerate(steps):
        cameras = camera_parts(zf, src.cameras, rows)
        key = f"{STAGING_PREFIX}/{digest}/{part_identity(rows, cameras)}.npz"
        tasks.append(PartTask(index, source, found.stat.size_bytes, found.where, tuple(rows.tolist()), cameras,
                              params.fps, params.video(), target, key))  # fmt: skip
    identity = found.stat.metadata.get("sha256") or f"{found.stat.checksum}:{found.stat.size_bytes}"
    text = json.dumps({"job": JOB, "params": params.as_dict(), "buffer": identity, "output": output})
    task_text = params.task or PurePosixPath(found.path).name.removesuffix(".zarr.zip")
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    return _Plan(found, branch, output, params, src, steps, tasks, key, task_text)


def run_lerobot(
    settings: Settings,
    ref: str,
    dataset: str,
    *,
    to_branch: str | None = None,
    out_path: str | None = None,
    params: LeRobotParams | None = None,
    engine: EngineOptions | None = None,
    repo: str | None = None,
    reuse: bool = True,
    progress: ProgressFn = _noop,
    status: StatusFn = _noop,
) -> JobResult:
    """The replay buffer at `dataset` (a ``*.zarr.zip``, or a folder holding one) at `ref` as LeRobot, one commit."""
    started = time.monotonic()
    params, engine = params or LeRobotParams(), engine or EngineOptions()
    params.check()
    engine.check()
    repo = repo or settings.lakefs_repo
    with LakeFSClient.from_settings(settings) as client:
        plan = _plan(settings, client, repo, ref, dataset, to_branch, out_path, params)
        frames = sum(len(s) for s in plan.steps)
        common = _common(plan, frames)
        if already_committed(client, repo, plan.branch, {plan.output + INFO_PATH: plan.key}):
            status(
                f"{plan.output} on {plan.branch!r} already holds this job's output (job {plan.key[:12]}): nothing to do"
            )
            return JobResult(
                **common, commit_id=client.get_commit(repo, plan.branch).id, up_to_date=True, tasks_run=0,
                tasks_reused=len(plan.tasks), frames_processed=0, task_seconds=0.0,
                seconds=round(time.monotonic() - started, 3), engine="none (up to date)", dashboard=None,
            )  # fmt: skip
        target = plan.tasks[0].target
        staged = staged_keys(target, params_hash(params.task_params()), STAGING_PREFIX) if reuse else set()
        todo = [t for t in plan.tasks if t.staged_key not in staged]
        status(f"{len(plan.tasks)} episodes in {plan.found.where}; {len(plan.tasks) - len(todo)} already staged")
        ticker = Ticker(len(todo), progress)
        engine_text, dashboard = run_tasks(
            engine, JOB, encode_part, todo, index=lambda t: t.index,
            tick=lambda _t, r: ticker.tick(r.frames), ticker=ticker, status=status,
        )  # fmt: skip
        done, sha = _assemble_and_commit(settings, client, plan, status)
    return JobResult(
        **common, commit_id=done.commit_id, up_to_date=done.up_to_date, tasks_run=len(todo),
        tasks_reused=len(plan.tasks) - len(todo), frames_processed=ticker.frames,
        task_seconds=round(ticker.elapsed_s, 3) if todo else 0.0, seconds=round(time.monotonic() - started, 3),
        engine=engine_text, dashboard=dashboard, output_sha256=sha,
        details={"files": list(done.paths), "episodes": len(plan.tasks), "fps": params.fps, "codec": params.codec},
    )  # fmt: skip


def _common(plan: _Plan, frames: int) -> dict[str, Any]:
    found = plan.found
    return {
        "job": JOB, "repo": found.repo, "ref": found.ref, "source_commit": found.commit_id, "source_path": found.path,
        "branch": plan.branch, "output_path": plan.output, "tasks_total": len(plan.tasks), "frames": frames,
    }  # fmt: skip


def assemble(root: Path, plan: _Plan) -> dict[str, Any]:
    """The staged parts and the driver's rows, as one LeRobot folder at `root`, checked; its info.json."""
    writer = SegmentWriter(
        root, fps=plan.params.fps, features=buffer_features(plan.src), video=plan.params.video()
    )  # fmt: skip
    starts = np.concatenate([[0], plan.src.ends[:-1]]).tolist()
    for task, rows, start in zip(plan.tasks, plan.steps, starts, strict=True):
        columns = episode_columns(plan.src, start, rows - start, plan.params.action)
        where = f"s3://umi-processed/{task.staged_key}"
        writer.add_part(columns, unpack_part(get_staged_bytes(task.target, task.staged_key), where), plan.task_text)
    info = writer.finish(plan.params.robot_type)
    check_folder(root)
    return info


def _assemble_and_commit(
    settings: Settings, client: LakeFSClient, plan: _Plan, status: StatusFn
) -> tuple[Committed, str]:
    found = plan.found
    with tempfile.TemporaryDirectory(prefix="lerobot-", dir=work_dir(settings)) as tmp:
        root = Path(tmp) / "dataset"
        status(f"assembling {len(plan.tasks)} episodes into {plan.output}")
        assemble(root, plan)
        files = {plan.output + p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
        listing = "\n".join(f"{path} {hashlib.sha256(p.read_bytes()).hexdigest()}" for path, p in files.items())
        old = [o.path for o in client.list_objects(found.repo, plan.branch, plan.output)]
        source = Source(found.repo, found.ref, found.commit_id)
        meta = {
            **commit_metadata(JOB, source, found.path, plan.params.as_dict()), "output_path": plan.output,
            "format": "lerobot", "codebase_version": "v3.0", "episodes": len(plan.tasks),
            "frames": sum(len(s) for s in plan.steps), "fps": plan.params.fps, "video_codec": plan.params.codec,
        }  # fmt: skip
        status(f"committing {len(files)} files under {plan.output} to {plan.branch!r}")
        message = f"process lerobot: {found.path} at {found.commit_id[:12]} as LeRobot v3.0 ({plan.params.fps} fps)"
        done = commit_outputs(
            client, found.repo, plan.branch, files, job_key=plan.key, message=message, metadata=meta, remove=old
        )
    return done, hashlib.sha256(listing.encode()).hexdigest()
