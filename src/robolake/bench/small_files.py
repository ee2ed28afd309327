"""Small-file performance: PUT, GET, HEAD and LIST on many pose and gripper JSON objects.

The bodies are shaped like the generator's per-episode files (timestamps, UR5e joints, tool
pose; gripper width and force) with `frames_per_object` frames, so sizes are realistic: at 60
frames a pose object is ~12 KB and a gripper object ~1.7 KB. Keys sit in directories of
`objects_per_dir` (``<run>/d0003/pose/episode_00312.json``), which is what LIST enumerates.

One run, per concurrency level and operation, for `duration_s` each ("cells"):
  prepare: every object PUT once (not timed), then read once (so GET measures the accelerator
           warm, which is its job; against a MinIO node the warm-up changes nothing);
  put:     overwrite objects in turn;  get: read them;  head: stat them;
  list:    ListObjectsV2 of one directory (objects/s counts the keys listed).
Requests come from our own asyncio driver (one aiohttp session, our SigV4 signer): a Python
client costs CPU per request, and on a small machine that CPU is shared with the servers, so
figures are a floor for what the server can do. Nothing is retried: errors are counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import json
import os
import platform
import random
import time
from typing import Any

import numpy as np

from robolake.bench.results import new_run_id
from robolake.storage.errors import S3Error
from robolake.storage.integrity import content_md5, md5_of
from robolake.storage.s3 import AsyncS3, S3Target
from robolake.storage.uploader import run_async

BENCH_BUCKET = "robolake-bench-small"
OPS = ("put", "get", "head", "list")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SmallFileBenchParams:
    objects: int = 2000
    frames_per_object: int = 60
    objects_per_dir: int = 100
    concurrency_levels: tuple[int, ...] = (1, 8, 32)
    duration_s: float = 5.0
    ops: tuple[str, ...] = OPS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objects < 2 or self.frames_per_object < 1 or self.objects_per_dir < 2 or self.duration_s <= 0:
            raise ValueError("objects >= 2, frames_per_object >= 1, objects_per_dir >= 2, duration_s > 0")
        if not self.concurrency_levels or min(self.concurrency_levels) < 1:
            raise ValueError(f"concurrency levels {self.concurrency_levels!r} must be positive")
        unknown = set(self.ops) - set(OPS)
        if unknown:
            raise ValueError(f"unknown ops {sorted(unknown)}; choose from {OPS}")


SMOKE = SmallFileBenchParams(objects=300, duration_s=1.5)


@dataclasses.dataclass
class Cell:
    """One operation at one concurrency level."""

    op: str
    concurrency: int
    requests: int = 0
    objects: int = 0
    bytes: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = dataclasses.field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "concurrency": self.concurrency, "requests": self.requests, "objects": self.objects,
                "bytes": self.bytes, "errors": self.errors, "seconds": round(self.seconds, 3),
                "objects_per_s": round(self.objects / self.seconds, 1) if self.seconds else 0.0,
                "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
                "mb_per_s": round(self.bytes / 1e6 / self.seconds, 3) if self.seconds else 0.0,
                "latency_ms": percentiles_ms(self.latencies_s)}  # fmt: skip


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = np.sort(np.asarray(samples)) * 1000.0
    p50, p90, p99 = np.percentile(ordered, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "mean": round(float(ordered.mean()), 3), "max": round(float(ordered[-1]), 3)}  # fmt: skip


# ---- bodies ------------------------------------------------------------------------------------


def _arrays_json(rng: np.random.Generator, sensor: str, frames: int) -> str:
    t = np.round(np.arange(frames) / 59.94006, 6).tolist()
    if sensor == "gripper":
        width = np.round(np.clip(rng.normal(0.05, 0.02, frames), 0, 0.085), 6).tolist()
        force = np.round(np.clip(rng.normal(5, 3, frames), 0, None), 3).tolist()
        body: dict[str, Any] = {"timestamps_s": t, "max_width_m": 0.085, "width_m": width, "force_n": force}
    else:
        body = {"timestamps_s": t, "robot": "UR5e",
                "joint_positions_rad": np.round(rng.normal(0, 1.5, (frames, 6)), 6).tolist(),
                "eef_position_m": np.round(rng.normal(0.4, 0.1, (frames, 3)), 6).tolist(),
                "eef_quaternion_xyzw": np.round(rng.normal(0, 0.5, (frames, 4)), 7).tolist(),
                "eef_rot_axis_angle": np.round(rng.normal(0, 1.0, (frames, 3)), 6).tolist()}  # fmt: skip
    return json.dumps(body, separators=(",", ":"))[1:]  # without the opening brace


def make_bodies(params: SmallFileBenchParams, prefix: str) -> list[tuple[str, bytes]]:
    """(key, body) for every object: half pose, half gripper, deterministic for the seed."""
    rng = np.random.default_rng(params.seed)
    pool = {s: [_arrays_json(rng, s, params.frames_per_object) for _ in range(16)] for s in ("pose", "gripper")}
    out = []
    for i in range(params.objects):
        sensor = "pose" if i % 2 == 0 else "gripper"
        key = f"{prefix}/d{i // params.objects_per_dir:04d}/{sensor}/episode_{i:05d}.json"
        head = f'{{"schema_version":1,"episode_index":{i},"fps":59.94006,"frame_count":{params.frames_per_object},'
        out.append((key, (head + pool[sensor][i % 16]).encode() + b"\n"))
    return out


# ---- the driver --------------------------------------------------------------------------------


class _Driver:
    def __init__(self, s3: AsyncS3, bucket: str, objects: list[tuple[str, bytes]], dirs: list[str]) -> None:
        self.s3, self.bucket, self.objects, self.dirs = s3, bucket, objects, dirs
        self.md5s = [content_md5(md5_of(body)) for _, body in objects]
        self.put_headers = {"content-type": "application/json"}

    async def one(self, op: str, index: int, cell: Cell) -> None:
        key, body = self.objects[index % len(self.objects)]
        if op == "put":
            await self.s3.put_object(self.bucket, key, body, content_md5=self.md5s[index % len(self.objects)],
                                     headers=self.put_headers)  # fmt: skip
            cell.objects += 1
            cell.bytes += len(body)
        elif op == "get":
            data = await self.s3.get_object(self.bucket, key)
            cell.objects += 1
            cell.bytes += len(data)
        elif op == "head":
            if await self.s3.head_object(self.bucket, key) is None:
                raise S3Error(f"HEAD {key}: 404", status=404)
            cell.objects += 1
        else:
            listed, _, nbytes = await self.s3.list_page(self.bucket, self.dirs[index % len(self.dirs)],
                                                        metadata=False)  # fmt: skip
            cell.objects += len(listed)
            cell.bytes += nbytes

    async def cell(self, op: str, concurrency: int, duration_s: float, start: int) -> Cell:
        cell = Cell(op, concurrency)
        counter = itertools.count(start)
        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            clock = time.perf_counter
            while clock() < deadline:
                index = next(counter)
                t0 = clock()
                try:
                    await self.one(op, index, cell)
                except S3Error:
                    cell.errors += 1
                    continue
                finally:
                    cell.requests += 1
                cell.latencies_s.append(clock() - t0)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cell.seconds = time.perf_counter() - began
        return cell

    async def each(self, op: str, concurrency: int) -> None:
        """Every object once (prepare and warm-up), retried, not timed."""
        indices = iter(range(len(self.objects)))

        async def worker() -> None:
            for i in indices:
                await self.s3.call(functools.partial(self.one, op, i, Cell(op, 0)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _run(target: S3Target, params: SmallFileBenchParams, report: Any, bucket: str) -> dict[str, Any]:
    prefix = new_run_id("small-files")
    objects = make_bodies(params, prefix)
    dirs = sorted({key.rsplit("/", 2)[0] + "/" for key, _ in objects})
    connections = max(params.concurrency_levels) + 4
    async with AsyncS3(target, connections=connections, read_timeout_s=60.0) as s3:
        await s3.create_bucket(bucket)
        driver = _Driver(s3, bucket, objects, dirs)
        report(f"prepare: PUT {len(objects)} objects into s3://{bucket}/{prefix}/, then read each once")
        await driver.each("put", 32)
        await driver.each("get", 32)
        cells: list[Cell] = []
        offset = random.Random(params.seed).randrange(len(objects))
        try:
            for op in params.ops:
                for level in params.concurrency_levels:
                    report(f"{op.upper():4} concurrency {level:3}: {params.duration_s:g} s")
                    cell = await driver.cell(op, level, params.duration_s, offset)
                    offset += cell.requests
                    cells.append(cell)
        finally:
            report(f"cleanup: deleting the {len(objects)} objects")
            await s3.delete_prefix(bucket, prefix + "/")
    sizes = {s: [len(b) for k, b in objects if f"/{s}/" in k] for s in ("pose", "gripper")}
    return {
        "benchmark": "small_files",
        "endpoint": target.endpoint,
        "bucket": bucket,
        "prefix": prefix,
        "machine": {"cpus": os.cpu_count() or 0, "platform": platform.platform(),
                    "python": platform.python_version()},
        "params": dataclasses.asdict(params),
        "object_bytes": {s: {"count": len(v), "mean": round(sum(v) / len(v)) if v else 0} for s, v in sizes.items()},
        "cells": [c.as_dict() for c in cells],
    }


def run(target: S3Target, params: SmallFileBenchParams, report: Any = print,
        bucket: str = BENCH_BUCKET) -> dict[str, Any]:  # fmt: skip
    """Run the benchmark against `target` and return its results document."""
    return run_async(_run(target, params, report, bucket))


def markdown(doc: dict[str, Any]) -> str:
    p = doc["params"]
    sizes = ", ".join(f"{s} ~{v['mean'] / 1000:.1f} KB" for s, v in doc["object_bytes"].items())
    lines = [
        f"# Small-file benchmark — {p['objects']} objects ({sizes}), {p['duration_s']:g} s per cell",
        "",
        f"Endpoint: `{doc['endpoint']}`. LIST lists one directory of {p['objects_per_dir']} keys per request "
        "(objects/s counts keys). GET reads warm objects.",
        "",
        "| op | concurrency | objects/s | requests/s | MB/s | p50 ms | p90 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in doc["cells"]:
        lat = c["latency_ms"]
        lines.append(f"| {c['op'].upper()} | {c['concurrency']} | {c['objects_per_s']:,.0f} | "
                     f"{c['requests_per_s']:,.0f} | {c['mb_per_s']:.2f} | {lat.get('p50', '')} | "
                     f"{lat.get('p90', '')} | {lat.get('p99', '')} | {c['errors']} |")  # fmt: skip
    return "\n".join(lines) + "\n"
