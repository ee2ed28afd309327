"""`robolake bench process`: replay-buffer throughput on Dask vs one process, same job, same run.

A generated raw dataset (``--profile``, ``--episodes``, ``--seed``) is committed to a throwaway
branch; the replay-buffer job then runs twice with nothing reused (``reuse=False``): first every
task in this process (``--single-process``, the baseline), then on an embedded Dask cluster of
``--workers`` processes. Reported per run: frames/s over the task phase (from the first task
submitted to the last finished: decode, resize, JPEG XL, staging; not the cluster's start) and
end to end (resolve, cluster start, tasks, assembly, commit), and the ratios Dask / baseline.
On N free cores the task-phase ratio approaches N; on a machine shared with the stack it is
lower, since MinIO, lakeFS and the accelerator take their share of the same cores. The two
outputs must be byte-identical, and are checked. The branch is deleted at the end.

(It lives here, not in robolake.bench: the layers keep bench and processing apart.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.processing.engine import EngineOptions, dask_versions, require_dask
from robolake.processing.jobs import JobResult, StatusFn, _noop, work_dir
from robolake.processing.read_bench import read_paths
from robolake.processing.replay_buffer import run_replay_buffer
from robolake.umi import PROFILES, generate_dataset
from robolake.versioning import LakeFSClient, NotFoundError, put_dataset

PREFIX = "bench/process"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProcessBenchParams:
    profile: str = "tiny"
    episodes: int = 4
    seed: int = 0
    workers: int = 2
    compare_read_from: bool = False  # a third run: Dask with videos read straight from the MinIO nodes

    def check(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"--profile {self.profile!r} is unknown; choose one of {sorted(PROFILES)}")
        if not 1 <= self.episodes <= 1000:
            raise ConfigError(f"--episodes {self.episodes!r} must be between 1 and 1000")
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"--workers {self.workers!r} must be between 1 and 64")


def _summary(result: JobResult) -> dict[str, Any]:
    frames_s_total = result.frames / result.seconds if result.seconds > 0 else 0.0
    return {
        "engine": result.engine,
        "frames": result.frames,
        "tasks": result.tasks_run,
        "task_seconds": result.task_seconds,
        "seconds": result.seconds,
        "frames_per_s": round(result.frames_per_s, 2),
        "frames_per_s_end_to_end": round(frames_s_total, 2),
        "output_sha256": result.output_sha256,
        "read_from": result.details.get("read_from", "accelerator"),
        "video_read_s": result.details.get("video_read_s", 0.0),
        "video_read_mb_per_s": _mb_per_s(result.details),
    }


def _mb_per_s(details: dict[str, Any]) -> float:
    seconds = details.get("video_read_s", 0.0)
    return round(details.get("video_bytes", 0) / seconds / 1e6, 2) if seconds else 0.0


def run(settings: Settings, params: ProcessBenchParams, status: StatusFn = _noop) -> dict[str, Any]:
    """Both runs; the results document (see the module docstring)."""
    params.check()
    require_dask()
    repo = settings.lakefs_repo
    branch = f"bench-process-{secrets.token_hex(4)}"
    with LakeFSClient.from_settings(settings) as client, tempfile.TemporaryDirectory(dir=work_dir(settings)) as tmp:
        status(f"generating {params.episodes} {params.profile} episodes (seed {params.seed})")
        gen = Path(tmp) / "gen"
        generate_dataset(gen, profile=params.profile, episodes=params.episodes, seed=params.seed)
        raw = Path(tmp) / "raw"
        for sensor in ("pose", "gripper", "video"):
            shutil.copytree(gen / sensor, raw / sensor)
        client.create_branch(repo, branch, "main")
        try:
            put_dataset(client, repo, branch, raw, PREFIX, {"bench": "process"})
            runs = {}
            plan = [
                ("single_process", EngineOptions(inline=True), "accelerator"),
                ("dask", EngineOptions(workers=params.workers), "accelerator"),
            ]
            if params.compare_read_from:
                plan.append(("dask_nodes", EngineOptions(workers=params.workers), "nodes"))
            for name, engine, read_from in plan:
                status(f"run {name}: {engine}, videos read from {read_from}")
                result = run_replay_buffer(
                    settings, branch, PREFIX, out_path=f"{PREFIX}/out-{name}/dataset.zarr.zip", engine=engine,
                    reuse=False, read_from=read_from, status=status,
                )  # fmt: skip
                runs[name] = _summary(result)
            reads = None
            if params.compare_read_from:
                status("timing video reads: through the accelerator vs from the MinIO nodes")
                reads = read_paths(settings, client, repo, branch, PREFIX)
        finally:
            with contextlib.suppress(NotFoundError):
                client.delete_branch(repo, branch)
    doc = _document(params, runs)
    return {**doc, "read_paths": reads} if reads else doc


def _document(params: ProcessBenchParams, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    base, dask = runs["single_process"], runs["dask"]
    if any(r["output_sha256"] != base["output_sha256"] for r in runs.values()):
        raise RobolakeError("the runs' replay buffers differ (Dask, single process, read from nodes); report it")

    def ratio(key: str, over: dict[str, Any] = base, run: dict[str, Any] = dask) -> float:
        return round(run[key] / over[key], 3) if over[key] else 0.0

    nodes = runs.get("dask_nodes")
    extra = {
        "ratio_nodes_task_phase": ratio("frames_per_s", dask, nodes),
        "ratio_nodes_video_read": ratio("video_read_mb_per_s", dask, nodes),
    } if nodes else {}  # fmt: skip
    return {
        **extra,
        "benchmark": "process replay-buffer",
        "created": f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
        "params": dataclasses.asdict(params),
        "versions": dask_versions(),
        "runs": runs,
        "ratio_task_phase": ratio("frames_per_s"),
        "ratio_end_to_end": ratio("frames_per_s_end_to_end"),
        "outputs_identical": True,
    }


def markdown(doc: dict[str, Any]) -> str:
    p = doc["params"]
    lines = [
        f"# process replay-buffer: Dask ({p['workers']} workers) vs one process",
        "",
        f"{p['episodes']} {p['profile']} episodes, seed {p['seed']}; dask {doc['versions'].get('distributed', '?')}",
        "",
        "| run | frames | task phase s | frames/s (tasks) | end to end s | frames/s (end to end) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in doc["runs"].items():
        lines.append(
            f"| {name} | {r['frames']} | {r['task_seconds']:.2f} | {r['frames_per_s']:.1f} | {r['seconds']:.2f} "
            f"| {r['frames_per_s_end_to_end']:.1f} |"
        )
    lines += [
        "",
        f"Dask / single process: **{doc['ratio_task_phase']:.2f}x** over the task phase, "
        f"{doc['ratio_end_to_end']:.2f}x end to end; outputs byte-identical.",
    ]
    for label, r in (doc.get("read_paths") or {}).items():
        if isinstance(r, dict):
            lines.append(
                f"\nReading {label} ({r['objects']} of {r['mean_bytes'] / 1e6:.2f} MB, median of "
                f"{doc['read_paths']['repeats']}): accelerator {r['accelerator_mb_per_s']:.1f} MB/s, MinIO nodes "
                f"{r['nodes_mb_per_s']:.1f} MB/s ({r['ratio_nodes']:.2f}x)."
            )
    if "ratio_nodes_task_phase" in doc:
        reads = ", ".join(f"{n} {r['video_read_mb_per_s']:.1f} MB/s" for n, r in doc["runs"].items())
        lines += [
            "",
            f"Videos read straight from the MinIO nodes / through the accelerator (both on Dask): "
            f"{doc['ratio_nodes_task_phase']:.2f}x over the task phase, {doc['ratio_nodes_video_read']:.2f}x in "
            f"video read throughput per task ({reads}).",
        ]
    return "\n".join(lines) + "\n"


def save(doc: dict[str, Any], out: Path) -> Path:
    """results.json and report.md in out/<run-id>/."""
    run_dir = out / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-process-{secrets.token_hex(3)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    (run_dir / "report.md").write_text(markdown(doc))
    return run_dir
