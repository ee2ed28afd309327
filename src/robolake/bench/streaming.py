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
from robolake.bench.upload import parse_size
from robolake.bench.warp import run_warp, to_series
from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.storage.integrity import MIB
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target
from robolake.storage.uploader import run_async, upload_tree

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
            if not MIB <= size_bytes(size) <= 4 * 1024 * MIB:
                raise ConfigError(f"object size {size!r} must be between 1MiB and 4GiB (e.g. 8MiB, 256MiB, 1GiB)")
        if self.objects_per_size < 1 or self.upload_concurrency < 1:
            raise ConfigError("--objects-per-size and the upload concurrency must be at least 1")
        if not 1 <= size_bytes(self.range_size) <= min(size_bytes(s) for s in self.sizes):
            raise ConfigError(f"--range-size {self.range_size!r} must be positive and fit in the smallest object")


def size_bytes(text: str) -> int:
    """`1GiB` → 1073741824; `64MiB`, `4KiB`, `4096` as in warp."""
    value = text.strip()
    if value.endswith("GiB") and value[:-3].isdigit():
        return int(value[:-3]) * 1024 * MIB
    return parse_size(value)


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


async def _stream_cells(target: S3Target, bucket: str, keys: list[str], size: int, path: str, level: int,
                        spec: core.RunSpec) -> core.Series:  # fmt: skip
    async with ObjectReader(target, connections=level) as reader:
        return await core.measured(core.get_op(reader, bucket, keys, size), core.Series(path, "GET stream", level),
                                   spec, start=level)  # fmt: skip


async def _range_cell(target: S3Target, bucket: str, keys: list[str], size: int, range_size: int, level: int,
                      spec: core.RunSpec) -> core.Series:  # fmt: skip
    rng = random.Random(spec.seed * 1000 + level)

    def discard(_: memoryview) -> None:
        return None

    async with ObjectReader(target, connections=level) as reader:

        async def one(index: int, series: core.Series) -> None:
            first = rng.randrange(0, size - range_size + 1)
            got = await reader.get(bucket, keys[index % len(keys)], byte_range=(first, first + range_size - 1),
                                   sink=discard)  # fmt: skip
            if got.status != 206 or got.size != range_size:
                raise ConfigError(f"ranged GET answered {got.status} with {got.size} bytes, expected 206/{range_size}")
            series.ok(1, got.size, got.seconds, got.ttfb_s)

        series = core.Series("direct", f"GET range {_human(range_size)} of {_human(size)}", level, unit="ranges")
        return await core.measured(one, series, spec, start=level)


def _human(n: int) -> str:
    for unit, scale in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


async def _keys(target: S3Target, bucket: str, prefix: str) -> list[str]:
    async with AsyncS3(target, connections=2) as s3:
        return sorted(o.key for o in await s3.list_objects(bucket, prefix))


async def _clear(target: S3Target, bucket: str, prefix: str) -> None:
    async with AsyncS3(target, connections=4) as s3:
        await s3.create_bucket(bucket)
        await s3.delete_prefix(bucket, prefix)


def run(settings: Settings, spec: core.RunSpec, params: StreamingParams, report_line: core.Reporter) -> dict[str, Any]:
    """Run the workload; return its results document."""
    run_id = results.new_run_id("large-file-streaming")
    started = core.now()
    direct = S3Target.from_settings(settings, settings.minio_endpoints[0])
    accel = S3Target.from_settings(settings)
    warp = BinaryBuilder(settings.cache_dir).ensure("warp")
    rng = np.random.default_rng(spec.seed)
    warp_sizes = set(params.sizes if params.warp_sizes is None else params.warp_sizes)
    per_size = 2 + len(spec.concurrency) * 3  # write + upload, then three cells per level
    total = sum(per_size + (len(spec.concurrency) if s in warp_sizes else 0) for s in params.sizes)
    step = 0
    series: list[core.Series] = []
    summary: dict[str, Any] = {"goal_streaming_vs_warp": GOAL, "sizes": {}}

    def progress(text: str) -> None:
        nonlocal step
        step += 1
        report_line(f"[{step}/{total}] {text}")

    run_async(_clear(direct, BENCH_BUCKET, run_id + "/"))
    try:
        for size_text in params.sizes:
            size = size_bytes(size_text)
            prefix = f"{run_id}/{size_text}/"
            with tempfile.TemporaryDirectory(prefix="robolake-bench-stream-") as tmp:
                progress(f"{size_text}: writing {params.objects_per_size} files of seeded random bytes")
                _write_files(Path(tmp), size, params.objects_per_size, rng)
                part = 16 * MIB if size > 16 * MIB else 5 * MIB
                progress(f"{size_text}: robolake uploader, multipart in {_human(part)} parts, "
                         f"{params.upload_concurrency} concurrent, every part and object verified")  # fmt: skip
                summary_up = upload_tree(direct, tmp, BENCH_BUCKET, prefix.rstrip("/"),
                                         concurrency=params.upload_concurrency, multipart_threshold=part,
                                         part_size=part)  # fmt: skip
                summary_up.raise_for_failures()
            up = core.Series("robolake uploader", f"PUT multipart {size_text}", params.upload_concurrency,
                             extra={"panel": f"{size_text} objects", "label": "robolake uploader PUT multipart"})
            up.count, up.requests, up.bytes, up.seconds = summary_up.objects, summary_up.objects, summary_up.bytes, \
                summary_up.seconds  # fmt: skip
            series.append(up)
            keys = run_async(_keys(direct, BENCH_BUCKET, prefix))
            cells: dict[str, Any] = {}
            for level in spec.concurrency:
                for path, target in (("direct", direct), ("accelerator", accel)):
                    progress(f"{size_text}: {path} GET stream, {level} concurrent, {_amount(spec)}")
                    cell = run_async(_stream_cells(target, BENCH_BUCKET, keys, size, path, level, spec))
                    cell.op = f"GET stream {size_text}"
                    cell.extra.update(panel=f"{size_text} objects", label=f"{path} GET stream")
                    series.append(cell)
                    cells[f"{path}_c{level}_mib_per_s"] = round(cell.bytes / MIB / cell.seconds, 1)
                progress(f"{size_text}: direct ranged GET of {params.range_size}, {level} concurrent, {_amount(spec)}")
                ranged = run_async(_range_cell(direct, BENCH_BUCKET, keys, size, size_bytes(params.range_size),
                                               level, spec))  # fmt: skip
                ranged.extra.update(panel=f"{size_text} objects", label=f"direct GET range {params.range_size}")
                series.append(ranged)
                if size_text in warp_sizes:
                    seconds = max(spec.duration_s, WARP_MIN_S)
                    progress(f"{size_text}: warp GET of the same objects, {level} concurrent, {seconds:g} s")
                    found = run_warp(warp, "get", host=direct.host, access_key=direct.access_key,
                                     secret_key=direct.secret_key, bucket=BENCH_BUCKET, obj_size=size_text,
                                     concurrency=level, duration_s=seconds, list_existing=True,
                                     prefix=prefix.rstrip("/"))  # fmt: skip
                    assert found is not None
                    reference = to_series(found, path="warp", op=f"GET stream {size_text}")
                    reference.extra.update(panel=f"{size_text} objects", label="warp GET stream")
                    series.append(reference)
                    ours = cells[f"direct_c{level}_mib_per_s"]
                    cells[f"warp_c{level}_mib_per_s"] = round(found.mib_per_s, 1)
                    cells[f"ours_vs_warp_c{level}"] = core.ratio(ours, found.mib_per_s)
            summary["sizes"][size_text] = cells
            run_async(_clear(direct, BENCH_BUCKET, prefix))
    finally:
        run_async(_clear(direct, BENCH_BUCKET, run_id + "/"))
    ratios = [v for cells in summary["sizes"].values() for k, v in cells.items() if k.startswith("ours_vs_warp")]
    summary["worst_ours_vs_warp"] = min(ratios) if ratios else None
    summary["meets_goal"] = bool(ratios) and min(ratios) >= GOAL
    return core.document("large_file_streaming", run_id, settings, plot_metric="mib_per_s",
                         params={**dataclasses.asdict(params), "spec": core.spec_dict(spec)}, series=series,
                         summary=summary, started=started)  # fmt: skip


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
                lines.append(f"| {size} | {level} | {cells[f'direct_c{level}_mib_per_s']:,.1f} | "
                             f"{cells[f'warp_c{level}_mib_per_s']:,.1f} | {cells[f'ours_vs_warp_c{level}']} | "
                             f"{cells[f'accelerator_c{level}_mib_per_s']:,.1f} |")  # fmt: skip
    if s["worst_ours_vs_warp"] is not None:
        lines += ["", f"Lowest ratio robolake / warp: **{s['worst_ours_vs_warp']}** (goal >= "
                  f"{s['goal_streaming_vs_warp']}: {'met' if s['meets_goal'] else 'not met'})."]  # fmt: skip
    lines += ["", "The accelerator caches objects under 1 MB; larger objects pass through it, so read videos "
              "from MinIO directly (any node) when streaming throughput matters."]  # fmt: skip
    return "\n".join(lines) + "\n"

