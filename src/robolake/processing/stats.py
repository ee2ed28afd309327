"""`process stats`: per-feature statistics of a replay buffer's low-dim arrays, as LeRobot's stats.json.

    result = run_stats(settings, "main", "datasets/cup/processed/replay_buffer/", to_branch="main")

For every low-dim array of the buffer (``data/*`` except the cameras) one task reads the array
whole by byte range (robolake.ml.remote: its chunks are uncompressed, neighbours in the zip) and
computes, over all its steps, what LeRobot's ``stats.json`` holds per feature: ``min``, ``max``,
``mean``, ``std`` (population), ``count`` ([steps]), and the quantiles ``q01 q10 q50 q90 q99``
(robolake.ingest.lerobot_write.feature_stats, numpy's linear quantiles): vectors of the
feature's width, floats as JSON numbers. Exact over the whole array, not aggregated from
per-episode stats as LeRobot's writer does: a normaliser wants the dataset's own quantiles.

The file goes beside the buffer (``<folder>/stats.json``) in one commit on the target branch
(commit.py), and/or to a local file (``--out``). Its commit names the buffer's commit and checksum.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.ingest.lerobot_write import feature_stats
from robolake.keys import check_prefix
from robolake.ml.dataset import Located, range_source, resolve
from robolake.ml.lerobot_export import require_clean_branch
from robolake.ml.remote import RangeSource, RemoteZip, read_array
from robolake.processing.commit import Committed, already_committed, commit_outputs
from robolake.processing.engine import EngineOptions, open_engine
from robolake.processing.errors import TaskFailedError
from robolake.processing.inputs import Source, target_branch
from robolake.processing.jobs import JobResult, ProgressFn, StatusFn, Ticker, _noop, commit_metadata, describe, work_dir
from robolake.versioning import LakeFSClient

JOB = "stats"
FORMAT_VERSION = 1
_LOWDIM_RE = re.compile(r"data/([^/]+)/\.zarray")


@dataclasses.dataclass(frozen=True)
class StatsTask:
    source: RangeSource
    size_bytes: int
    where: str
    array: str  # "robot0_eef_pos"


def array_stats(task: StatsTask) -> tuple[str, dict[str, list[Any]], int]:
    """Run on a worker: (name, LeRobot-style stats of data/<name>, rows)."""
    try:
        zf = RemoteZip(task.source, task.size_bytes, task.where)
        values = read_array(zf, f"data/{task.array}")
    except Exception as exc:
        code = getattr(exc, "exit_code", 1)
        raise TaskFailedError(f"stats of data/{task.array} in {task.where}: {exc}", code) from None
    return task.array, {k: v.tolist() for k, v in feature_stats(values).items()}, len(values)


def lowdim_arrays(zf: RemoteZip) -> list[str]:
    """The buffer's ``data/*`` arrays that are not cameras, sorted."""
    names = sorted(m.group(1) for n in zf.infos if (m := _LOWDIM_RE.fullmatch(n)))
    return [n for n in names if not re.fullmatch(r"camera\d+_rgb", n)]


def default_stats_path(buffer_path: str) -> str:
    parent = str(PurePosixPath(buffer_path).parent)
    return "stats.json" if parent in ("", ".") else f"{parent}/stats.json"


def run_stats(
    settings: Settings,
    ref: str,
    dataset: str,
    *,
    to_branch: str | None = None,
    out_path: str | None = None,
    out_file: Path | None = None,
    commit: bool = True,
    engine: EngineOptions | None = None,
    repo: str | None = None,
    progress: ProgressFn = _noop,
    status: StatusFn = _noop,
) -> JobResult:
    """Statistics of the low-dim arrays of the replay buffer at `dataset` (a zip, or a folder holding one)."""
    started = time.monotonic()
    engine = engine or EngineOptions()
    engine.check()
    repo = repo or settings.lakefs_repo
    with LakeFSClient.from_settings(settings) as client:
        found = resolve(client, repo, ref, dataset)
        branch = target_branch(client, repo, ref, to_branch) if commit else ""
        if commit:
            require_clean_branch(client, repo, branch, "processing")
        output = check_prefix(out_path, "--out-path").strip("/") if out_path else default_stats_path(found.path)
        source = range_source(settings, found, "accelerator")
        names = lowdim_arrays(RemoteZip(source, found.stat.size_bytes, found.where))
        if not names:
            raise ConfigError(f"the replay buffer {found.where} has no low-dim arrays under data/")
        tasks = [StatsTask(source, found.stat.size_bytes, found.where, n) for n in names]
        ticker = Ticker(len(tasks), progress)
        stats, rows, (engine_text, dashboard) = _compute(engine, tasks, ticker, status)
        body = (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode()
        if out_file is not None:
            out_file.parent.mkdir(parents=True, exist_ok=True)
            out_file.write_bytes(body)
        done = _commit(settings, client, found, branch, output, body) if commit else None
    return JobResult(
        job=JOB, repo=repo, ref=ref, source_commit=found.commit_id, source_path=found.path, branch=branch,
        output_path=output if commit else str(out_file or ""), commit_id=done.commit_id if done else "",
        up_to_date=bool(done and done.up_to_date), tasks_total=len(tasks), tasks_run=len(tasks), tasks_reused=0,
        frames=rows, frames_processed=rows * len(tasks), task_seconds=round(ticker.elapsed_s, 3),
        seconds=round(time.monotonic() - started, 3), engine=engine_text, dashboard=dashboard,
        output_sha256=hashlib.sha256(body).hexdigest(), details={"stats": stats},
    )  # fmt: skip


def _compute(
    engine: EngineOptions, tasks: list[StatsTask], ticker: Ticker, status: StatusFn
) -> tuple[dict[str, dict[str, list[Any]]], int, tuple[str, str | None]]:
    stats: dict[str, dict[str, list[Any]]] = {}
    rows = 0
    token = uuid.uuid4().hex[:8]
    with open_engine(engine) as used:
        status(f"computing stats of {len(tasks)} arrays on {used.description}")
        if used.dashboard:
            status(f"Dask dashboard: {used.dashboard}")
        ticker.start()
        for _task, (name, values, n) in used.map(array_stats, tasks, lambda t: f"{JOB}-{t.array}-{token}"):
            stats[name] = values
            rows = n
            ticker.tick(n)
        return dict(sorted(stats.items())), rows, describe(used)


def _commit(
    settings: Settings, client: LakeFSClient, found: Located, branch: str, output: str, body: bytes
) -> Committed:
    identity = found.stat.metadata.get("sha256") or f"{found.stat.checksum}:{found.stat.size_bytes}"
    key = hashlib.sha256(f"{JOB}\n{FORMAT_VERSION}\n{identity}\n{output}".encode()).hexdigest()[:32]
    if already_committed(client, found.repo, branch, {output: key}):
        head = client.get_commit(found.repo, branch)
        return Committed(head.id, branch, (output,), up_to_date=True)
    source = Source(found.repo, found.ref, found.commit_id)
    meta = {**commit_metadata(JOB, source, found.path, {"format_version": FORMAT_VERSION}), "output_path": output}
    with tempfile.TemporaryDirectory(prefix="stats-", dir=work_dir(settings)) as tmp:
        local = Path(tmp) / "stats.json"
        local.write_bytes(body)
        message = f"process stats: {found.path} at {found.commit_id[:12]}"
        return commit_outputs(client, found.repo, branch, {output: local}, job_key=key, message=message, metadata=meta)
