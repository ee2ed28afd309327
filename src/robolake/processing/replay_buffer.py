"""`process replay-buffer`: raw episodes at a ref -> UMI's ``dataset.zarr.zip``, committed once.

    result = run_replay_buffer(settings, "main", "datasets/cup", to_branch="cup-processed")

1. Resolve the ref to a commit; find the raw episodes under the dataset path (inputs.py); check
   the target branch exists and holds no uncommitted changes, before any work.
2. One task per episode (frames.py): decode, crop, resize, mask, JPEG XL; its result staged in
   ``umi-processed`` under a key made of the episode's content and the parameters. Episodes
   already staged under their key (an earlier run, interrupted or not) are not redone.
3. The driver assembles the staged episodes in index order into one replay buffer
   (robolake.umi.ReplayBufferWriter: UMI's bytes, what UMI's loader opens), checks it, and
   commits it as one squash-merged commit (commit.py). When the branch already holds the output of
   this same job (same inputs, parameters, output path), nothing is run or committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.keys import check_prefix
from robolake.ml.lerobot_export import require_clean_branch
from robolake.processing.commit import Committed, already_committed, commit_outputs
from robolake.processing.engine import EngineOptions
from robolake.processing.frames import (
    EpisodeTask,
    ReplayBufferParams,
    get_staged,
    process_episode,
    staged_key,
    staged_keys,
)
from robolake.processing.inputs import (
    RawEpisode,
    Source,
    list_raw_episodes,
    params_hash,
    resolve_source,
    target_branch,
)
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
from robolake.umi.replay_buffer import ReplayBufferWriter, validate_replay_buffer
from robolake.versioning import LakeFSClient
from robolake.versioning.dataset import hash_file, normalize_prefix

JOB = "replay-buffer"
DEFAULT_OUTPUT = "processed/replay_buffer/dataset.zarr.zip"
READ_FROM = ("auto", "accelerator", "nodes")
# "auto": a video above this size is read from a node. The accelerator caches objects up to 1 MiB
# (its default max_object_bytes) and passes larger ones through, one hop more than a node: measured
# with `bench process --compare-read-from`, see the package docstring.
NODES_ABOVE_BYTES = 1 << 20


def video_targets(settings: Settings, read_from: str) -> list[S3Target | None]:
    """The MinIO nodes' targets (tasks take them in turn), or [None] (the accelerator) for "accelerator"."""
    if read_from not in READ_FROM:
        raise ConfigError(f"--read-from {read_from!r} is not one of {list(READ_FROM)}")
    if read_from == "accelerator":
        return [None]
    return [S3Target.from_settings(settings, endpoint) for endpoint in settings.minio_endpoints]


def video_target(episode: RawEpisode, nodes: list[S3Target | None], read_from: str, turn: int) -> S3Target | None:
    """Where one task reads its video: None is the accelerator (the task's own target)."""
    if read_from == "auto" and episode.video.size_bytes <= NODES_ABOVE_BYTES:
        return None
    return nodes[turn % len(nodes)]


def default_output(dataset: str) -> str:
    """``<dataset>/processed/replay_buffer/dataset.zarr.zip``: beside the raw files, never over them."""
    return normalize_prefix(dataset) + DEFAULT_OUTPUT


def check_output(path: str) -> str:
    checked = check_prefix(path, "--out-path").strip("/")
    if not checked.endswith(".zarr.zip"):
        raise ConfigError(f"--out-path {path!r} must name a *.zarr.zip file (UMI's loader opens only those)")
    return checked


def job_key(episodes: list[RawEpisode], digest: str, output: str) -> str:
    """The job's identity: its inputs' contents, its parameters and where it writes."""
    text = json.dumps({"job": JOB, "params": digest, "output": output, "inputs": [e.identity for e in episodes]})
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A job decided before any work: source, target branch, episodes, parameters and identity."""

    source: Source
    dataset: str
    branch: str
    output: str
    params: ReplayBufferParams
    episodes: list[RawEpisode]
    digest: str
    key: str

    def result(self, **fields: Any) -> JobResult:
        return JobResult(
            job=JOB,
            repo=self.source.repo,
            ref=self.source.ref,
            source_commit=self.source.commit_id,
            source_path=self.dataset,
            branch=self.branch,
            output_path=self.output,
            **fields,
        )


def _plan(
    client: LakeFSClient,
    repo: str,
    ref: str,
    dataset: str,
    to_branch: str | None,
    output: str,
    params: ReplayBufferParams,
) -> _Plan:
    source = resolve_source(client, repo, ref)
    branch = target_branch(client, repo, ref, to_branch)
    require_clean_branch(client, repo, branch, "processing")
    episodes = list_raw_episodes(client, source, dataset)
    digest = params_hash(params.as_dict())
    return _Plan(source, dataset, branch, output, params, episodes, digest, job_key(episodes, digest, output))


def run_replay_buffer(
    settings: Settings,
    ref: str,
    dataset: str,
    *,
    to_branch: str | None = None,
    out_path: str | None = None,
    params: ReplayBufferParams | None = None,
    engine: EngineOptions | None = None,
    repo: str | None = None,
    reuse: bool = True,
    read_from: str = "auto",
    progress: ProgressFn = _noop,
    status: StatusFn = _noop,
) -> JobResult:
    """Raw episodes under `dataset` at `ref` as a UMI replay buffer on a branch, in one commit.

    `read_from`: where tasks read the videos ("accelerator"; "nodes": straight from the MinIO
    nodes, episode i from node i mod 3; "auto", the default: from a node when the video is over
    1 MiB, else through the accelerator, which caches it). The output is the same.

    `reuse=False` processes every episode again, replacing what is staged (the same bytes, unless
    the software changed); the commit is still skipped when the branch holds this job's output.
    """
    started = time.monotonic()
    engine = engine or EngineOptions()
    engine.check()
    videos = video_targets(settings, read_from)
    output = check_output(out_path) if out_path else default_output(dataset)
    with LakeFSClient.from_settings(settings) as client:
        plan = _plan(
            client, repo or settings.lakefs_repo, ref, dataset, to_branch, output, params or ReplayBufferParams()
        )
        if already_committed(client, plan.source.repo, plan.branch, {output: plan.key}):
            status(f"{output} on {plan.branch!r} already holds this job's output (job {plan.key[:12]}): nothing to do")
            return _up_to_date(client, plan, started)
        target = S3Target.from_settings(settings)
        tasks = [
            EpisodeTask(e, plan.params, target, staged_key(plan.digest, e), video_target(e, videos, read_from, i))
            for i, e in enumerate(plan.episodes)
        ]
        staged = staged_keys(target, plan.digest) if reuse else set()
        todo = [t for t in tasks if t.staged_key not in staged]
        status(f"{len(tasks)} episodes at {plan.source.where} (ref {ref!r}); {len(tasks) - len(todo)} already staged")
        ticker = Ticker(len(todo), progress)
        engine_text, dashboard = run_tasks(
            engine, JOB, process_episode, todo, index=lambda t: t.episode.index, ticker=ticker, status=status,
            tick=lambda t, r: ticker.tick(r.frames, r.video_read_s, t.episode.video.size_bytes),
        )  # fmt: skip
        done, frames, sha = _assemble_and_commit(settings, client, plan, tasks, status)
    return plan.result(
        commit_id=done.commit_id, up_to_date=done.up_to_date, tasks_total=len(tasks), tasks_run=len(todo),
        tasks_reused=len(tasks) - len(todo), frames=frames, frames_processed=ticker.frames,
        task_seconds=round(ticker.elapsed_s, 3) if todo else 0.0, seconds=round(time.monotonic() - started, 3),
        engine=engine_text, dashboard=dashboard, output_sha256=sha,
        details={"read_from": read_from, "video_read_s": round(ticker.read_s, 4), "video_bytes": ticker.read_bytes},
    )  # fmt: skip


def _up_to_date(client: LakeFSClient, plan: _Plan, started: float) -> JobResult:
    """The result of a run that found the branch already holding its output."""
    n = len(plan.episodes)
    return plan.result(
        commit_id=client.get_commit(plan.source.repo, plan.branch).id, up_to_date=True, tasks_total=n,
        tasks_run=0, tasks_reused=n, frames=0, frames_processed=0, task_seconds=0.0,
        seconds=round(time.monotonic() - started, 3), engine="none (up to date)", dashboard=None,
    )  # fmt: skip


def _assemble_and_commit(
    settings: Settings, client: LakeFSClient, plan: _Plan, tasks: list[EpisodeTask], status: StatusFn
) -> tuple[Committed, int, str]:
    target = tasks[0].target
    with tempfile.TemporaryDirectory(prefix="replay-buffer-", dir=work_dir(settings)) as tmp:
        status(f"assembling {len(tasks)} episodes into {plan.output}")
        zip_path, frames = _assemble(target, tasks, Path(tmp) / "dataset.zarr.zip")
        sha = hash_file(zip_path)[1]
        meta = {
            **commit_metadata(JOB, plan.source, plan.dataset, plan.params.as_dict()),
            "output_path": plan.output, "episodes": len(tasks), "frames": frames, "params_hash": plan.digest,
        }  # fmt: skip
        status(f"committing {plan.output} to {plan.branch!r}")
        message = f"process replay-buffer: {len(tasks)} episodes of {plan.dataset!r} at {plan.source.commit_id[:12]}"
        done = commit_outputs(
            client, plan.source.repo, plan.branch, {plan.output: zip_path}, job_key=plan.key, message=message,
            metadata=meta,
        )  # fmt: skip
    return done, frames, sha


def _assemble(target: S3Target, tasks: list[EpisodeTask], path: Path) -> tuple[Path, int]:
    """The staged episodes, in index order, as one replay buffer file; checked as UMI's rules say."""
    size = tasks[0].params.image_size
    with ReplayBufferWriter(path, image_size=(size, size)) as writer:
        for task in tasks:
            lowdim, chunks = get_staged(target, task.staged_key)
            writer.add_episode(lowdim, {"camera0_rgb": chunks})
        frames = writer.n_steps
    validate_replay_buffer(path)
    return path, frames
