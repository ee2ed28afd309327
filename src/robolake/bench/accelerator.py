"""The accelerator benchmark: warm GET through the accelerator vs direct MinIO GET, and batch GET.

One run, same objects, same concurrency:
  1. prepare: warp PUTs `objects` objects of `obj_size` into a dedicated bucket (direct to MinIO);
  2. direct:  warp GET --list-existing against MinIO node 1;
  3. warm-up: warp GET against the accelerator (fills the cache; not reported);
  4. accel:   warp GET --list-existing against the accelerator (warm);
  5. direct again (brackets drift on a noisy machine; the baseline is the mean of 2 and 5);
  6. batch:   our asyncio driver POSTs batches of `batch_size` keys to the accelerator.
Ratios are taken against the direct baseline measured in this same run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import boto3
from botocore.config import Config

from robolake.accelerator.client import BATCH_PATH, BatchClient
from robolake.bench import core, results
from robolake.bench.warp import WarpResult, run_warp, to_series
from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import RobolakeError
from robolake.sigv4 import sign

BENCH_BUCKET = "robolake-bench"
Reporter = Callable[[str], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class AcceleratorBenchParams:
    obj_size: str = "4KiB"
    objects: int = 2000
    concurrency: int = 16
    duration_s: float = 20.0
    batch_size: int = 100
    batch_concurrency: int = 4
    seed: int = 0


@dataclasses.dataclass
class BatchResult:
    batches: int
    objects: int
    seconds: float
    latency_ms: dict[str, float]

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0


def _s3(endpoint: str, settings: Settings) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=settings.minio_root_user,
        aws_secret_access_key=settings.minio_root_password, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
    )


def _empty_bucket(client: Any, bucket: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "mean": round(1000 * sum(ordered) / len(ordered), 3)}


async def _batch_load(
    endpoint: str, settings: Settings, bucket: str, keys: list[str], params: AcceleratorBenchParams,
) -> BatchResult:
    host = endpoint.split("://", 1)[1]
    rng = random.Random(params.seed)
    latencies: list[float] = []
    done = {"batches": 0, "objects": 0}
    deadline = time.monotonic() + params.duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            start = rng.randrange(0, max(1, len(keys) - params.batch_size))
            chosen = keys[start:start + params.batch_size]
            body = json.dumps({"bucket": bucket, "keys": chosen}).encode()
            headers = sign("POST", BATCH_PATH, [], host, settings.minio_root_user, settings.minio_root_password,
                           payload_hash=hashlib.sha256(body).hexdigest(),
                           extra_headers={"content-type": "application/json"})
            t0 = time.perf_counter()
            async with session.post(endpoint + BATCH_PATH, data=body, headers=headers) as response:
                payload = await response.read()
                if response.status != 200:
                    raise RobolakeError(f"batch GET failed: HTTP {response.status}: {payload[:200]!r}")
            latencies.append(time.perf_counter() - t0)
            done["batches"] += 1
            done["objects"] += len(chosen)

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        await asyncio.gather(*(worker(session) for _ in range(params.batch_concurrency)))
    return BatchResult(batches=done["batches"], objects=done["objects"], seconds=time.monotonic() - started,
                       latency_ms=_percentiles(latencies))


def run(settings: Settings, params: AcceleratorBenchParams, report: Reporter) -> dict[str, Any]:
    """Run the whole benchmark and return its results document."""
    warp = BinaryBuilder(settings.cache_dir).ensure("warp")
    direct_host = settings.minio_endpoints[0].split("://", 1)[1]
    accel_host = settings.accelerator_endpoint.split("://", 1)[1]
    direct = _s3(settings.minio_endpoints[0], settings)
    if BENCH_BUCKET not in {b["Name"] for b in direct.list_buckets()["Buckets"]}:
        direct.create_bucket(Bucket=BENCH_BUCKET)
    _empty_bucket(direct, BENCH_BUCKET)

    common: dict[str, Any] = {"access_key": settings.minio_root_user, "secret_key": settings.minio_root_password,
              "bucket": BENCH_BUCKET, "obj_size": params.obj_size, "concurrency": params.concurrency}
    report(f"prepare: {params.objects} objects of {params.obj_size} (warp, direct to MinIO)")
    run_warp(warp, "get", host=direct_host, duration_s=1, objects=params.objects, prepare_only=True, **common)
    keys = [o["Key"] for page in direct.get_paginator("list_objects_v2").paginate(Bucket=BENCH_BUCKET)
            for o in page.get("Contents", [])]
    report(f"accelerator warm-up: every one of the {len(keys)} objects read once (batch GET)")
    warmer = BatchClient(settings.accelerator_endpoint, settings.minio_root_user, settings.minio_root_password)
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        if not all(item.ok for item in warmer.get_batch(BENCH_BUCKET, chunk)):
            raise RobolakeError("warm-up batch GET reported missing objects; the bench bucket changed under us")
    runs: dict[str, WarpResult] = {}
    for name, host, what in (("direct_1", direct_host, "direct GET"),
                             ("accelerator_warm", accel_host, "accelerator GET (warm)"),
                             ("direct_2", direct_host, "direct GET again (brackets drift)")):
        report(f"{what}, {params.concurrency} concurrent, {params.duration_s:g} s")
        result = run_warp(warp, "get", host=host, duration_s=params.duration_s, list_existing=True, **common)
        if result is None:
            raise RobolakeError(f"warp printed no summary for the {what} run")
        runs[name] = result

    # The load loop below only counts bytes; one fully parsed batch first proves the path is right.
    probe = BatchClient(settings.accelerator_endpoint, settings.minio_root_user, settings.minio_root_password)
    check = probe.get_batch(BENCH_BUCKET, keys[: params.batch_size])
    if [i.key for i in check] != keys[: params.batch_size] or not all(i.ok for i in check):
        raise RobolakeError("batch GET returned the wrong members; not benchmarking a broken path")
    report(f"batch GET: {params.batch_size} keys per request, {params.batch_concurrency} concurrent")
    batch = asyncio.run(_batch_load(settings.accelerator_endpoint, settings, BENCH_BUCKET, keys, params))

    baseline = (runs["direct_1"].objects_per_s + runs["direct_2"].objects_per_s) / 2
    accel = runs["accelerator_warm"].objects_per_s
    _empty_bucket(direct, BENCH_BUCKET)
    level = params.concurrency
    series = [to_series(runs["direct_1"], path="direct", op="GET"),
              to_series(runs["accelerator_warm"], path="accelerator warm", op="GET"),
              to_series(runs["direct_2"], path="direct (again)", op="GET")]  # fmt: skip
    batched = core.Series("accelerator batch", "GET", params.batch_concurrency,
                          extra={"label": f"accelerator batch GET\n({params.batch_size} keys/request, "
                                                f"{params.batch_concurrency} concurrent)"})  # fmt: skip
    batched.reported = {"per_s": round(batch.objects_per_s, 1), "latency_ms": batch.latency_ms}
    for member in series:
        member.extra.update(label=f"{member.path} GET\n(warp, {level} concurrent)")
    return {
        "benchmark": "accelerator",
        "run_id": results.new_run_id("accelerator"),
        "started": core.now(),
        "series": [s.as_dict() for s in [*series, batched]],
        "machine": {"cpus": _cpus(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"warp": BinaryBuilder(settings.cache_dir).version_of("warp"),
                     "minio": BinaryBuilder(settings.cache_dir).version_of("minio")},
        "params": dataclasses.asdict(params),
        "warp_runs": {name: dataclasses.asdict(r) for name, r in runs.items()},
        "batch": {**dataclasses.asdict(batch), "objects_per_s": batch.objects_per_s},
        "summary": {
            "direct_get_objects_per_s": round(baseline, 1),
            "accelerator_warm_get_objects_per_s": round(accel, 1),
            "warm_get_speedup": round(accel / baseline, 2) if baseline else None,
            "batch_get_objects_per_s": round(batch.objects_per_s, 1),
            "batch_speedup": round(batch.objects_per_s / baseline, 2) if baseline else None,
            "accelerator_warm_latency_ms": runs["accelerator_warm"].latency_ms,
            "direct_latency_ms": runs["direct_1"].latency_ms,
        },
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def markdown(doc: dict[str, Any]) -> str:
    s, p = doc["summary"], doc["params"]
    lines = [
        f"# Accelerator benchmark — {p['objects']} objects of {p['obj_size']}, {p['concurrency']} concurrent, "
        f"{p['duration_s']:g} s per run",
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
        "",
        "Commands (secrets masked):",
        *(f"- `{r['command']}`" for r in doc["warp_runs"].values()),
    ]
    return "\n".join(lines) + "\n"
