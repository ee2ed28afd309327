"""small_file_performance: GET of many small pose and gripper JSON objects through every path, plus PUT/HEAD/LIST.

The bodies are shaped like the generator's per-episode files (timestamps, UR5e joints, tool
pose; gripper width and force) with `frames_per_object` frames, so sizes are realistic: at 60
frames a pose object is ~12 KB and a gripper object ~1.7 KB. Keys sit in directories of
`objects_per_dir` (``<run>/d0003/pose/episode_00312.json``), which is what LIST enumerates.

One run; at every concurrency level, GET through each path (`paths`):
  direct             MinIO node 1 (or the given MinIO endpoint), no cache;
  accelerator cold   `objects` fresh objects written straight to MinIO, each read once through
                     the accelerator (every read a miss: cache fill included);
  accelerator warm   the accelerator after every object was read once through it;
  accelerator batch  the accelerator's batch GET, `batch_size` keys per request (objects/s counts keys);
then PUT (overwrite in turn), HEAD and LIST (ListObjectsV2 of one directory; keys/s) against the
accelerator or `ops_endpoint`. Each timed cell has the warm-up first (cold reads have none: a
warm-up would warm them) and lasts `duration_s`. Requests come from our own drivers: ObjectReader
(raw keep-alive HTTP, see `bench warp-check` for how it compares with warp) for GET, AsyncS3 for
the rest. Nothing is retried: errors are counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import random
import time
from typing import Any

import numpy as np

from robolake.accelerator.client import AsyncBatchClient
from robolake.bench import core, report, results
from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.storage.aio import run_async
from robolake.storage.errors import S3Error
from robolake.storage.integrity import content_md5, md5_of
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target
from robolake.umi.naming import episode_file

TITLE = "Small-file performance"
BENCH_BUCKET = "robolake-bench-small"
OPS = ("put", "get", "head", "list")
PATHS = ("direct", "accelerator cold", "accelerator warm", "accelerator batch")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SmallFileBenchParams:
    objects: int = 2000
    frames_per_object: int = 60
    objects_per_dir: int = 100
    concurrency_levels: tuple[int, ...] = (1, 8, 32)
    duration_s: float = 5.0
    warmup_s: float = 1.0
    ops: tuple[str, ...] = OPS
    paths: tuple[str, ...] = PATHS
    batch_size: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objects < 2 or self.frames_per_object < 1 or self.objects_per_dir < 2 or self.duration_s <= 0:
            raise ConfigError("objects >= 2, frames_per_object >= 1, objects_per_dir >= 2, duration_s > 0")
        if self.warmup_s < 0 or not 1 <= self.batch_size <= 1000:
            raise ConfigError(f"warm-up {self.warmup_s:g} must be >= 0 and the batch size 1..1000")
        if not self.concurrency_levels or min(self.concurrency_levels) < 1:
            raise ConfigError(f"concurrency levels {self.concurrency_levels!r} must be positive")
        unknown = set(self.ops) - set(OPS)
        if unknown:
            raise ConfigError(f"unknown ops {sorted(unknown)}; choose from {', '.join(OPS)}")
        unknown = set(self.paths) - set(PATHS)
        if unknown:
            raise ConfigError(f"unknown paths {sorted(unknown)}; choose from {', '.join(PATHS)}")


SMOKE = SmallFileBenchParams(objects=300, concurrency_levels=(1, 8), duration_s=1.0, warmup_s=0.3)


# ---- bodies ------------------------------------------------------------------------------------


def _arrays_json(rng: np.random.Generator, sensor: str, frames: int) -> str:
    t = np.round(np.arange(frames) / 59.94006, 6).tolist()
    if sensor == "gripper":
        width = np.round(np.clip(rng.normal(0.05, 0.02, frames), 0, 0.085), 6).tolist()
        force = np.round(np.clip(rng.normal(5, 3, frames), 0, None), 3).tolist()
        body: dict[str, Any] = {"timestamps_s": t, "max_width_m": 0.085, "width_m": width, "force_n": force}
    else:
        body = {
            "timestamps_s": t,
            "robot": "UR5e",
            "joint_positions_rad": np.round(rng.normal(0, 1.5, (frames, 6)), 6).tolist(),
            "eef_position_m": np.round(rng.normal(0.4, 0.1, (frames, 3)), 6).tolist(),
            "eef_quaternion_xyzw": np.round(rng.normal(0, 0.5, (frames, 4)), 7).tolist(),
            "eef_rot_axis_angle": np.round(rng.normal(0, 1.0, (frames, 3)), 6).tolist(),
        }
    return json.dumps(body, separators=(",", ":"))[1:]  # without the opening brace


def make_bodies(params: SmallFileBenchParams, prefix: str) -> list[tuple[str, bytes]]:
    """(key, body) for every object: half pose, half gripper, deterministic for the seed."""
    rng = np.random.default_rng(params.seed)
    pool = {s: [_arrays_json(rng, s, params.frames_per_object) for _ in range(16)] for s in ("pose", "gripper")}
    out = []
    for i in range(params.objects):
        sensor = "pose" if i % 2 == 0 else "gripper"
        key = f"{prefix}/d{i // params.objects_per_dir:04d}/{sensor}/{episode_file(i, 'json')}"
        head = f'{{"schema_version":1,"episode_index":{i},"fps":59.94006,"frame_count":{params.frames_per_object},'
        out.append((key, (head + pool[sensor][i % 16]).encode() + b"\n"))
    return out


# ---- the drivers --------------------------------------------------------------------------------


def _discard(_: memoryview) -> None:
    return None


class _Run:
    """PUT/HEAD/LIST with AsyncS3 (against the accelerator or the given endpoint), and the untimed PUTs."""

    def __init__(
        self,
        s3: AsyncS3,
        objects: list[tuple[str, bytes]],
        dirs: list[str],
        params: SmallFileBenchParams,
        bucket: str,
        say: core.Reporter,
    ) -> None:
        self.s3, self.objects, self.dirs, self.params, self.bucket, self.say = s3, objects, dirs, params, bucket, say
        self.md5s = [content_md5(md5_of(body)) for _, body in objects]
        self.put_headers = {"content-type": "application/json"}
        self.rng = random.Random(params.seed)

    async def op(self, op: str, index: int, series: core.Series) -> None:
        i = index % len(self.objects)
        key, body = self.objects[i]
        began = time.perf_counter()  # not loop.time(): uvloop rounds it to milliseconds
        if op == "put":
            await self.s3.put_object(self.bucket, key, body, content_md5=self.md5s[i], headers=self.put_headers)
            count, nbytes = 1, len(body)
        elif op == "head":
            if await self.s3.head_object(self.bucket, key) is None:
                raise S3Error(f"HEAD {key}: 404", status=404)
            count, nbytes = 1, 0
        else:
            listed, _, nbytes = await self.s3.list_page(self.bucket, self.dirs[index % len(self.dirs)], metadata=False)
            count = len(listed)
        series.ok(count, nbytes, time.perf_counter() - began)

    async def put_all(self, s3: AsyncS3, objects: list[tuple[str, bytes]]) -> None:
        """Every object once, retried, not timed."""
        todo = iter(objects)

        async def worker() -> None:
            for key, body in todo:
                md5 = content_md5(md5_of(body))
                await s3.call(
                    functools.partial(s3.put_object, self.bucket, key, body, content_md5=md5, headers=self.put_headers)
                )

        await asyncio.gather(*(worker() for _ in range(32)))


async def _read_all(reader: ObjectReader, bucket: str, keys: list[str]) -> None:
    todo = iter(keys)

    async def worker() -> None:
        for key in todo:
            await reader.get(bucket, key, sink=_discard)

    await asyncio.gather(*(worker() for _ in range(16)))


def _batch_op(batcher: AsyncBatchClient, bucket: str, keys: list[str], size: int, seed: int) -> core.Operation:
    rng = random.Random(seed)

    async def one(index: int, series: core.Series) -> None:
        start = rng.randrange(0, max(1, len(keys) - size + 1))
        items, got = await batcher.get_batch(bucket, keys[start : start + size])
        missing = [i.key for i in items if not i.ok]
        if got.status != 200 or len(items) != len(keys[start : start + size]) or missing:
            raise S3Error(
                f"batch GET answered {got.status} with {len(items)} members, missing {missing[:3]}",
                status=got.status or 0,
            )
        series.ok(len(items), sum(len(i.body or b"") for i in items), got.seconds, got.ttfb_s)

    return one


class _GetCells:
    """The GET paths of one run: direct, accelerator cold, warm and batch, over their readers."""

    def __init__(
        self,
        runner: _Run,
        s3_direct: AsyncS3,
        direct: ObjectReader,
        accel: ObjectReader,
        run_id: str,
        spec: core.RunSpec,
        progress: core.Steps,
    ) -> None:
        self.runner, self.s3_direct, self.direct, self.accel = runner, s3_direct, direct, accel
        self.run_id, self.spec, self.progress = run_id, spec, progress
        self.keys = [k for k, _ in runner.objects]

    async def prepare(self, paths: list[str], say: core.Reporter) -> None:
        runner = self.runner
        await self.s3_direct.create_bucket(runner.bucket)
        say(
            f"prepare: PUT {len(self.keys)} objects into s3://{runner.bucket}/{self.run_id}/ (direct to MinIO, "
            "not timed)"
        )
        await runner.put_all(self.s3_direct, runner.objects)
        if any(p in paths for p in ("accelerator warm", "accelerator batch")):
            say("prepare: every object read once through the accelerator (warm cache)")
            await _read_all(self.accel, runner.bucket, self.keys)

    async def cell(self, path: str, level: int) -> core.Series:
        params, bucket, seconds = self.runner.params, self.runner.bucket, f"{self.runner.params.duration_s:g} s"
        cell = core.Series(path, "GET", level)
        if path == "direct":
            self.progress(f"direct GET, {level} concurrent, {seconds}")
            return await core.measured(core.get_op(self.direct, bucket, self.keys), cell, self.spec)
        if path == "accelerator warm":
            self.progress(f"accelerator warm GET, {level} concurrent, {seconds}")
            return await core.measured(core.get_op(self.accel, bucket, self.keys), cell, self.spec)
        if path == "accelerator batch":
            cell.extra["label"] = f"accelerator batch GET ({params.batch_size} keys/request)"
            self.progress(f"accelerator batch GET ({params.batch_size} keys/request), {level} concurrent, {seconds}")
            op = _batch_op(AsyncBatchClient(self.accel), bucket, self.keys, params.batch_size, params.seed + level)
            return await core.measured(op, cell, self.spec)
        return await self.cold(cell, level)

    async def cold(self, cell: core.Series, level: int) -> core.Series:
        """Fresh objects, each read once through the accelerator: every read a miss, no warm-up."""
        cold = [(f"{self.run_id}-cold/c{level}/{k.split('/', 1)[1]}", b) for k, b in self.runner.objects]
        self.runner.say(f"prepare: {len(cold)} fresh objects straight to MinIO for the cold cell")
        await self.runner.put_all(self.s3_direct, cold)
        self.progress(f"accelerator cold GET, {level} concurrent, each of {len(cold)} objects once")
        keys = [k for k, _ in cold]
        return await core.closed_loop(
            core.get_op(self.accel, self.runner.bucket, keys), cell, level, duration_s=3600, operations=len(keys)
        )


async def _run(
    settings: Settings,
    params: SmallFileBenchParams,
    say: core.Reporter,
    bucket: str,
    direct: S3Target,
    ops_target: S3Target,
    run_id: str,
) -> tuple[list[core.Series], dict[str, Any]]:
    accel = S3Target.from_settings(settings)
    objects = make_bodies(params, run_id)
    dirs = sorted({key.rsplit("/", 2)[0] + "/" for key, _ in objects})
    spec = core.RunSpec(
        seed=params.seed, warmup_s=params.warmup_s, duration_s=params.duration_s, concurrency=params.concurrency_levels
    )
    get_paths = [p for p in PATHS if p in params.paths] if "get" in params.ops else []
    other_ops = [o for o in params.ops if o != "get"]
    progress = core.Steps(say, len(params.concurrency_levels) * (len(get_paths) + len(other_ops)))
    where = "accelerator" if ops_target.endpoint == accel.endpoint else ops_target.endpoint
    top = max(params.concurrency_levels)
    async with (
        AsyncS3(direct, connections=40, read_timeout_s=60.0) as s3_direct,
        AsyncS3(ops_target, connections=top + 4, read_timeout_s=60.0) as s3_ops,
        ObjectReader(direct, connections=top, buffer_size=256 * 1024) as direct_reader,
        ObjectReader(accel, connections=top, buffer_size=256 * 1024) as accel_reader,
    ):
        runner = _Run(s3_ops, objects, dirs, params, bucket, say)
        cells = _GetCells(runner, s3_direct, direct_reader, accel_reader, run_id, spec, progress)
        await cells.prepare(get_paths, say)
        try:
            series = [await cells.cell(path, level) for level in params.concurrency_levels for path in get_paths]
            for op_name in other_ops:
                for level in params.concurrency_levels:
                    progress(f"{op_name.upper()} via {where}, {level} concurrent, {params.duration_s:g} s")
                    cell = core.Series(where, op_name.upper(), level, unit="keys" if op_name == "list" else "objects")
                    start = runner.rng.randrange(len(objects))
                    series.append(await core.measured(functools.partial(runner.op, op_name), cell, spec, start=start))
        finally:
            say("cleanup: deleting the benchmark's objects")
            await s3_direct.delete_prefix(bucket, run_id + "/")
            await s3_direct.delete_prefix(bucket, run_id + "-cold/")
    sizes = {s: [len(b) for k, b in objects if f"/{s}/" in k] for s in ("pose", "gripper")}
    return series, {s: {"count": len(v), "mean": round(sum(v) / len(v)) if v else 0} for s, v in sizes.items()}


def run(
    settings: Settings,
    params: SmallFileBenchParams,
    report_line: core.Reporter = print,
    *,
    direct_endpoint: str | None = None,
    ops_endpoint: str | None = None,
    bucket: str = BENCH_BUCKET,
) -> dict[str, Any]:
    """Run the benchmark; `direct_endpoint` is the MinIO endpoint of the direct path (default: node 1),
    `ops_endpoint` where PUT/HEAD/LIST go (default: the accelerator)."""
    run_id = results.new_run_id("small-files")
    started = core.now()
    direct = S3Target.from_settings(settings, direct_endpoint or settings.minio_endpoints[0])
    ops_target = S3Target.from_settings(settings, ops_endpoint)
    series, object_bytes = run_async(_run(settings, params, report_line, bucket, direct, ops_target, run_id))
    summary: dict[str, Any] = {"direct_endpoint": direct.endpoint, "ops_endpoint": ops_target.endpoint}
    top = max(params.concurrency_levels)
    at_top = {s.path: s for s in series if s.op == "GET" and s.concurrency == top}
    if "direct" in at_top:
        base = at_top["direct"].count / at_top["direct"].seconds if at_top["direct"].seconds else 0.0
        summary["get_at_concurrency"] = top
        summary["get_objects_per_s"] = {p: round(s.count / s.seconds, 1) for p, s in at_top.items() if s.seconds}
        summary["get_vs_direct"] = {p: core.ratio(s.count / s.seconds, base) for p, s in at_top.items() if s.seconds}
    params_doc = {
        **dataclasses.asdict(params),
        "describe": core.RunSpec(
            seed=params.seed,
            warmup_s=params.warmup_s,
            duration_s=params.duration_s,
            concurrency=params.concurrency_levels,
        ).describe(),
    }
    return core.document(
        "small_file_performance",
        run_id,
        settings,
        params_doc,
        series,
        summary,
        started=started,
        bucket=bucket,
        prefix=run_id,
        object_bytes=object_bytes,
    )


def markdown(doc: dict[str, Any]) -> str:
    p, s = doc["params"], doc["summary"]
    sizes = ", ".join(f"{k} ~{v['mean'] / 1000:.1f} KB" for k, v in doc["object_bytes"].items())
    lines = report.header(doc, f"{TITLE} — {p['objects']} objects ({sizes})")
    lines += [
        f"Spec: {p['describe']}. GET paths: direct = `{s['direct_endpoint']}`; accelerator cold = each object's "
        "first read through the accelerator; warm = after one read; batch = "
        f"{p['batch_size']} keys per request (rate counts objects). PUT/HEAD/LIST via `{s['ops_endpoint']}`; "
        f"LIST reads one directory of {p['objects_per_dir']} keys per request (rate counts keys).",
        "",
    ]
    if s.get("get_vs_direct"):
        lines += [
            f"GET at concurrency {s['get_at_concurrency']}: "
            + ", ".join(
                f"{path} {s['get_objects_per_s'][path]:,.0f} objects/s ({r}x direct)"
                for path, r in s["get_vs_direct"].items()
            )
            + ".",
            "",
        ]
    lines += report.series_table(doc["series"])
    return "\n".join(lines) + "\n"
