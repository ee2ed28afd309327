"""Our uploader against `warp put`: same object size, same concurrency, same endpoint, same run.

  1. write `objects` files of `obj_size` bytes (JSON-like bodies, in directories of 1,000);
  2. warp put for `warp_duration_s` (the server's PUT rate with a client that costs almost no CPU);
  3. upload_tree of the files to a fresh prefix: the whole call is timed, listing and hashing
     included, and every object is verified (Content-MD5, ETag) as in normal use;
  4. warp put again (brackets drift on a noisy machine; the baseline is the mean of 2 and 4).
The ratio ours / warp is the figure of merit (the goal is >= 0.70). The bench bucket is emptied
before and after.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robolake.bench import core
from robolake.bench.results import new_run_id
from robolake.bench.warp import WarpResult, run_warp, to_series
from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.storage.aio import run_async
from robolake.storage.progress import ProgressCallback
from robolake.storage.s3 import AsyncS3, S3Target
from robolake.storage.uploader import UploadSummary, upload_tree
from robolake.umi.naming import episode_file

BENCH_BUCKET = "robolake-bench-upload"
Reporter = Callable[[str], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class UploadBenchParams:
    """`objects` files of `obj_size` (warp syntax), uploaded `concurrency` at a time; warp runs as long."""

    objects: int = 10_000
    obj_size: str = "4KiB"
    concurrency: int = 32
    warp_duration_s: float = 20.0

    def __post_init__(self) -> None:
        if self.objects < 1 or self.concurrency < 1 or self.warp_duration_s <= 0:
            raise ConfigError("objects and concurrency must be positive, and the warp duration above zero")
        if not 1 <= core.parse_size(self.obj_size) <= 64 * 1024 * 1024:
            raise ConfigError(f"object size {self.obj_size!r} must be between 1 byte and 64 MiB")


SMOKE = UploadBenchParams(objects=500, warp_duration_s=6.0)  # warp needs ~5 s to report


def write_files(root: Path, count: int, size: int) -> None:
    """`count` distinct files of exactly `size` bytes, 1,000 per directory."""
    for i in range(count):
        head = f'{{"episode_index":{i},"sensor":"{"pose" if i % 2 == 0 else "gripper"}","data":"'.encode()
        body = (head + (b"0123456789abcdef" * (size // 16 + 1)))[: max(0, size - 2)] + b'"}'
        path = root / f"d{i // 1000:03d}" / episode_file(i, "json")
        if i % 1000 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body[:size])


async def _empty(target: S3Target, bucket: str) -> int:
    async with AsyncS3(target, connections=4) as s3:
        await s3.create_bucket(bucket)
        return await s3.delete_prefix(bucket, "")


def run(
    settings: Settings,
    params: UploadBenchParams,
    report: Reporter,
    *,
    endpoint: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run the comparison and return its results document."""
    target = S3Target.from_settings(settings, endpoint)
    warp = BinaryBuilder(settings.cache_dir).ensure("warp")
    warp_args: dict[str, Any] = {
        "host": target.host,
        "access_key": target.access_key,
        "secret_key": target.secret_key,
        "bucket": BENCH_BUCKET,
        "obj_size": params.obj_size,
        "concurrency": params.concurrency,
        "duration_s": params.warp_duration_s,
    }
    runs: dict[str, WarpResult] = {}
    prefix = new_run_id("upload")
    run_async(_empty(target, BENCH_BUCKET))
    try:
        with tempfile.TemporaryDirectory(prefix="robolake-bench-upload-") as tmp:
            report(f"writing {params.objects} files of {params.obj_size}")
            write_files(Path(tmp), params.objects, core.parse_size(params.obj_size))
            report(f"warp put, {params.concurrency} concurrent, {params.warp_duration_s:g} s")
            runs["warp_before"] = _warp(warp, warp_args)
            report(f"robolake upload_tree of {params.objects} files, {params.concurrency} concurrent")
            summary = upload_tree(target, tmp, BENCH_BUCKET, prefix, concurrency=params.concurrency, progress=progress)
            report("warp put again (brackets drift)")
            runs["warp_after"] = _warp(warp, warp_args)
    finally:
        report("cleanup: emptying the bench bucket")
        run_async(_empty(target, BENCH_BUCKET))
    summary.raise_for_failures()
    if summary.objects != params.objects:
        raise RobolakeError(
            f"the uploader wrote {summary.objects} of {params.objects} objects into a fresh "
            "prefix; the comparison is void"
        )
    return _document(settings, params, target, prefix, runs, summary)


def _document(
    settings: Settings,
    params: UploadBenchParams,
    target: S3Target,
    run_id: str,
    runs: dict[str, WarpResult],
    summary: UploadSummary,
) -> dict[str, Any]:
    warp_rate = (runs["warp_before"].objects_per_s + runs["warp_after"].objects_per_s) / 2
    ratio = summary.objects_per_s / warp_rate if warp_rate else None
    ours = core.Series(
        "robolake upload_tree",
        "PUT",
        params.concurrency,
        count=summary.objects,
        requests=summary.objects,
        bytes=summary.bytes,
        seconds=summary.seconds,
    )
    series = [
        to_series(runs["warp_before"], path="warp", op="PUT"),
        ours,
        to_series(runs["warp_after"], path="warp (again)", op="PUT"),
    ]
    for member in series:
        member.extra["label"] = member.path
    return {
        "benchmark": "upload",
        "run_id": run_id,
        "started": core.now(),
        "series": [s.as_dict() for s in series],
        "endpoint": target.endpoint,
        "machine": core.machine(),
        "versions": {"warp": BinaryBuilder(settings.cache_dir).version_of("warp")},
        "params": dataclasses.asdict(params),
        "ours": summary.as_dict(),
        "warp_runs": {name: dataclasses.asdict(r) for name, r in runs.items()},
        "summary": {
            "ours_objects_per_s": round(summary.objects_per_s, 1),
            "warp_put_objects_per_s": round(warp_rate, 1),
            "ratio": round(ratio, 3) if ratio is not None else None,
            "goal": 0.70,
            "meets_goal": ratio is not None and ratio >= 0.70,
        },
    }


def _warp(binary: Path, args: dict[str, Any]) -> WarpResult:
    result = run_warp(binary, "put", **args)
    if result is None:
        raise RobolakeError("warp put printed no summary")
    return result


def markdown(doc: dict[str, Any]) -> str:
    s, p, ours = doc["summary"], doc["params"], doc["ours"]
    before, after = doc["warp_runs"]["warp_before"], doc["warp_runs"]["warp_after"]
    lines = [
        f"# Upload benchmark — {p['objects']} objects of {p['obj_size']}, {p['concurrency']} concurrent",
        "",
        f"Endpoint: `{doc['endpoint']}`.",
        "",
        "| client | objects/s | MB/s | notes |",
        "|---|---:|---:|---|",
        f"| robolake upload_tree | {s['ours_objects_per_s']:,.0f} | {ours['mb_per_s']:.2f} | "
        f"{ours['objects']} objects in {ours['seconds']:.2f} s, listing + hashing included, every ETag verified, "
        f"{ours['retries']} retries |",
        f"| warp put (before) | {before['objects_per_s']:,.0f} | {before['mib_per_s'] * 1.048576:.2f} | "
        f"{p['warp_duration_s']:g} s |",
        f"| warp put (after) | {after['objects_per_s']:,.0f} | {after['mib_per_s'] * 1.048576:.2f} | "
        f"{p['warp_duration_s']:g} s |",
        "",
        f"**Ratio ours / warp (mean of both runs): {s['ratio']}** (goal {s['goal']}: "
        f"{'met' if s['meets_goal'] else 'not met'}).",
        "",
        "Commands (secrets masked):",
        *(f"- `{r['command']}`" for r in doc["warp_runs"].values()),
    ]
    return "\n".join(lines) + "\n"
