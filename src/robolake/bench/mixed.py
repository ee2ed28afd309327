"""Mixed workload: concurrent robotics traffic, direct to MinIO and through the accelerator.

Four kinds of client run at the same time, each a closed loop of its own workers, each
recorded in its own series (path x op x concurrency):
  loader  GET small    one pose or gripper JSON (~12 KB / ~1.7 KB, as small_files makes them);
  stream  GET video    one whole video object (`video_bytes`), streamed and discarded; TTFB kept;
  upload  PUT episode  a new episode: its pose JSON, gripper JSON and a video chunk
                       (`episode_video_bytes`), the three PUTs at once; one episode per request;
  list    LIST         ListObjectsV2 of one directory of small objects (one sensor's
                       objects_per_dir / 2 keys); the rate counts keys listed.

Concurrency convention: a level L of the sweep is the total number of concurrent workers,
split across the kinds in proportion to the mix weights (largest remainder), with at least one
worker for every kind whose weight is above zero. So with the default mix 12:2:2:1, L=16 runs
loader 11, stream 2, upload 2, list 1; a level below the number of active kinds still runs one
worker per kind. Every series carries its level as `concurrency` and its own count as `workers`.

A cell (one path at one level) is a warm-up of `warmup_s` with every kind running (thrown
away), then the measured period: `duration_s`, or with `operations` that many operations per
kind (kinds that finish early stop, so prefer a duration for a steady mix). Keys are drawn in
an order fixed by the seed. Objects are prepared (PUT direct to MinIO node 1, untimed) in the
bucket robolake-bench-mixed under the run id, the accelerator is warmed by reading every small
object once before its first cell (caching is its job; videos are above its size limit and
stream through), and everything under the run id is deleted at the end. Reads use the raw
`ObjectReader` and writes and listings `AsyncS3`: both cost the client little CPU, which on a
small machine is shared with the servers, so figures are a floor of what the servers can do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from robolake.bench import report as reports
from robolake.bench import results
from robolake.bench.core import Reporter, RunSpec, Series, closed_loop, document, now, ratio, spec_dict
from robolake.bench.small_files import SmallFileBenchParams, make_bodies
from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.storage.aio import run_async
from robolake.storage.errors import S3Error
from robolake.storage.integrity import MIB as MiB
from robolake.storage.integrity import content_md5, md5_of
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target
from robolake.umi.naming import episode_file

TITLE = "Mixed workload"
BENCH_BUCKET = "robolake-bench-mixed"
KINDS = ("loader", "stream", "upload", "list")
OPS = {
    "loader": ("GET small", "objects"),
    "stream": ("GET video", "streams"),
    "upload": ("PUT episode", "episodes"),
    "list": ("LIST", "keys"),
}
PATHS = ("direct", "accelerator")
DEFAULT_MIX = {"loader": 12, "stream": 2, "upload": 2, "list": 1}


def parse_mix(text: str) -> dict[str, int]:
    """`loader=12,stream=2,upload=2,list=1` → weights per kind; a kind left out gets weight 0."""
    mix: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, sep, raw = (s.strip() for s in part.partition("="))
        if not sep:
            raise ConfigError(f"--mix {text!r}: {part!r} is not KIND=WEIGHT, e.g. loader=12,stream=2,upload=2,list=1")
        if kind not in KINDS:
            raise ConfigError(f"--mix {text!r}: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        if kind in mix:
            raise ConfigError(f"--mix {text!r}: {kind!r} is given twice; give each kind once")
        try:
            mix[kind] = int(raw)
        except ValueError:
            raise ConfigError(
                f"--mix {text!r}: weight {raw!r} of {kind!r} is not a whole number, e.g. {kind}=2"
            ) from None
    _check_mix(mix, f"--mix {text!r}")
    return mix


def _check_mix(mix: dict[str, int], where: str) -> None:
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise ConfigError(f"{where}: unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    bad = {k: w for k, w in mix.items() if not 0 <= w <= 1024}
    if bad:
        raise ConfigError(f"{where}: weights {bad} must be 0..1024 (0 leaves a kind out)")
    if not any(mix.values()):
        raise ConfigError(f"{where}: every weight is 0; give at least one kind a weight, e.g. loader=1")


def split_workers(mix: dict[str, int], level: int) -> dict[str, int]:
    """Workers per kind at a level: proportional to the weights, at least one per active kind."""
    active = {k: mix[k] for k in KINDS if mix.get(k, 0) > 0}
    weight = sum(active.values())
    shares = {k: level * w / weight for k, w in active.items()}
    counts = {k: int(share) for k, share in shares.items()}
    by_remainder = sorted(active, key=lambda k: (counts[k] - shares[k], KINDS.index(k)))
    for k in by_remainder[: level - sum(counts.values())]:
        counts[k] += 1
    for k in active:  # a kind with a weight always runs; its worker comes from the largest kind if it can
        if counts[k] == 0:
            counts[k] = 1
            largest = max(counts, key=lambda j: (counts[j], -KINDS.index(j)))
            if counts[largest] > 1 and sum(counts.values()) > level:
                counts[largest] -= 1
    return counts


@dataclasses.dataclass(frozen=True, kw_only=True)
class MixedParams:
    """What the traffic is made of (how long and how hard is the RunSpec)."""

    mix: dict[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MIX))
    small_objects: int = 1000
    frames_per_object: int = 60  # pose ~12 KB, gripper ~1.7 KB
    objects_per_dir: int = 100  # what one LIST enumerates
    video_bytes: int = 16 * MiB
    videos: int = 4
    episode_video_bytes: int = 512 * 1024  # the video chunk each uploaded episode carries; 0: none
    paths: tuple[str, ...] = PATHS

    def __post_init__(self) -> None:
        _check_mix(self.mix, f"mix {self.mix!r}")
        if self.small_objects < 2 or self.objects_per_dir < 2 or self.frames_per_object < 1:
            raise ConfigError(
                f"small objects {self.small_objects}, objects per directory {self.objects_per_dir} "
                f"and frames {self.frames_per_object}: give at least 2, 2 and 1"
            )
        if self.videos < 1 or not 1 <= self.video_bytes <= 1024 * MiB:
            raise ConfigError(
                f"{self.videos} videos of {self.video_bytes} bytes: give at least 1 video of 1 byte to 1 GiB"
            )
        if not 0 <= self.episode_video_bytes <= 64 * MiB:
            raise ConfigError(f"episode video chunk {self.episode_video_bytes} bytes: give 0 to 64 MiB")
        if not self.paths or set(self.paths) - set(PATHS) or len(set(self.paths)) != len(self.paths):
            raise ConfigError(f"paths {self.paths!r}: give each of {', '.join(PATHS)} at most once")


DEFAULT_SPEC = RunSpec(seed=0, warmup_s=3.0, duration_s=20.0, concurrency=(4, 16, 32))
SMOKE_SPEC = RunSpec(seed=0, warmup_s=0.5, duration_s=1.5, concurrency=(4,))
SMOKE_PARAMS = MixedParams(small_objects=300, video_bytes=2 * MiB, videos=2, episode_video_bytes=256 * 1024)


def _discard(_: memoryview) -> None:
    return None


@dataclasses.dataclass
class _Objects:
    """The run's keys and bodies, and the seeded order every kind walks them in."""

    prefix: str
    params: MixedParams
    seed: int

    def __post_init__(self) -> None:
        p = self.params
        self.small = make_bodies(
            SmallFileBenchParams(
                objects=p.small_objects,
                frames_per_object=p.frames_per_object,
                objects_per_dir=p.objects_per_dir,
                seed=self.seed,
            ),
            self.prefix,
        )
        self.small_md5 = [content_md5(md5_of(body)) for _, body in self.small]
        self.videos = [f"{self.prefix}/video/{episode_file(i, 'mp4')}" for i in range(p.videos)]
        self.dirs = sorted({key.rsplit("/", 1)[0] + "/" for key, _ in self.small})
        rng = random.Random(self.seed)
        self.small_order = rng.sample(range(len(self.small)), len(self.small))
        self.video_order = [rng.randrange(len(self.videos)) for _ in range(64)]
        self.dir_order = [rng.randrange(len(self.dirs)) for _ in range(256)]
        self.chunk = np.random.default_rng(self.seed + 1).bytes(p.episode_video_bytes)
        self.chunk_md5 = content_md5(md5_of(self.chunk))
        self.episodes = itertools.count()  # every uploaded episode gets new keys, on every path

    async def prepare(self, s3: AsyncS3, report: Reporter) -> None:
        """Every small object and video PUT once (retried, untimed)."""
        report(
            f"prepare: {len(self.small)} small objects and {len(self.videos)} videos of "
            f"{self.params.video_bytes / MiB:g} MiB into s3://{BENCH_BUCKET}/{self.prefix}/"
        )
        await s3.create_bucket(BENCH_BUCKET)
        todo = iter(range(len(self.small)))

        async def put_small() -> None:
            for i in todo:
                key, body = self.small[i]
                await s3.call(functools.partial(s3.put_object, BENCH_BUCKET, key, body, content_md5=self.small_md5[i]))

        await asyncio.gather(*(put_small() for _ in range(16)))
        rng = np.random.default_rng(self.seed + 2)
        for key in self.videos:  # one at a time: a whole video is held in memory
            body = rng.bytes(self.params.video_bytes)
            await s3.call(
                functools.partial(s3.put_object, BENCH_BUCKET, key, body, content_md5=content_md5(md5_of(body)))
            )


class _Traffic:
    """The four kinds of operation against one endpoint, over one reader and one S3 session."""

    def __init__(self, reader: ObjectReader, s3: AsyncS3, objects: _Objects) -> None:
        self.reader, self.s3, self.o = reader, s3, objects

    def ops(self) -> dict[str, Callable[[int, Series], Awaitable[None]]]:
        return {"loader": self.get_small, "stream": self.get_video, "upload": self.put_episode, "list": self.list}

    async def get_small(self, index: int, series: Series) -> None:
        key, _ = self.o.small[self.o.small_order[index % len(self.o.small)]]
        t0 = time.perf_counter()
        got = await self.reader.get(BENCH_BUCKET, key, sink=_discard)
        series.ok(1, got.size, time.perf_counter() - t0, got.ttfb_s)

    async def get_video(self, index: int, series: Series) -> None:
        key = self.o.videos[self.o.video_order[index % len(self.o.video_order)]]
        t0 = time.perf_counter()
        got = await self.reader.get(BENCH_BUCKET, key, sink=_discard)
        if got.size != self.o.params.video_bytes:  # a short stream would flatter the figures
            raise S3Error(f"GET {BENCH_BUCKET}/{key}: {got.size} bytes, expected {self.o.params.video_bytes}", status=0)
        series.ok(1, got.size, time.perf_counter() - t0, got.ttfb_s)

    async def put_episode(self, index: int, series: Series) -> None:
        o = self.o
        base = f"{o.prefix}/uploads/episode_{next(o.episodes):07d}"
        pose, gripper = (2 * index) % len(o.small), (2 * index + 1) % len(o.small)
        parts = [
            (f"{base}/pose.json", o.small[pose][1], o.small_md5[pose]),
            (f"{base}/gripper.json", o.small[gripper][1], o.small_md5[gripper]),
        ]
        if o.chunk:
            parts.append((f"{base}/video.mp4", o.chunk, o.chunk_md5))
        t0 = time.perf_counter()
        await asyncio.gather(*(self.s3.put_object(BENCH_BUCKET, k, b, content_md5=m) for k, b, m in parts))
        series.ok(1, sum(len(b) for _, b, _ in parts), time.perf_counter() - t0)

    async def list(self, index: int, series: Series) -> None:
        prefix = self.o.dirs[self.o.dir_order[index % len(self.o.dir_order)]]
        t0 = time.perf_counter()
        listed, _, nbytes = await self.s3.list_page(BENCH_BUCKET, prefix, metadata=False)
        series.ok(len(listed), nbytes, time.perf_counter() - t0)

    async def read_each_small(self) -> None:
        """Fill the accelerator's cache: every small object read once (retried)."""
        keys = iter(self.o.small)

        async def worker() -> None:
            for key, _ in keys:
                await self.s3.call(functools.partial(self.reader.get, BENCH_BUCKET, key, sink=_discard))

        await asyncio.gather(*(worker() for _ in range(16)))


async def _cell(traffic: _Traffic, path: str, level: int, workers: dict[str, int], spec: RunSpec) -> list[Series]:
    ops = traffic.ops()
    if spec.warmup_s > 0:
        await asyncio.gather(
            *(
                closed_loop(ops[k], Series(path, OPS[k][0], level, OPS[k][1]), n, duration_s=spec.warmup_s)
                for k, n in workers.items()
            )
        )
    cell = {k: Series(path, OPS[k][0], level, OPS[k][1], extra={"workers": n}) for k, n in workers.items()}
    await asyncio.gather(
        *(
            closed_loop(ops[k], cell[k], n, duration_s=spec.duration_s, operations=spec.operations)
            for k, n in workers.items()
        )
    )
    return list(cell.values())


async def _run(settings: Settings, spec: RunSpec, params: MixedParams, report: Reporter, run_id: str) -> list[Series]:
    splits = {level: split_workers(params.mix, level) for level in spec.concurrency}
    most = max(sum(s.values()) for s in splits.values())
    endpoints = {"direct": settings.minio_endpoints[0], "accelerator": settings.accelerator_endpoint}
    cells = [(path, level) for path in params.paths for level in spec.concurrency]
    amount = f"{spec.operations} ops per kind" if spec.operations else f"{spec.duration_s:g} s"
    series: list[Series] = []
    objects = _Objects(run_id, params, spec.seed)
    admin = S3Target.from_settings(settings, settings.minio_endpoints[0])
    async with AsyncS3(admin, connections=32, seed=spec.seed) as direct_s3:
        try:
            await objects.prepare(direct_s3, report)
            for path in params.paths:
                target = S3Target.from_settings(settings, endpoints[path])
                async with (
                    ObjectReader(target, connections=most + 16) as reader,
                    AsyncS3(target, connections=3 * most + 16, seed=spec.seed) as s3,
                ):
                    traffic = _Traffic(reader, s3, objects)
                    if path == "accelerator":
                        report(f"accelerator warm-up: every one of the {len(objects.small)} small objects read once")
                        await traffic.read_each_small()
                    for level in spec.concurrency:
                        workers = splits[level]
                        split = ", ".join(f"{k} {n}" for k, n in workers.items())
                        number = cells.index((path, level)) + 1
                        report(f"[{number}/{len(cells)}] {path}, {level} workers ({split}): {amount}")
                        series += await _cell(traffic, path, level, workers, spec)
        finally:
            report(f"cleanup: deleting s3://{BENCH_BUCKET}/{run_id}/")
            await direct_s3.delete_prefix(BENCH_BUCKET, run_id + "/")
    return series


def _summary(series: list[Series], spec: RunSpec) -> dict[str, Any]:
    top = max(spec.concurrency)
    at_top = {(s.path, s.op): s.as_dict() for s in series if s.concurrency == top}
    per_op: dict[str, Any] = {}
    for op, _ in OPS.values():
        direct, accel = at_top.get(("direct", op)), at_top.get(("accelerator", op))
        if direct is None or accel is None:
            continue
        per_op[op] = {
            "direct_per_s": direct["per_s"],
            "accelerator_per_s": accel["per_s"],
            "ratio": ratio(accel["per_s"], direct["per_s"]),
            "p50_ms": {"direct": direct["latency_ms"].get("p50"), "accelerator": accel["latency_ms"].get("p50")},
            "p99_ms": {"direct": direct["latency_ms"].get("p99"), "accelerator": accel["latency_ms"].get("p99")},
        }
    return {"concurrency": top, "accelerator_vs_direct": per_op, "errors": sum(s.errors for s in series)}


def run(settings: Settings, spec: RunSpec, params: MixedParams, report: Reporter) -> dict[str, Any]:
    """Run the mixed workload on every path and level of the sweep; return its results document."""
    run_id, started = results.new_run_id("mixed-workload"), now()
    series = run_async(_run(settings, spec, params, report, run_id))
    doc_params = {
        **dataclasses.asdict(params),
        "bucket": BENCH_BUCKET,
        "prefix": run_id + "/",
        "spec": spec_dict(spec),
        "workers": {str(level): split_workers(params.mix, level) for level in spec.concurrency},
    }
    return document("mixed_workload", run_id, settings, doc_params, series, _summary(series, spec), started=started)


def markdown(doc: dict[str, Any]) -> str:
    p, spec, s = doc["params"], doc["params"]["spec"], doc["summary"]
    mix = ", ".join(f"{k} {w}" for k, w in p["mix"].items())
    amount = f"{spec['operations']} operations per kind" if spec["operations"] else f"{spec['duration_s']:g} s"
    chunk = f" + a {p['episode_video_bytes'] / 1024:g} KiB video chunk" if p["episode_video_bytes"] else ""
    warm = (
        "; the accelerator was warm (every small object read once before its cells)"
        if "accelerator" in p["paths"]
        else ""
    )
    lines = [
        *reports.header(doc, TITLE),
        f"All kinds run at once: loaders GET small JSON objects ({p['small_objects']}), streams GET whole videos "
        f"({p['videos']} of {p['video_bytes'] / MiB:g} MiB), uploads PUT new episodes (pose + gripper JSON{chunk}), "
        f"listings LIST one directory of {p['objects_per_dir'] // 2} keys (one sensor). Mix (worker weights): {mix}. "
        f"Seed {spec['seed']}, warm-up {spec['warmup_s']:g} s, {amount} per cell.",
        "",
        f"Concurrency is the total number of workers, split across kinds by the mix weights (at least one each){warm}.",
        "",
        "| concurrency | " + " | ".join(KINDS) + " |",
        "|---:|" + "---:|" * len(KINDS),
        *(
            f"| {level} | " + " | ".join(str(split.get(k, 0)) for k in KINDS) + " |"
            for level, split in p["workers"].items()
        ),
        "",
        *reports.series_table(doc["series"], ttfb=True),
    ]
    if s["accelerator_vs_direct"]:
        lines += [
            "",
            f"Accelerator vs direct at concurrency {s['concurrency']}:",
            "",
            "| op | direct rate | accelerator rate | ratio | p50 ms direct | p50 ms accelerator |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for op, r in s["accelerator_vs_direct"].items():
            lines.append(
                f"| {op} | {r['direct_per_s']:,.1f} | {r['accelerator_per_s']:,.1f} | "
                f"{_times(r['ratio'])} | {r['p50_ms']['direct']} | "
                f"{r['p50_ms']['accelerator']} |"
            )
    return "\n".join(lines) + "\n"


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"
