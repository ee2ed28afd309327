"""warp-check: our own load driver and warp on the same plain GET workload, same node, same run.

Our drivers (ObjectReader inside `core.closed_loop`) measure what warp cannot express; this check
shows they measure the storage rather than themselves. Two workloads, each run as
warp → ours → warp (warp's figure is the mean of the two, which brackets drift on a noisy machine):
  small: `small_objects` objects of `small_size` (default 1,000 x 4 KiB), `small_concurrency` streams;
  large: `large_objects` objects of `large_size` (default 8 x 64 MiB), `large_concurrency` streams.
warp writes the objects (warp get --noclear) and both read exactly those (warp --list-existing).
Tolerances: small GET objects/s within 25% of warp's, large GET MiB/s within 15%.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from robolake.bench import core, report, results
from robolake.bench.warp import WarpResult, run_warp, to_series
from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.storage.aio import run_async
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target

TITLE = "warp-check: robolake's driver vs warp"
BENCH_BUCKET = "robolake-bench-warpcheck"
TOLERANCE = {"small": 0.25, "large": 0.15}
WARP_MIN_S = 6.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class WarpCheckParams:
    """Two workloads, small and large objects (sizes in warp syntax), each at its own concurrency."""

    small_size: str = "4KiB"
    small_objects: int = 1000
    small_concurrency: int = 16
    large_size: str = "64MiB"
    large_objects: int = 8
    large_concurrency: int = 4
    duration_s: float = 15.0

    def __post_init__(self) -> None:
        if (
            core.parse_size(self.small_size, "--small-size") > 1024 * 1024
            or core.parse_size(self.large_size, "--large-size") < 1024 * 1024
        ):
            raise ConfigError(
                f"--small-size {self.small_size!r} must be at most 1MiB and --large-size "
                f"{self.large_size!r} at least 1MiB"
            )
        if min(self.small_objects, self.large_objects, self.small_concurrency, self.large_concurrency) < 1:
            raise ConfigError("object counts and concurrency levels must be at least 1")
        if self.duration_s < WARP_MIN_S:
            raise ConfigError(
                f"--duration {self.duration_s:g} is too short: warp reports nothing for runs under {WARP_MIN_S:g} s"
            )


SMOKE_PARAMS = WarpCheckParams(
    small_objects=200,
    small_concurrency=8,
    large_size="16MiB",
    large_objects=4,
    large_concurrency=2,
    duration_s=WARP_MIN_S,
)


async def _ours(
    target: S3Target, bucket: str, prefix: str, size: int, concurrency: int, duration_s: float, op: str
) -> core.Series:
    async with AsyncS3(target, connections=2) as s3:
        keys = [o.key for o in await s3.list_objects(bucket, prefix)]
    if not keys:
        raise RobolakeError(f"warp left no objects under s3://{bucket}/{prefix}; nothing to read")

    async with ObjectReader(target, connections=concurrency) as reader:
        series = core.Series("robolake driver", op, concurrency)
        return await core.closed_loop(
            core.get_op(reader, bucket, keys, size), series, concurrency, duration_s=duration_s, start=concurrency
        )


async def _clear(target: S3Target, prefix: str) -> None:
    async with AsyncS3(target, connections=4) as s3:
        await s3.create_bucket(BENCH_BUCKET)
        await s3.delete_prefix(BENCH_BUCKET, prefix)


def run(settings: Settings, params: WarpCheckParams, report_line: core.Reporter) -> dict[str, Any]:
    run_id = results.new_run_id("warp-check")
    started = core.now()
    target = S3Target.from_settings(settings, settings.minio_endpoints[0])
    warp = BinaryBuilder(settings.cache_dir).ensure("warp")
    progress = core.Steps(report_line, 8)
    series: list[core.Series] = []
    summary: dict[str, Any] = {}
    run_async(_clear(target, run_id + "/"))
    try:
        for name, size, objects, concurrency in (
            ("small", params.small_size, params.small_objects, params.small_concurrency),
            ("large", params.large_size, params.large_objects, params.large_concurrency),
        ):
            trio, summary[name] = _workload(
                target, warp, params, progress, f"{run_id}/{name}", name, size, objects, concurrency
            )
            series += trio
    finally:
        run_async(_clear(target, run_id + "/"))
    summary["all_within"] = all(summary[n]["within"] for n in ("small", "large"))
    return core.document(
        "warp_check",
        run_id,
        settings,
        {**dataclasses.asdict(params)},
        series,
        summary,
        started=started,
        plot_metric=None,
    )


def _workload(
    target: S3Target,
    warp: Path,
    params: WarpCheckParams,
    progress: core.Steps,
    prefix: str,
    name: str,
    size: str,
    objects: int,
    concurrency: int,
) -> tuple[list[core.Series], dict[str, Any]]:
    """warp writes the objects; warp, our driver and warp again read them: the three series and the verdict."""
    op = f"GET {size}"
    common: dict[str, Any] = {
        "host": target.host,
        "access_key": target.access_key,
        "secret_key": target.secret_key,
        "bucket": BENCH_BUCKET,
        "obj_size": size,
        "concurrency": concurrency,
        "prefix": prefix,
    }
    progress(f"{name}: warp writes {objects} objects of {size}")
    run_warp(warp, "get", duration_s=1, objects=objects, prepare_only=True, **common)
    progress(f"{name}: warp GET, {concurrency} concurrent, {params.duration_s:g} s")
    before = _warp(warp, params, common)
    progress(f"{name}: robolake driver GET, {concurrency} concurrent, {params.duration_s:g} s")
    ours = run_async(
        _ours(target, BENCH_BUCKET, prefix + "/", core.parse_size(size), concurrency, params.duration_s, op)
    )
    progress(f"{name}: warp GET again (brackets drift), {params.duration_s:g} s")
    after = _warp(warp, params, common)
    metric = "objects_per_s" if name == "small" else "mib_per_s"
    trio = [to_series(before, path="warp", op=op), ours, to_series(after, path="warp (again)", op=op)]
    for member in trio:
        member.extra.update(
            panel=f"{name}: GET {size}, {concurrency} concurrent",
            label=member.path,
            plot_metric="per_s" if name == "small" else "mib_per_s",
        )
    warp_value = (getattr(before, metric) + getattr(after, metric)) / 2
    ours_value = ours.count / ours.seconds if metric == "objects_per_s" else ours.bytes / 2**20 / ours.seconds
    r = core.ratio(ours_value, warp_value)
    return trio, {
        "metric": metric.replace("_per_s", "/s").replace("mib", "MiB"),
        "size": size,
        "concurrency": concurrency,
        "warp": round(warp_value, 2),
        "ours": round(ours_value, 2),
        "ratio": r,
        "tolerance": TOLERANCE[name],
        "within": r is not None and abs(r - 1) <= TOLERANCE[name],
    }


def _warp(binary: Any, params: WarpCheckParams, common: dict[str, Any]) -> WarpResult:
    found = run_warp(binary, "get", duration_s=params.duration_s, list_existing=True, **common)
    if found is None:
        raise RobolakeError("warp printed no GET summary")
    return found


def markdown(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    lines = report.header(doc, TITLE)
    lines += [
        "Same node (MinIO node 1), same objects (written by warp), same concurrency, same run; warp ran before "
        "and after our driver and its figure is the mean of both.",
        "",
        "| workload | size | concurrency | metric | warp | robolake driver | ratio | tolerance | verdict |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for name in ("small", "large"):
        c = s[name]
        lines.append(
            f"| {name} GET | {c['size']} | {c['concurrency']} | {c['metric']} | {c['warp']:,.1f} | "
            f"{c['ours']:,.1f} | {c['ratio']} | ±{c['tolerance']:.0%} | "
            f"{'within' if c['within'] else 'OUTSIDE'} |"
        )
    lines += ["", *report.series_table(doc["series"], ttfb=True), "", "Commands (secrets masked):"]
    lines += [f"- `{x['command']}`" for x in doc["series"] if x.get("command")]
    return "\n".join(lines) + "\n"
