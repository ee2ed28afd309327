"""dataloader --mode training: samples/s of a diffusion-policy training loader, from the lake vs local disk.

The issue's measure: samples/s read from the lake at a commit through robolake, against UMI's own
loader reading the same ``*.zarr.zip`` from local disk into memory (the decode-bound limit), and
against a naive loader doing one boto3 GET per frame chunk. Same run, same file, same sampler
(``SamplerConfig.umi()``: task/umi.yaml), same number of fork-based worker processes, several
epochs; the loaders (loaders.py) take turns epoch by epoch, so drift in the machine's load hits
them alike. robolake's first epoch starts from an empty block cache (cold), the next ones read
it (warm). Peak RSS and PSS of each loader's processes come from memory.py.

Setup: a synthetic dataset from ``robolake.umi.generate_dataset`` (kept under the cache directory
``bench-datasets/``, so a second run skips the generation), uploaded to a new lakeFS branch
``bench-dataloader-<run>`` and committed. At the end the branch and the block cache are deleted
(the committed object stays in the blockstore until lakeFS garbage collection, as for any branch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robolake.bench import core, report, results
from robolake.bench.loaders import LOADERS, OPTIONAL_LOADERS, Plan, Source, TrainingProcess
from robolake.bench.memory import TreeMemory, server_pids, servers_cpu
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.ml import SamplerConfig
from robolake.ml.blocks import BLOCK_BYTES, MIN_BLOCK_BYTES
from robolake.umi import PROFILES, generate_dataset
from robolake.umi.generator import synthetic_name
from robolake.versioning import LakeFSClient, NotFoundError

TITLE = "Dataloader, training path"
GOAL = 0.70  # robolake's samples/s over UMI's loader's, in every epoch (the target)
BUFFER = "replay_buffer/dataset.zarr.zip"
Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingParams:
    episodes: int = 6  # of the "small" profile: ~2,200 frames, ~85 MB, ~1,600 training samples per epoch
    profile: str = "small"
    workers: int = 2
    epochs: int = 3
    batch_size: int = 16
    block_bytes: int = BLOCK_BYTES
    loaders: tuple[str, ...] = LOADERS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"--profile {self.profile!r} is unknown; choose one of {', '.join(PROFILES)}")
        checks = (
            ("--episodes", self.episodes, 2, 1000, "the sampler holds one episode out for validation"),
            ("--workers", self.workers, 1, 64, "worker processes per loader"),
            ("--epochs", self.epochs, 1, 100, "the first is robolake's cold epoch"),
            ("--batch-size", self.batch_size, 1, 4096, "samples per batch"),
        )
        for flag, value, low, high, why in checks:
            if not low <= value <= high:
                raise ConfigError(f"{flag} {value} must be between {low} and {high} ({why})")
        if not MIN_BLOCK_BYTES <= self.block_bytes <= 256 * 2**20:
            raise ConfigError(f"--block-size {self.block_bytes} must be between 64KiB and 256MiB")
        unknown = [name for name in self.loaders if name not in (*LOADERS, *OPTIONAL_LOADERS)]
        if unknown or "umi" not in self.loaders or len(set(self.loaders)) != len(self.loaders):
            raise ConfigError(
                f"--loaders {','.join(self.loaders)!r}: give umi (the baseline) and any of robolake, naive, "
                f"robolake-nocache, each once (unknown: {', '.join(map(repr, unknown)) or 'none'})"
            )


SMOKE = TrainingParams(episodes=3, profile="tiny", epochs=2, batch_size=4)


# ---- setup and cleanup -------------------------------------------------------------------------


def dataset(settings: Settings, params: TrainingParams, progress: Progress | None) -> tuple[Path, int]:
    """The generated replay buffer (made once, then found intact) and its frame count."""
    out = settings.cache_dir / "bench-datasets" / synthetic_name(params.profile, params.seed, params.episodes)
    manifest = generate_dataset(
        out, episodes=params.episodes, seed=params.seed, profile=params.profile, progress=progress
    )
    return out / BUFFER, manifest.frames_total


def commit(lakefs: LakeFSClient, repo: str, branch: str, path: str, local: Path) -> str:
    body = local.read_bytes()
    lakefs.create_branch(repo, branch, "main")
    lakefs.upload_object(repo, branch, path, body, md5_hex=hashlib.md5(body).hexdigest())
    return lakefs.commit(repo, branch, f"bench dataloader: {path}", {"benchmark": "dataloader"}).id


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# ---- the run -----------------------------------------------------------------------------------


def run(
    settings: Settings, params: TrainingParams, say: core.Reporter, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the training-path workload; return its results document."""
    run_id = results.new_run_id("dataloader")
    started = core.now()
    say(f"dataset: {params.episodes} episodes of the {params.profile!r} profile (generated once, then reused)")
    local, frames = dataset(settings, params, progress)
    repo, branch = settings.lakefs_repo, f"bench-dataloader-{run_id.rsplit('-', 1)[-1]}"
    path = f"bench/{run_id}/{BUFFER}"
    cache_dir = Path(tempfile.mkdtemp(prefix="robolake-bench-blocks-"))
    lakefs = LakeFSClient.from_settings(settings)
    try:
        say(f"lakeFS: {local.stat().st_size / 2**20:,.1f} MiB to {repo}/{branch}/{path}, committed")
        commit_id = commit(lakefs, repo, branch, path, local)
        source = Source(
            settings=settings,
            local_zip=local,
            repo=repo,
            commit_id=commit_id,
            path=path,
            config=SamplerConfig.umi(),
            cache_dir=cache_dir,
            block_bytes=params.block_bytes,
        )
        measured = _measure(source, params, say)
        measured["cache_bytes"] = _disk_bytes(cache_dir)
    finally:
        say(f"cleanup: deleting branch {branch} and the block cache")
        shutil.rmtree(cache_dir, ignore_errors=True)
        try:
            with contextlib.suppress(NotFoundError):  # never created: the failure is reported, not this
                lakefs.delete_branch(repo, branch)
        finally:
            lakefs.close()
    dataset_info = {
        "profile": params.profile,
        "episodes": params.episodes,
        "frames": frames,
        "zip_bytes": local.stat().st_size,
        "commit_id": commit_id,
        "branch": branch,
        "path": path,
    }
    series = _series(measured, params)
    return core.document(
        "dataloader",
        run_id,
        settings,
        {"mode": "training", **dataclasses.asdict(params), "sampler": source.config.as_dict()},
        series,
        _summary(measured, params, dataset_info),
        started=started,
    )


def turns(loaders: tuple[str, ...]) -> list[str]:
    """One epoch's turns: UMI's loader right before and right after robolake, then the others.

    UMI's loader does the same work every epoch (nothing of it is cached), so running it twice and
    taking both brackets robolake's epoch in time, as warp-check brackets our driver with warp:
    drift in the load of a shared machine then hits the baseline and robolake alike.
    """
    others = [kind for kind in loaders if kind not in ("umi", "robolake")]
    return ["umi", "robolake", "umi", *others] if "robolake" in loaders else ["umi", *others]


def _measure(source: Source, params: TrainingParams, say: core.Reporter) -> dict[str, Any]:
    """Start every loader's training process, then run the epochs, loaders taking turns."""
    plan = Plan(workers=params.workers, batch_size=params.batch_size, seed=params.seed)
    # Forked before this process starts any thread (the memory sampler): a fork copies one thread only.
    procs = {kind: TrainingProcess(kind, source, plan) for kind in params.loaders}
    runs: dict[str, list[list[dict[str, Any]]]] = {kind: [[] for _ in range(params.epochs)] for kind in procs}
    order = turns(params.loaders)
    servers = server_pids(source.settings)
    try:
        ready = {}
        for kind, proc in procs.items():
            ready[kind] = proc.ready()
            say(f"{kind}: ready in {ready[kind]['setup_s']:.2f} s, {ready[kind]['samples']} samples per epoch")
        steps = core.Steps(say, params.epochs * len(order))
        with TreeMemory({kind: proc.pid for kind, proc in procs.items()}) as memory:
            for epoch in range(params.epochs):
                for kind in order:
                    warmth = (" (cold cache)" if epoch == 0 else " (warm cache)") if kind == "robolake" else ""
                    steps(f"{kind}, epoch {epoch + 1}{warmth}: {params.workers} workers")
                    before = servers_cpu(servers)
                    result = procs[kind].epoch(epoch)
                    runs[kind][epoch].append({**result, "servers_cpu_s": servers_cpu(servers) - before})
    finally:
        for proc in procs.values():
            proc.stop()
    n = {r["samples"] for r in ready.values()}
    if len(n) != 1:
        raise RobolakeError(f"the loaders disagree on the number of samples per epoch: {ready}")
    check_samples(runs, n.pop())
    return {
        "ready": ready,
        "runs": runs,
        "memory": memory.as_dict(),
        "memory_samples": memory.samples,
        "servers": sorted(servers),
    }


def check_samples(runs: dict[str, list[list[dict[str, Any]]]], n: int) -> None:
    """In every run, every loader read every sample exactly once, and the same sample as UMI's loader."""
    reference: dict[int, int] | None = None
    for kind, epochs in runs.items():
        for number, result in ((e, r) for e, rs in enumerate(epochs, start=1) for r in rs):
            sums: dict[int, int] = {}
            for worker in result["workers"]:
                for index, crc in worker["checksums"].items():
                    if index in sums:
                        raise RobolakeError(f"{kind}, epoch {number}: sample {index} was read twice")
                    sums[index] = crc
            if sorted(sums) != list(range(n)):
                raise RobolakeError(f"{kind}, epoch {number}: read {len(sums)} distinct samples, expected {n}")
            reference = reference if reference is not None else sums
            differ = [i for i in range(n) if sums[i] != reference[i]]
            if differ:
                raise RobolakeError(
                    f"{kind}, epoch {number}: {len(differ)} samples differ from UMI's loader's (first: sample "
                    f"{differ[0]}); the loaders read different bytes for the same window"
                )


def _series(measured: dict[str, Any], params: TrainingParams) -> list[core.Series]:
    """One series per loader and epoch; a bracketed UMI epoch counts both its runs."""
    out = []
    for kind, epochs in measured["runs"].items():
        for number, results_ in enumerate(epochs, start=1):
            workers = [w for r in results_ for w in r["workers"]]
            extra: dict[str, Any] = {
                "epoch": number,
                "latency_per": f"batch of {params.batch_size}",
                "cpu_ms_per_sample": _cpu_per_sample(results_),
            }
            if len(results_) > 1:
                extra["runs_per_s"] = [
                    round(sum(w["samples"] for w in r["workers"]) / r["seconds"], 2) for r in results_
                ]
            out.append(
                core.Series(
                    kind,
                    _epoch_label(kind, number),
                    params.workers,
                    unit="samples",
                    count=sum(w["samples"] for w in workers),
                    requests=sum(w["gets"] for w in workers),
                    bytes=sum(w["bytes"] for w in workers),
                    seconds=sum(r["seconds"] for r in results_),
                    latencies_s=[x for w in workers for x in w["latencies_s"]],
                    extra={**extra, "panel": "samples/s"},
                )
            )
    return out


def _cpu_per_sample(results_: list[dict[str, Any]]) -> dict[str, float]:
    """CPU ms per sample of one epoch: the loader's workers, the stack's servers, both."""
    samples = sum(w["samples"] for r in results_ for w in r["workers"])
    loader = sum(w["cpu_s"] for r in results_ for w in r["workers"]) * 1000 / samples
    servers = sum(r["servers_cpu_s"] for r in results_) * 1000 / samples
    return {"loader": round(loader, 2), "servers": round(servers, 2), "total": round(loader + servers, 2)}


def _epoch_label(kind: str, number: int) -> str:
    if kind != "robolake":
        return f"epoch {number}"
    return f"epoch {number} {'cold' if number == 1 else 'warm'}"


def _summary(measured: dict[str, Any], params: TrainingParams, dataset_info: dict[str, Any]) -> dict[str, Any]:
    loaders: dict[str, dict[str, Any]] = {}
    for kind, epochs in measured["runs"].items():
        peak = measured["memory"][kind]
        per_run = [[sum(w["samples"] for w in r["workers"]) / r["seconds"] for r in rs] for rs in epochs]
        loaders[kind] = {
            # a bracketed epoch: all samples of both runs over their time together
            "samples_per_s": [
                round(sum(w["samples"] for r in rs for w in r["workers"]) / sum(r["seconds"] for r in rs), 2)
                for rs in epochs
            ],
            "runs_samples_per_s": [[round(x, 2) for x in rates] for rates in per_run],
            "gets": [sum(w["gets"] for r in rs for w in r["workers"]) // len(rs) for rs in epochs],
            "mib_read": [
                round(sum(w["bytes"] for r in rs for w in r["workers"]) / len(rs) / 2**20, 2) for rs in epochs
            ],
            "cpu_ms_per_sample": [_cpu_per_sample(rs) for rs in epochs],
            "setup_s": round(measured["ready"][kind]["setup_s"], 3),
            "setup_gets": measured["ready"][kind]["gets"],
            "peak_rss_bytes": peak["rss_bytes"],
            "peak_pss_bytes": peak["pss_bytes"],
            "processes": peak["processes"],
        }
    base = loaders["umi"]["samples_per_s"]
    ratios = {
        kind: [core.ratio(rate, b) for rate, b in zip(row["samples_per_s"], base, strict=True)]
        for kind, row in loaders.items()
        if kind != "umi"
    }
    cpu_base = [row["total"] for row in loaders["umi"]["cpu_ms_per_sample"]]
    cpu_ratios = {  # UMI's loader's CPU per sample over this one's: > 1 means it needs less CPU per sample
        kind: [core.ratio(b, row["total"]) for row, b in zip(data["cpu_ms_per_sample"], cpu_base, strict=True)]
        for kind, data in loaders.items()
        if kind != "umi"
    }
    robolake = [r for r in ratios.get("robolake", []) if r is not None]
    return {
        "mode": "training",
        "workers": params.workers,
        "epochs": params.epochs,
        "samples_per_epoch": measured["ready"]["umi"]["samples"],
        "dataset": dataset_info,
        "loaders": loaders,
        "vs_umi": ratios,
        "cpu_vs_umi": cpu_ratios,
        "servers_measured": measured["servers"],
        "goal": GOAL,
        "robolake_min_vs_umi": min(robolake) if robolake else None,
        "robolake_meets_goal": bool(robolake) and min(robolake) >= GOAL,
        "umi_bracketed": "robolake" in loaders,
        "samples_equal": True,  # check_samples raised otherwise
        "cache_bytes": measured["cache_bytes"],
        "memory_samples": measured["memory_samples"],
    }


# ---- the report ----------------------------------------------------------------------------------

_WHAT = {
    "umi": "UMI's own loader: the zip on local disk copied into a zarr MemoryStore, frames decoded through zarr",
    "robolake": "LakeDataset at the commit through the accelerator, block cache (cold, then warm), "
    "schedule() + __getitems__",
    "naive": "one boto3 ranged GET per frame chunk through the accelerator, no cache, no coalescing",
    "robolake-nocache": "LakeDataset without a cache directory: each batch's frames by ranged GETs "
    "(neighbours coalesced), fetched ahead into memory by schedule()",
}


def markdown(doc: dict[str, Any]) -> str:
    p, s = doc["params"], doc["summary"]
    d = s["dataset"]
    lines = report.header(
        doc, f"{TITLE}: {s['samples_per_epoch']:,} samples per epoch, {s['workers']} workers, {s['epochs']} epochs"
    )
    lines += [
        f"Dataset: {d['episodes']} episodes of the `{d['profile']}` profile, {d['frames']:,} frames, zip "
        f"{d['zip_bytes'] / 2**20:,.1f} MiB, at commit `{d['commit_id'][:12]}` (branch {d['branch']}, deleted "
        f"after the run). Sampler `SamplerConfig.umi()` (task/umi.yaml). Batches of {p['batch_size']}, "
        f"{p['workers']} fork-based worker processes per loader, each reading its share of the seeded epoch "
        f"order (seed {p['seed']}); robolake's blocks are {p['block_bytes'] / 2**20:g} MiB. Loaders take turns "
        "epoch by epoch"
        + (
            "; UMI's loader runs each epoch twice, right before and right after robolake's, and its figure "
            "counts both runs (in brackets), so drift in the machine's load hits both alike."
            if s["umi_bracketed"]
            else "."
        ),
        "",
        *(f"- **{kind}**: {_WHAT[kind]}." for kind in s["loaders"]),
        "",
        "| loader | epoch | samples/s | vs umi | CPU ms per sample: workers + servers | CPU vs umi | GETs | MiB read "
        "| batch p50 ms | batch p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += _epoch_rows(doc)
    lines += [
        "",
        "| loader | setup s | peak RSS MiB (all processes) | peak PSS MiB | processes |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {kind} | {row['setup_s']:.2f} | {row['peak_rss_bytes'] / 2**20:,.0f} | "
            f"{row['peak_pss_bytes'] / 2**20:,.0f} | {row['processes']} |"
            for kind, row in s["loaders"].items()
        ),
        "",
        "CPU is user + system time of the loader's worker processes (their prefetch threads included) and "
        f"of the stack's servers ({', '.join(s['servers_measured']) or 'none found'}) during that epoch: on a "
        "shared machine it varies much less than samples/s, and 2 cores / CPU per sample bounds samples/s.",
        "",
        "RSS sums every process's resident pages, so a MemoryStore copied before the workers were forked "
        "counts once per process; PSS shares it out. Neither counts the kernel's file cache: robolake's "
        f"block cache held {s['cache_bytes'] / 2**20:,.1f} MiB on local disk instead.",
        "",
        _verdict(s),
        "",
        f"Every loader returned the same {s['samples_per_epoch']:,} samples (CRC-32 of each sample's arrays), "
        "each exactly once per epoch.",
    ]
    return "\n".join(lines) + "\n"


def _epoch_rows(doc: dict[str, Any]) -> list[str]:
    s, lines = doc["summary"], []
    for row in doc["series"]:
        kind, at = row["path"], row["epoch"] - 1
        ratio = s["vs_umi"][kind][at] if kind != "umi" else 1.0
        cpu_ratio = s["cpu_vs_umi"][kind][at] if kind != "umi" else 1.0
        cpu, lat, runs = row["cpu_ms_per_sample"], row["latency_ms"], row.get("runs_per_s")
        rate = f"{row['per_s']:,.1f}" + (f" ({', '.join(f'{r:,.1f}' for r in runs)})" if runs else "")
        lines.append(
            f"| {kind} | {row['op']} | {rate} | {_x(ratio)} | {cpu['loader']:.1f} + {cpu['servers']:.1f} = "
            f"{cpu['total']:.1f} | {_x(cpu_ratio)} | {row['requests']:,} | {row['bytes'] / 2**20:,.1f} | "
            f"{lat.get('p50', 0):.1f} | {lat.get('p99', 0):.1f} |"
        )
    return lines


def _x(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def _verdict(s: dict[str, Any]) -> str:
    low = s["robolake_min_vs_umi"]
    if low is None:
        return f"Goal (robolake >= {s['goal']:.2f}x UMI's loader in every epoch): robolake was not run."
    met = "met" if s["robolake_meets_goal"] else "NOT met"
    return f"Goal: robolake >= {s['goal']:.2f}x UMI's loader in every epoch: **{met}** (lowest {low:.2f}x)."
