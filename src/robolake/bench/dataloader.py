"""dataloader: episodes/s and samples/s reading UMI episodes the way a training DataLoader does.

Two modes. ``--mode training`` (training.py) reads a UMI replay buffer at a lakeFS commit as a
diffusion-policy training run does and compares robolake with UMI's own loader and a naive one.
``--mode json`` (this module, the default) is the per-episode JSON loader below.

A loader step is what a PyTorch ``Dataset.__getitem__`` does for one episode: fetch its pose
and gripper JSON, decode both and build one float32 array of shape (frames, 7) — end-effector
position (3), rotation as axis-angle (3) and gripper width (1), the UMI action layout. A
*sample* is one frame of that array. Episodes come in a seeded shuffled order, a fresh shuffle
per epoch (like a DistributedSampler with a seed); the concurrency levels are loader workers.

Setup: `episodes` synthetic episodes of `frames` frames (seeded; bodies shaped like the
generator's files, tens of KB) are PUT direct to MinIO under
``robolake-bench-loader/<run-id>/{pose,gripper}/episode_XXXXX.json``, then every object is read
once through the accelerator so its paths are measured warm. Per level, each path in turn:
  direct             two GETs per episode (`ObjectReader`) against MinIO node 1;
  accelerator        the same GETs against the accelerator (warm cache);
  accelerator batch  one batch GET per `batch_episodes` episodes (2 keys each; `AsyncBatchClient`
                     on the same raw connections), every member decoded; latency is per request.
Workers are asyncio tasks in one process, so decoding shares one core, as it would in a single
DataLoader worker process. Everything uploaded is deleted at the end.
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

from robolake.accelerator.batch import MAX_KEYS
from robolake.accelerator.client import AsyncBatchClient
from robolake.bench import core, report, results
from robolake.bench.small_files import _arrays_json
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.storage.aio import run_async
from robolake.storage.errors import S3Error
from robolake.storage.integrity import content_md5, md5_of
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target
from robolake.umi.naming import episode_file

TITLE = "Dataloader"
BENCH_BUCKET = "robolake-bench-loader"
PATHS = ("direct", "accelerator", "accelerator batch")
FPS = 59.94006
MAX_FRAMES = 3600  # one minute at 59.94 Hz: a pose object stays well under the accelerator's 1 MB cache limit
BODY_POOL = 16  # distinct bodies per sensor, as in small_files: decoding costs the same, setup stays quick
SETUP_CONCURRENCY = 16


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoaderParams:
    episodes: int = 400
    frames: int = 300  # ≈ 5 s at 59.94 Hz; a pose object is then ~50 KB, a gripper object ~7 KB
    batch_episodes: int = 16  # episodes per batch GET (2 keys each)
    paths: tuple[str, ...] = PATHS

    def __post_init__(self) -> None:
        if not 1 <= self.episodes <= 100_000:
            raise ConfigError(f"--episodes {self.episodes} must be between 1 and 100000")
        if not 1 <= self.frames <= MAX_FRAMES:
            raise ConfigError(
                f"--frames {self.frames} must be between 1 and {MAX_FRAMES} (one minute at 59.94 Hz), "
                "so each object stays under the accelerator's 1 MB cache limit"
            )
        if not 1 <= self.batch_episodes <= min(self.episodes, MAX_KEYS // 2):
            raise ConfigError(
                f"--batch-episodes {self.batch_episodes} must be between 1 and the number of episodes "
                f"({self.episodes}, at most {MAX_KEYS // 2}); lower it or add --episodes"
            )
        unknown = [p for p in self.paths if p not in PATHS]
        if not self.paths or unknown or len(set(self.paths)) != len(self.paths):
            raise ConfigError(
                f"--paths {','.join(self.paths)!r}: give each of {', '.join(PATHS)} at most once "
                f"(unknown: {', '.join(map(repr, unknown)) or 'none'})"
            )


DEFAULT_SPEC = core.RunSpec(warmup_s=2.0, duration_s=15.0, concurrency=(1, 4, 16))
SMOKE_SPEC = core.RunSpec(warmup_s=0.3, duration_s=1.0, concurrency=(1, 4))
SMOKE_PARAMS = LoaderParams(episodes=40, frames=60)


# ---- episodes: bodies, order, decoding ---------------------------------------------------------


def episode_bodies(seed: int, episodes: int, frames: int) -> list[tuple[bytes, bytes]]:
    """(pose JSON, gripper JSON) per episode, deterministic for the seed."""
    rng = np.random.default_rng(seed)
    pool = {s: [_arrays_json(rng, s, frames) for _ in range(min(BODY_POOL, episodes))] for s in ("pose", "gripper")}
    out = []
    for i in range(episodes):
        head = f'{{"schema_version":1,"episode_index":{i},"fps":{FPS},"frame_count":{frames},'
        pose, gripper = (pool[s][i % len(pool[s])] for s in ("pose", "gripper"))
        out.append(((head + pose).encode() + b"\n", (head + gripper).encode() + b"\n"))
    return out


def episode_keys(prefix: str, episodes: int) -> list[tuple[str, str]]:
    return [
        (f"{prefix}/pose/{episode_file(i, 'json')}", f"{prefix}/gripper/{episode_file(i, 'json')}")
        for i in range(episodes)
    ]


class EpochOrder:
    """Position in an endless stream of epochs → episode; each epoch is a fresh shuffle of one seeded RNG."""

    def __init__(self, episodes: int, seed: int) -> None:
        self.episodes = episodes
        self._rng = random.Random(seed)
        self._epochs: list[list[int]] = []

    def episode(self, position: int) -> int:
        epoch, offset = divmod(position, self.episodes)
        while len(self._epochs) <= epoch:
            order = list(range(self.episodes))
            self._rng.shuffle(order)
            self._epochs.append(order)
        return self._epochs[epoch][offset]


def decode_episode(pose: bytes, gripper: bytes) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Both files → float32 (frames, 7): eef position, eef axis-angle, gripper width. ValueError if they disagree."""
    p, g = json.loads(pose), json.loads(gripper)
    position = np.asarray(p["eef_position_m"], dtype=np.float32).reshape(-1, 3)
    rotation = np.asarray(p["eef_rot_axis_angle"], dtype=np.float32).reshape(-1, 3)
    width = np.asarray(g["width_m"], dtype=np.float32).reshape(-1, 1)
    lengths = {len(p["timestamps_s"]), len(g["timestamps_s"]), len(position), len(rotation), len(width)}
    if len(lengths) != 1:
        raise ValueError(
            f"episode {p.get('episode_index')!r}: pose and gripper disagree on the frame count ({sorted(lengths)})"
        )
    return np.concatenate([position, rotation, width], axis=1)


def _record(series: core.Series, episodes: int, samples: int, nbytes: int, latency_s: float) -> None:
    series.ok(episodes, nbytes, latency_s)
    series.extra["samples"] = series.extra.get("samples", 0) + samples


# ---- the paths ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Data:
    bucket: str
    keys: list[tuple[str, str]]  # (pose, gripper) per episode
    frames: int

    def check(self, sample: np.ndarray[Any, Any], keys: tuple[str, str], path: str) -> int:
        if sample.shape != (self.frames, 7):
            raise RobolakeError(
                f"{path}: {keys[0]} decoded to shape {sample.shape}, expected ({self.frames}, 7); "
                "the path returned the wrong bytes"
            )
        return int(sample.shape[0])


async def _object_cell(target: S3Target, data: _Data, path: str, level: int, spec: core.RunSpec) -> core.Series:
    order = EpochOrder(len(data.keys), spec.seed)
    async with ObjectReader(target, connections=2 * level) as reader:

        async def one(index: int, series: core.Series) -> None:
            keys = data.keys[order.episode(index)]
            began = time.perf_counter()
            pose, gripper = await asyncio.gather(reader.get(data.bucket, keys[0]), reader.get(data.bucket, keys[1]))
            frames = data.check(decode_episode(pose.body, gripper.body), keys, path)
            _record(series, 1, frames, pose.size + gripper.size, time.perf_counter() - began)

        return await core.measured(one, core.Series(path, "load", level, unit="episodes"), spec)


async def _batch_cell(target: S3Target, data: _Data, per_request: int, level: int, spec: core.RunSpec) -> core.Series:
    order = EpochOrder(len(data.keys), spec.seed)
    async with ObjectReader(target, connections=level) as reader:
        client = AsyncBatchClient(reader)

        async def one(index: int, series: core.Series) -> None:
            episodes = [data.keys[order.episode(index * per_request + j)] for j in range(per_request)]
            wanted = [key for pair in episodes for key in pair]
            began = time.perf_counter()
            items, answer = await client.get_batch(data.bucket, wanted)
            if [item.key for item in items] != wanted:
                raise RobolakeError(
                    f"batch GET answered {len(items)} members, not the {len(wanted)} keys asked for "
                    "in order; the batch path is broken"
                )
            missing = [item for item in items if not item.ok]
            if missing:
                raise S3Error(
                    f"batch GET: {missing[0].key} came back as {missing[0].error} ({len(missing)} of "
                    f"{len(wanted)} missing)",
                    status=404,
                    code=missing[0].error,
                    method="POST",
                    target=missing[0].key,
                )
            bodies = [item.body for item in items if item.body is not None]
            frames = sum(
                data.check(decode_episode(bodies[2 * j], bodies[2 * j + 1]), pair, "accelerator batch")
                for j, pair in enumerate(episodes)
            )
            _record(series, per_request, frames, answer.size, time.perf_counter() - began)

        series = core.Series(
            "accelerator batch",
            f"load {per_request}/request",
            level,
            unit="episodes",
            extra={"episodes_per_request": per_request},
        )
        return await core.measured(one, series, spec)


def samples_series(episodes: core.Series) -> core.Series:
    """The same cell counted in samples (frames decoded); latency stays with the episode series."""
    return core.Series(
        episodes.path,
        episodes.op,
        episodes.concurrency,
        unit="samples",
        count=episodes.extra.get("samples", 0),
        requests=episodes.requests,
        bytes=episodes.bytes,
        errors=episodes.errors,
        seconds=episodes.seconds,
    )


# ---- the run -----------------------------------------------------------------------------------


async def _setup(direct: S3Target, accel: S3Target | None, data: _Data, bodies: list[tuple[bytes, bytes]]) -> None:
    """PUT every object direct to MinIO (retried), then read each once through the accelerator."""
    objects = [(k, b) for keys, pair in zip(data.keys, bodies, strict=True) for k, b in zip(keys, pair, strict=True)]
    async with AsyncS3(direct, connections=SETUP_CONCURRENCY) as s3:
        await s3.create_bucket(data.bucket)
        todo = iter(objects)
        headers = {"content-type": "application/json"}

        async def put() -> None:
            for key, body in todo:
                await s3.call(
                    functools.partial(
                        s3.put_object, data.bucket, key, body, content_md5=content_md5(md5_of(body)), headers=headers
                    )
                )

        await asyncio.gather(*(put() for _ in range(SETUP_CONCURRENCY)))
    if accel is not None:
        async with ObjectReader(accel, connections=SETUP_CONCURRENCY) as reader:
            await asyncio.gather(*(reader.get(data.bucket, key) for key, _ in objects))


async def _cleanup(target: S3Target, bucket: str, prefix: str) -> int:
    async with AsyncS3(target, connections=4) as s3:
        return await s3.delete_prefix(bucket, prefix)


def run(settings: Settings, spec: core.RunSpec, params: LoaderParams, report_line: core.Reporter) -> dict[str, Any]:
    """Run the workload; return its results document."""
    run_id = results.new_run_id("dataloader")
    started = core.now()
    direct = S3Target.from_settings(settings, settings.minio_endpoints[0])
    accel = S3Target.from_settings(settings)
    uses_accel = any(p != "direct" for p in params.paths)
    # deleting through the accelerator also drops the bench bucket from its cache
    cleaner = accel if uses_accel else direct
    data = _Data(BENCH_BUCKET, episode_keys(run_id, params.episodes), params.frames)
    bodies = episode_bodies(spec.seed, params.episodes, params.frames)
    total = len(spec.concurrency) * len(params.paths)
    series: list[core.Series] = []
    try:
        report_line(
            f"prepare: PUT {2 * params.episodes} objects ({params.episodes} episodes of {params.frames} "
            f"frames) into s3://{BENCH_BUCKET}/{run_id}/"
            + (", then read each once through the accelerator" if uses_accel else "")
        )
        run_async(_setup(direct, accel if uses_accel else None, data, bodies))
        step = 0
        for level in spec.concurrency:  # paths interleaved per level: drift hits every path alike
            for path in params.paths:
                step += 1
                workers = f"{level} worker{'s' if level > 1 else ''}"
                report_line(f"[{step}/{total}] {path}, {workers}: {_amount(spec, path)}")
                if path == "accelerator batch":
                    cell = run_async(_batch_cell(accel, data, params.batch_episodes, level, spec))
                else:
                    cell = run_async(_object_cell(direct if path == "direct" else accel, data, path, level, spec))
                series += [cell, samples_series(cell)]
    finally:
        report_line(f"cleanup: deleting s3://{BENCH_BUCKET}/{run_id}/")
        run_async(_cleanup(cleaner, BENCH_BUCKET, run_id + "/"))
    sizes = {s: round(sum(len(pair[i]) for pair in bodies) / len(bodies)) for i, s in enumerate(("pose", "gripper"))}
    summary = _summary(series, max(spec.concurrency), sizes)
    return core.document(
        "dataloader",
        run_id,
        settings,
        {**dataclasses.asdict(params), "bucket": BENCH_BUCKET, "spec": core.spec_dict(spec)},
        series,
        summary,
        started=started,
    )


def _amount(spec: core.RunSpec, path: str) -> str:
    if not spec.operations:
        return f"{spec.duration_s:g} s"
    return f"{spec.operations} requests" if path == "accelerator batch" else f"{spec.operations} episodes"


def _summary(series: list[core.Series], top: int, object_bytes: dict[str, int]) -> dict[str, Any]:
    """Per path at the highest level: episodes/s, samples/s, latency; and the ratios against direct."""
    paths: dict[str, dict[str, Any]] = {}
    for s in series:
        if s.concurrency != top:
            continue
        row = paths.setdefault(s.path, {})
        row[f"{s.unit}_per_s"] = s.as_dict()["per_s"]
        if s.unit == "episodes":
            lat = core.percentiles_ms(s.latencies_s)
            row.update(latency_p50_ms=lat.get("p50"), latency_p99_ms=lat.get("p99"), errors=s.errors)
    direct = paths.get("direct", {}).get("episodes_per_s", 0.0)

    def vs_direct(path: str) -> float | None:
        return core.ratio(paths[path]["episodes_per_s"], direct) if path in paths else None

    return {
        "concurrency": top,
        "paths": paths,
        "object_bytes": object_bytes,
        "accelerator_vs_direct": vs_direct("accelerator"),
        "batch_vs_direct": vs_direct("accelerator batch"),
    }


def markdown(doc: dict[str, Any]) -> str:
    if doc["params"].get("mode") == "training":
        from robolake.bench import training

        return training.markdown(doc)
    p, s = doc["params"], doc["summary"]
    lines = report.header(doc, f"{TITLE} — {p['episodes']} UMI episodes of {p['frames']} frames")
    lines += [
        f"Spec: {p['spec']['describe']}. An *episode* is one loader step: GET its pose and gripper JSON "
        f"(~{s['object_bytes']['pose'] / 1000:.0f} KB and ~{s['object_bytes']['gripper'] / 1000:.0f} KB), "
        "decode both and build a float32 (frames, 7) array (eef position, axis-angle, gripper width); a "
        "*sample* is one frame of it. Episodes are read in a seeded shuffle per epoch; concurrency is the "
        f"number of loader workers. Latency is per episode, per request of {p['batch_episodes']} episodes "
        "for the batch path.",
        "",
        *report.series_table(doc["series"]),
        "",
        f"## At {s['concurrency']} workers",
        "",
        "| path | episodes/s | samples/s | p50 ms | p99 ms | vs direct |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ratios = {
        "direct": 1.0 if "direct" in s["paths"] else None,
        "accelerator": s["accelerator_vs_direct"],
        "accelerator batch": s["batch_vs_direct"],
    }
    for path, row in s["paths"].items():
        ratio = ratios.get(path)
        p50, p99 = (row.get(f"latency_{q}_ms") for q in ("p50", "p99"))
        lines.append(
            f"| {path} | {row.get('episodes_per_s', 0):,.1f} | {row.get('samples_per_s', 0):,.0f} | "
            f"{'' if p50 is None else f'{p50:.2f}'} | {'' if p99 is None else f'{p99:.2f}'} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return "\n".join(lines) + "\n"
