"""large_file_streaming: video-sized objects, from a few MB to 1 GiB.

For every object size (default 8 MiB, 64 MiB, 256 MiB, 1 GiB; `objects_per_size` objects each,
incompressible seeded bytes like an encoded GoPro video):
  upload   the files go up with robolake's verified uploader (multipart: 16 MiB parts, 5 MiB for
           objects up to 16 MiB, each part with its own Content-MD5); one series with the upload MiB/s;
then at every concurrency level (concurrent streams):
  GET stream   whole-object GETs through `ObjectReader` (robolake's streaming client), direct to
               MinIO node 1 and through the accelerator (which passes objects over 1 MB through);
               MiB/s, time to first byte, latency per object;
  GET range    `range_size` reads at seeded random offsets (seeking into a video), direct;
  warp GET     warp reading the same objects, same node, same concurrency (the reference: our
               streaming MiB/s over warp's is the figure of merit; the goal is >= 0.90).
Each cell runs the spec's warm-up first. The size's objects are deleted before the next size.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from robolake.bench import core, report, results
from robolake.bench.warp import run_warp, to_series
from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.storage.aio import run_async
from robolake.storage.integrity import MIB
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target
from robolake.storage.uploader import upload_tree

TITLE = "Large-file streaming"
BENCH_BUCKET = "robolake-bench-stream"
WARP_MIN_S = 6.0  # warp reports nothing for much shorter runs
GOAL = 0.90


@dataclasses.dataclass(frozen=True, kw_only=True)
class StreamingParams:
    sizes: tuple[str, ...] = ("8MiB", "64MiB", "256MiB", "1GiB")
    objects_per_size: int = 2
    range_size: str = "1MiB"
    upload_concurrency: int = 4
    warp_sizes: tuple[str, ...] | None = None  # sizes with a warp reference run (None: all)

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ConfigError("--sizes is empty; give sizes like 8MiB,64MiB,1GiB")
        for size in self.sizes:
            if not MIB <= core.parse_size(size) <= 4 * 1024 * MIB:
                raise ConfigError(f"object size {size!r} must be between 1MiB and 4GiB (e.g. 8MiB, 256MiB, 1GiB)")
        if self.objects_per_size < 1 or self.upload_concurrency < 1:
            raise ConfigError("--objects-per-size and the upload concurrency must be at least 1")
        if not 1 <= core.parse_size(self.range_size, "--range-size") <= min(core.parse_size(s) for s in self.sizes):
            raise ConfigError(f"--range-size {self.range_size!r} must be positive and fit in the smallest object")


DEFAULT_SPEC = core.RunSpec(warmup_s=2.0, duration_s=10.0, concurrency=(1, 4))
SMOKE_SPEC = core.RunSpec(warmup_s=0.3, duration_s=1.0, concurrency=(1, 2))
SMOKE_PARAMS = StreamingParams(sizes=("6MiB", "16MiB"), objects_per_size=2, warp_sizes=("16MiB",))


def _write_files(root: Path, size: int, count: int, rng: np.random.Generator) -> None:
    block = 16 * MIB
    for i in range(count):
        with open(root / f"video_{i:03d}.mp4", "wb") as fh:
            left = size
            while left:
                n = min(block, left)
                fh.write(rng.bytes(n))
                left -= n


async def _stream_cells(
    target: S3Target, bucket: str, keys: list[str], size: int, path: str, level: int, spec: core.RunSpec
) -> core.Series:
    async with ObjectReader(target, connections=level) as reader:
        return await core.measured(
            core.get_op(reader, bucket, keys, size), core.Series(path, "GET stream", level), spec, start=level
        )


async def _range_cell(
    target: S3Target, bucket: str, keys: list[str], size: int, range_size: int, level: int, spec: core.RunSpec
) -> core.Series:
    rng = random.Random(spec.seed * 1000 + level)

    def discard(_: memoryview) -> None:
        return None

    async with ObjectReader(target, connections=level) as reader:

        async def one(index: int, series: core.Series) -> None:
            first = rng.randrange(0, size - range_size + 1)
            got = await reader.get(
                bucket, keys[index % len(keys)], byte_range=(first, first + range_size - 1), sink=discard
            )
            if got.status != 206 or got.size != range_size:
                raise ConfigError(f"ranged GET answered {got.status} with {got.size} bytes, expected 206/{range_size}")
            series.ok(1, got.size, got.seconds, got.ttfb_s)

        series = core.Series(
            "direct", f"GET range {core.format_size(range_size)} of {core.format_size(size)}", level, unit="ranges"
        )
        return await core.measured(one, series, spec, start=level)


async def _keys(target: S3Target, bucket: str, prefix: str) -> list[str]:
    async with AsyncS3(target, connections=2) as s3:
        return sorted(o.key for o in await s3.list_objects(bucket, prefix))


async def _clear(target: S3Target, bucket: str, prefix: str) -> None:
    async with AsyncS3(target, connections=4) as s3:
        await s3.create_bucket(bucket)
        await s3.delete_prefix(bucket, prefix)


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every size of one run shares."""

    direct: S3Target
    accel: S3Target
    warp: Path
    spec: core.RunSpec
    params: StreamingParams
    progress: core.Steps

    def panel(self, series: core.Series, size_text: str, label: str) -> core.Series:
        series.extra.update(panel=f"{size_text} objects", label=label)
        return series


def run(settings: Settings, spec: core.RunSpec, params: StreamingParams, report_line: core.Reporter) -> dict[str, Any]:
    """Run the workload; return its results document."""
    run_id = results.new_run_id("large-file-streaming")
    started = core.now()
    warp_sizes = set(params.sizes if params.warp_sizes is None else params.warp_sizes)
    per_size = 2 + len(spec.concurrency) * 3  # write + upload, then three cells per level
    total = sum(per_size + (len(spec.concurrency) if s in warp_sizes else 0) for s in params.sizes)
    ctx = _Context(
        S3Target.from_settings(settings, settings.minio_endpoints[0]),
        S3Target.from_settings(settings),
        BinaryBuilder(settings.cache_dir).ensure("warp"),
        spec,
        params,
        core.Steps(report_line, total),
    )
    rng = np.random.default_rng(spec.seed)
    series: list[core.Series] = []
    summary: dict[str, Any] = {"goal_streaming_vs_warp": GOAL, "sizes": {}}
    run_async(_clear(ctx.direct, BENCH_BUCKET, run_id + "/"))
    try:
        for size_text in params.sizes:
            prefix = f"{run_id}/{size_text}/"
            series.append(_upload(ctx, size_text, prefix, rng))
            keys = run_async(_keys(ctx.direct, BENCH_BUCKET, prefix))
            cells: dict[str, Any] = {}
            for level in spec.concurrency:
                series += _read_cells(ctx, size_text, prefix, keys, level, cells, warp=size_text in warp_sizes)
            summary["sizes"][size_text] = cells
            run_async(_clear(ctx.direct, BENCH_BUCKET, prefix))
    finally:
        run_async(_clear(ctx.direct, BENCH_BUCKET, run_id + "/"))
    ratios = [v for cells in summary["sizes"].values() for k, v in cells.items() if k.startswith("ours_vs_warp")]
    summary["worst_ours_vs_warp"] = min(ratios) if ratios else None
    summary["meets_goal"] = bool(ratios) and min(ratios) >= GOAL
    doc_params = {**dataclasses.asdict(params), "spec": core.spec_dict(spec)}
    return core.document(
        "large_file_streaming",
        run_id,
        settings,
        plot_metric="mib_per_s",
        params=doc_params,
        series=series,
        summary=summary,
        started=started,
    )


def _upload(ctx: _Context, size_text: str, prefix: str, rng: np.random.Generator) -> core.Series:
    """The size's files, written from seeded bytes and uploaded with robolake's verified multipart uploader."""
    params, size = ctx.params, core.parse_size(size_text)
    with tempfile.TemporaryDirectory(prefix="robolake-bench-stream-") as tmp:
        ctx.progress(f"{size_text}: writing {params.objects_per_size} files of seeded random bytes")
        _write_files(Path(tmp), size, params.objects_per_size, rng)
        part = 16 * MIB if size > 16 * MIB else 5 * MIB
        ctx.progress(
            f"{size_text}: robolake uploader, multipart in {core.format_size(part)} parts, "
            f"{params.upload_concurrency} concurrent, every part and object verified"
        )
        done = upload_tree(
            ctx.direct,
            tmp,
            BENCH_BUCKET,
            prefix.rstrip("/"),
            concurrency=params.upload_concurrency,
            multipart_threshold=part,
            part_size=part,
        )
        done.raise_for_failures()
    up = core.Series(
        "robolake uploader",
        f"PUT multipart {size_text}",
        params.upload_concurrency,
        count=done.objects,
        requests=done.objects,
        bytes=done.bytes,
        seconds=done.seconds,
    )
    return ctx.panel(up, size_text, "robolake uploader PUT multipart")


def _read_cells(
    ctx: _Context, size_text: str, prefix: str, keys: list[str], level: int, cells: dict[str, Any], *, warp: bool
) -> list[core.Series]:
    """At one level: streams direct and through the accelerator, ranged reads, and (`warp`) warp's streams."""
    spec, size, out = ctx.spec, core.parse_size(size_text), []
    for path, target in (("direct", ctx.direct), ("accelerator", ctx.accel)):
        ctx.progress(f"{size_text}: {path} GET stream, {level} concurrent, {_amount(spec)}")
        cell = run_async(_stream_cells(target, BENCH_BUCKET, keys, size, path, level, spec))
        cell.op = f"GET stream {size_text}"
        out.append(ctx.panel(cell, size_text, f"{path} GET stream"))
        cells[f"{path}_c{level}_mib_per_s"] = round(cell.bytes / MIB / cell.seconds, 1)
    range_size = ctx.params.range_size
    ctx.progress(f"{size_text}: direct ranged GET of {range_size}, {level} concurrent, {_amount(spec)}")
    ranged = run_async(_range_cell(ctx.direct, BENCH_BUCKET, keys, size, core.parse_size(range_size), level, spec))
    out.append(ctx.panel(ranged, size_text, f"direct GET range {range_size}"))
    if warp:
        seconds = max(spec.duration_s, WARP_MIN_S)
        ctx.progress(f"{size_text}: warp GET of the same objects, {level} concurrent, {seconds:g} s")
        found = run_warp(
            ctx.warp,
            "get",
            host=ctx.direct.host,
            access_key=ctx.direct.access_key,
            secret_key=ctx.direct.secret_key,
            bucket=BENCH_BUCKET,
            obj_size=size_text,
            concurrency=level,
            duration_s=seconds,
            list_existing=True,
            prefix=prefix.rstrip("/"),
        )
        if found is None:
            raise RobolakeError(f"warp printed no GET summary for {size_text} at concurrency {level}")
        out.append(ctx.panel(to_series(found, path="warp", op=f"GET stream {size_text}"), size_text, "warp GET stream"))
        cells[f"warp_c{level}_mib_per_s"] = round(found.mib_per_s, 1)
        cells[f"ours_vs_warp_c{level}"] = core.ratio(cells[f"direct_c{level}_mib_per_s"], found.mib_per_s)
    return out


def _amount(spec: core.RunSpec) -> str:
    return f"{spec.operations} objects" if spec.operations else f"{spec.duration_s:g} s"


def markdown(doc: dict[str, Any]) -> str:
    p, s = doc["params"], doc["summary"]
    lines = report.header(doc, f"{TITLE} — sizes {', '.join(p['sizes'])}")
    lines += [
        f"Spec: {p['spec']['describe']}. "
        "`GET stream` reads whole objects with robolake's streaming client (`ObjectReader`); "
        "`warp` reads the same objects from the same node at the same concurrency. MiB/s of the "
        "uploader include hashing and verification.",
        "",
        *report.series_table(doc["series"], ttfb=True),
        "",
        "## robolake streaming GET vs warp (direct to MinIO node 1)",
        "",
        "| size | concurrency | robolake MiB/s | warp MiB/s | ratio | accelerator MiB/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for size, cells in s["sizes"].items():
        for level in p["spec"]["concurrency"]:
            if f"warp_c{level}_mib_per_s" in cells:
                lines.append(
                    f"| {size} | {level} | {cells[f'direct_c{level}_mib_per_s']:,.1f} | "
                    f"{cells[f'warp_c{level}_mib_per_s']:,.1f} | {cells[f'ours_vs_warp_c{level}']} | "
                    f"{cells[f'accelerator_c{level}_mib_per_s']:,.1f} |"
                )
    if s["worst_ours_vs_warp"] is not None:
        lines += [
            "",
            f"Lowest ratio robolake / warp: **{s['worst_ours_vs_warp']}** (goal >= "
            f"{s['goal_streaming_vs_warp']}: {'met' if s['meets_goal'] else 'not met'}).",
        ]
    lines += [
        "",
        "The accelerator caches objects under 1 MB; larger objects pass through it, so read videos "
        "from MinIO directly (any node) when streaming throughput matters.",
    ]
    return "\n".join(lines) + "\n"
