"""What every job shares: its options, its progress reports, its result, and the commit metadata."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from robolake import __version__
from robolake.config import Settings
from robolake.processing.engine import Engine, EngineOptions, dask_versions, open_engine
from robolake.processing.inputs import Source


@dataclasses.dataclass(frozen=True)
class TaskProgress:
    """After each finished task: tasks done of total, frames made so far, seconds since the tasks began."""

    done: int
    total: int
    frames: int
    elapsed_s: float

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressFn = Callable[[TaskProgress], None]
StatusFn = Callable[[str], None]
RUNNING_ON_SAYS, DASHBOARD_SAYS = " tasks on ", "Dask dashboard: "  # what run_tasks says (the job board reads it)


def _noop(*_: Any) -> None:
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobResult:
    job: str
    repo: str
    ref: str
    source_commit: str
    source_path: str
    branch: str
    output_path: str
    commit_id: str
    up_to_date: bool  # the branch already held this job's output: no commit was made
    tasks_total: int
    tasks_run: int
    tasks_reused: int  # staged by an earlier run (same inputs and parameters) and not redone
    frames: int  # frames (or rows) in the output
    frames_processed: int  # frames the tasks of this run made
    task_seconds: float
    seconds: float
    engine: str
    dashboard: str | None
    output_sha256: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames_processed / self.task_seconds if self.task_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "frames_per_s": round(self.frames_per_s, 2)}


def commit_metadata(job: str, source: Source, source_path: str, parameters: Mapping[str, Any]) -> dict[str, str]:
    """What a job's commit says about itself: job, source, parameters and the software that ran it."""
    versions = dask_versions()
    return {
        "job": job,
        "processed_by": f"robolake process {job}",
        "source_repo": source.repo,
        "source_ref": source.ref,
        "source_commit": source.commit_id,
        "source_path": source_path,
        "parameters": json.dumps(dict(parameters), sort_keys=True),
        "robolake_version": __version__,
        "dask_version": versions.get("dask", "not installed"),
        "distributed_version": versions.get("distributed", "not installed"),
    }


def work_dir(settings: Settings) -> Path:
    """Where a job assembles its outputs (beside robolake's other caches, not in the current folder)."""
    path = settings.cache_dir / "process"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Ticker:
    """Counts finished tasks and frames and reports them."""

    def __init__(self, total: int, progress: ProgressFn) -> None:
        self.total, self.progress = total, progress
        self.done = self.frames = self.read_bytes = 0
        self.read_s = 0.0  # summed over tasks: time spent reading the inputs measured (videos)
        self.started = time.monotonic()

    def start(self) -> None:
        self.started = time.monotonic()
        self.progress(TaskProgress(0, self.total, 0, 0.0))

    def tick(self, frames: int, read_s: float = 0.0, read_bytes: int = 0) -> None:
        self.done += 1
        self.frames += frames
        self.read_s += read_s
        self.read_bytes += read_bytes
        self.progress(TaskProgress(self.done, self.total, self.frames, self.elapsed_s))

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def describe(engine: Engine | None) -> tuple[str, str | None]:
    return (engine.description, engine.dashboard) if engine is not None else ("none (nothing to run)", None)


T = TypeVar("T")
R = TypeVar("R")


def run_tasks(
    engine: EngineOptions,
    job: str,
    func: Callable[[T], R],
    todo: list[T],
    *,
    index: Callable[[T], int],
    tick: Callable[[T, R], None],
    ticker: Ticker,
    status: StatusFn,
) -> tuple[str, str | None]:
    """Run `func` over the tasks still to do; the engine's description and dashboard link."""
    if not todo:
        return describe(None)
    with open_engine(engine) as used:
        status(f"running {len(todo)}{RUNNING_ON_SAYS}{used.description}")
        if used.dashboard:
            status(f"{DASHBOARD_SAYS}{used.dashboard}")
        token = uuid.uuid4().hex[:8]  # task keys unique per run: a scheduler may still hold an older run's
        ticker.start()
        for task, result in used.map(func, todo, lambda t: f"{job}-{index(t):05d}-{token}"):
            tick(task, result)
        return describe(used)
