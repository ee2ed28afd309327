"""The accelerator benchmark: warm GET through the accelerator vs direct MinIO GET, and batch GET.

One run, same objects, same concurrency:
  1. prepare: warp PUTs `objects` objects of `obj_size` into a dedicated bucket (direct to MinIO);
  2. warm-up: every object read once through the accelerator with batch GETs (not reported), and
              one batch checked member by member;
  3. direct:  warp GET --list-existing against MinIO node 1;
  4. accel:   warp GET --list-existing against the accelerator (warm);
  5. direct again (brackets drift on a noisy machine; the baseline is the mean of 3 and 5);
  6. batch:   our closed-loop driver POSTs batches of `batch_size` keys to the accelerator over
              ObjectReader's raw connections (answers counted, not parsed).
Ratios are taken against the direct baseline measured in this same run. Buckets are set up and
emptied with AsyncS3 (see the storage package docstring for which client does what).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from typing import Any

from robolake.accelerator.client import BATCH_PATH, AsyncBatchClient
from robolake.bench import core, passthrough, results
from robolake.bench.warp import WarpResult, run_warp, to_series
from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.storage.aio import run_async
from robolake.storage.errors import S3Error
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target

BENCH_BUCKET = "robolake-bench"
WARM_BATCH_KEYS = 500
Reporter = Callable[[str], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AcceleratorBenchParams:
    """The working set (`objects` of `obj_size`, warp syntax), warp's load, and the batch GET driver's."""

    objects: int = 2000  # the working set, written by warp
    concurrency: int = 16  # warp's concurrent GETs
    duration_s: float = 20.0  # each warp run, and the batch driver's run
    batch_size: int = 100  # keys per batch GET
    obj_size: str = "4KiB"  # warp syntax
    batch_concurrency: int = 4  # batch GETs in flight
    seed: int = 0  # the batch driver's key offsets
    parts: tuple[str, ...] = ("warm", *passthrough.PARTS)  # warm GET + batch; cold GET; large GET and PUT
    cold_objects: int = 20000
    large_size: str = "64MiB"
    large_objects: int = 16
    large_concurrency: int = 4

    def __post_init__(self) -> None:
        core.parse_size(self.obj_size, "--obj-size")
        core.parse_size(self.large_size, "--large-size")
        unknown = set(self.parts) - {"warm", *passthrough.PARTS}
        if unknown or not self.parts:
            raise ConfigError(
                f"--parts {','.join(self.parts)!r}: choose one or more of warm, {', '.join(passthrough.PARTS)}"
            )
        if min(self.cold_objects, self.large_objects, self.large_concurrency) < 1:
            raise ConfigError("--cold-objects, --large-objects and --large-concurrency must be positive")
        if self.objects < self.batch_size or self.objects < 1 or self.concurrency < 1 or self.duration_s <= 0:
            raise ConfigError("--objects must be >= --batch-size, and --concurrency and --duration positive")


@dataclasses.dataclass
class BatchResult:
    batches: int
    objects: int
    seconds: float
    latency_ms: dict[str, float]

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0


async def _empty(direct: S3Target) -> None:
    async with AsyncS3(direct, connections=8) as s3:
        await s3.create_bucket(BENCH_BUCKET)
        await s3.delete_prefix(BENCH_BUCKET, "")


async def _keys(direct: S3Target) -> list[str]:
    async with AsyncS3(direct, connections=2) as s3:
        return [o.key for o in await s3.list_objects(BENCH_BUCKET, "", metadata=False)]


async def _warm(accel: S3Target, keys: list[str], probe: int) -> None:
    """Every object read once through the accelerator (batch GET), then one batch checked member by member."""
    async with ObjectReader(accel, connections=2) as reader:
        client = AsyncBatchClient(reader)
        for start in range(0, len(keys), WARM_BATCH_KEYS):
            items, _ = await client.get_batch(BENCH_BUCKET, keys[start : start + WARM_BATCH_KEYS])
            if not all(item.ok for item in items):
                raise RobolakeError("warm-up batch GET reported missing objects; the bench bucket changed under us")
        # The load loop only counts bytes; one fully parsed batch first proves the path is right.
        items, _ = await client.get_batch(BENCH_BUCKET, keys[:probe])
        if [i.key for i in items] != keys[:probe] or not all(i.ok for i in items):
            raise RobolakeError("batch GET returned the wrong members; not benchmarking a broken path")


async def _batch_load(accel: S3Target, keys: list[str], params: AcceleratorBenchParams) -> BatchResult:
    """`batch_concurrency` closed loops of batch GETs of `batch_size` keys from seeded offsets, bodies discarded."""
    rng = random.Random(params.seed)

    def discard(_: memoryview) -> None:
        return None

    async with ObjectReader(accel, connections=params.batch_concurrency) as reader:

        async def one(_: int, series: core.Series) -> None:
            start = rng.randrange(0, max(1, len(keys) - params.batch_size))
            chosen = keys[start : start + params.batch_size]
            body = json.dumps({"bucket": BENCH_BUCKET, "keys": chosen}).encode()
            try:
                got = await reader.send(
                    "POST", BATCH_PATH, body=body, headers={"content-type": "application/json"}, sink=discard
                )
            except S3Error as exc:  # a failing path is a broken benchmark, not a figure
                raise RobolakeError(f"batch GET failed: {exc}") from exc
            series.ok(len(chosen), got.size, got.seconds, got.ttfb_s)

        series = await core.closed_loop(
            one,
            core.Series("accelerator batch", "GET", params.batch_concurrency),
            params.batch_concurrency,
            duration_s=params.duration_s,
        )
    return BatchResult(
        batches=series.requests,
        objects=series.count,
        seconds=series.seconds,
        latency_ms=core.percentiles_ms(series.latencies_s),
    )


def _warp_runs(
    warp: Any, settings: Settings, params: AcceleratorBenchParams, report: Reporter
) -> dict[str, WarpResult]:
    """Direct, accelerator (warm), direct again: warp GET of the bench bucket's objects."""
    direct_host = S3Target.from_settings(settings, settings.minio_endpoints[0]).host
    accel_host = S3Target.from_settings(settings).host
    runs: dict[str, WarpResult] = {}
    for name, host, what in (
        ("direct_1", direct_host, "direct GET"),
        ("accelerator_warm", accel_host, "accelerator GET (warm)"),
        ("direct_2", direct_host, "direct GET again (brackets drift)"),
    ):
        report(f"{what}, {params.concurrency} concurrent, {params.duration_s:g} s")
        result = run_warp(
            warp, "get", host=host, duration_s=params.duration_s, list_existing=True, **_warp_common(settings, params)
        )
        if result is None:
            raise RobolakeError(f"warp printed no summary for the {what} run")
        runs[name] = result
    return runs


def _warp_common(settings: Settings, params: AcceleratorBenchParams) -> dict[str, Any]:
    return {
        "access_key": settings.minio_root_user,
        "secret_key": settings.minio_root_password,
        "bucket": BENCH_BUCKET,
        "obj_size": params.obj_size,
        "concurrency": params.concurrency,
    }


def run(settings: Settings, params: AcceleratorBenchParams, report: Reporter) -> dict[str, Any]:
    """Run the whole benchmark and return its results document."""
    warp = BinaryBuilder(settings.cache_dir).ensure("warp")
    direct = S3Target.from_settings(settings, settings.minio_endpoints[0])
    run_async(_empty(direct))
    others = passthrough.PassthroughParams(
        bucket=BENCH_BUCKET,
        obj_size=params.obj_size,
        concurrency=params.concurrency,
        duration_s=params.duration_s,
        cold_objects=params.cold_objects,
        large_size=params.large_size,
        large_objects=params.large_objects,
        large_concurrency=params.large_concurrency,
        parts=tuple(p for p in params.parts if p != "warm"),
    )
    try:
        warm = _warm_part(warp, settings, params, report) if "warm" in params.parts else None
        without_cache = passthrough.run(settings, others, report)
    finally:
        run_async(_empty(direct))
    return _document(settings, params, warm, without_cache)


def _warm_part(
    warp: Any, settings: Settings, params: AcceleratorBenchParams, report: Reporter
) -> tuple[dict[str, WarpResult], BatchResult]:
    direct = S3Target.from_settings(settings, settings.minio_endpoints[0])
    accel = S3Target.from_settings(settings)
    report(f"prepare: {params.objects} objects of {params.obj_size} (warp, direct to MinIO)")
    run_warp(
        warp,
        "get",
        host=direct.host,
        duration_s=1,
        objects=params.objects,
        prepare_only=True,
        **_warp_common(settings, params),
    )
    keys = run_async(_keys(direct))
    report(f"accelerator warm-up: every one of the {len(keys)} objects read once (batch GET)")
    run_async(_warm(accel, keys, params.batch_size))
    runs = _warp_runs(warp, settings, params, report)
    report(f"batch GET: {params.batch_size} keys per request, {params.batch_concurrency} concurrent")
    batch = run_async(_batch_load(accel, keys, params))
    run_async(_empty(direct))
    return runs, batch


def _document(
    settings: Settings,
    params: AcceleratorBenchParams,
    warm: tuple[dict[str, WarpResult], BatchResult] | None,
    without_cache: dict[str, Any],
) -> dict[str, Any]:
    builder = BinaryBuilder(settings.cache_dir)
    doc: dict[str, Any] = {
        "benchmark": "accelerator",
        "run_id": results.new_run_id("accelerator"),
        "started": core.now(),
        "series": [],
        "machine": core.machine(),
        "versions": {"warp": builder.version_of("warp"), "minio": builder.version_of("minio")},
        "params": dataclasses.asdict(params),
        "warp_runs": {},
        "without_cache": without_cache,
        "summary": {
            name: {"ratio_objects_per_s": part["ratio_objects_per_s"], "ratio_mib_per_s": part["ratio_mib_per_s"]}
            | ({"miss_share": part["miss_share"]} if part.get("miss_share") is not None else {})
            for name, part in without_cache.items()
        },
    }
    if warm is not None:
        doc.update(_warm_document(params, *warm))
        doc["summary"].update(doc.pop("warm_summary"))
    return doc


def _warm_document(params: AcceleratorBenchParams, runs: dict[str, WarpResult], batch: BatchResult) -> dict[str, Any]:
    baseline = (runs["direct_1"].objects_per_s + runs["direct_2"].objects_per_s) / 2
    accel = runs["accelerator_warm"].objects_per_s
    series = [
        to_series(runs["direct_1"], path="direct", op="GET"),
        to_series(runs["accelerator_warm"], path="accelerator warm", op="GET"),
        to_series(runs["direct_2"], path="direct (again)", op="GET"),
    ]
    for member in series:
        member.extra.update(label=f"{member.path} GET\n(warp, {params.concurrency} concurrent)")
    batched = core.Series(
        "accelerator batch",
        "GET",
        params.batch_concurrency,
        extra={
            "label": f"accelerator batch GET\n({params.batch_size} keys/request, {params.batch_concurrency} concurrent)"
        },
    )
    batched.reported = {"per_s": round(batch.objects_per_s, 1), "latency_ms": batch.latency_ms}
    return {
        "series": [s.as_dict() for s in [*series, batched]],
        "warp_runs": {name: dataclasses.asdict(r) for name, r in runs.items()},
        "batch": {**dataclasses.asdict(batch), "objects_per_s": batch.objects_per_s},
        "warm_summary": {
            "direct_get_objects_per_s": round(baseline, 1),
            "accelerator_warm_get_objects_per_s": round(accel, 1),
            "warm_get_speedup": round(accel / baseline, 2) if baseline else None,
            "batch_get_objects_per_s": round(batch.objects_per_s, 1),
            "batch_speedup": round(batch.objects_per_s / baseline, 2) if baseline else None,
            "accelerator_warm_latency_ms": runs["accelerator_warm"].latency_ms,
            "direct_latency_ms": runs["direct_1"].latency_ms,
        },
    }


def markdown(doc: dict[str, Any]) -> str:
    p = doc["params"]
    lines = [
        f"# Accelerator benchmark — {p['concurrency']} concurrent small GETs of {p['obj_size']}, "
        f"{p['large_concurrency']} concurrent of {p['large_size']}, {p['duration_s']:g} s per run",
    ]
    if "batch" in doc:
        lines += _warm_rows(doc)
    lines += passthrough.markdown_rows(doc.get("without_cache", {}))
    commands = [r["command"] for r in doc["warp_runs"].values()]
    for part in doc.get("without_cache", {}).values():
        commands += [part[name]["command"] for name in ("direct_1", "accelerator", "direct_2")]
    lines += ["", "Commands (secrets masked):", *(f"- `{c}`" for c in commands)]
    return "\n".join(lines) + "\n"


def _warm_rows(doc: dict[str, Any]) -> list[str]:
    s, p = doc["summary"], doc["params"]
    return [
        "",
        f"Working set: {p['objects']} objects of {p['obj_size']}, read once through the accelerator first.",
        "",
        "| path | objects/s | ratio vs direct | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        f"| direct MinIO GET (warp, mean of 2 runs) | {s['direct_get_objects_per_s']:.0f} | 1.00 | "
        f"{s['direct_latency_ms'].get('p50', '')} | {s['direct_latency_ms'].get('p99', '')} |",
        f"| accelerator warm GET (warp) | {s['accelerator_warm_get_objects_per_s']:.0f} | {s['warm_get_speedup']} | "
        f"{s['accelerator_warm_latency_ms'].get('p50', '')} | {s['accelerator_warm_latency_ms'].get('p99', '')} |",
        f"| accelerator batch GET ({p['batch_size']}/request) | {s['batch_get_objects_per_s']:.0f} | "
        f"{s['batch_speedup']} | {doc['batch']['latency_ms'].get('p50', '')} (per batch) | "
        f"{doc['batch']['latency_ms'].get('p99', '')} (per batch) |",
    ]
