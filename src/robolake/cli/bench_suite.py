"""`robolake bench large-file-streaming | mixed-workload | dataloader | warp-check | compare`.

Every workload takes the same run options (--seed, --warmup, --duration or --operations,
--concurrency, --smoke) and writes results.json, report.md, throughput.png and latency_cdf.png
to ./benchmarks/<run-id>/ and s3://umi-experiments/benchmarks/<run-id>/.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from robolake.cli.common import err_console, load_settings, out_console
from robolake.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def run_options(default: Any) -> Callable[[F], F]:
    """--seed/--warmup/--duration/--operations/--concurrency/--smoke/--out/--json, defaults from `default`."""

    def decorate(fn: F) -> F:
        levels = ",".join(map(str, default.concurrency))
        options = [
            click.option("--seed", type=click.IntRange(0), default=default.seed, show_default=True,
                         help="Seed for object bodies, key order and the mix."),
            click.option("--warmup", "warmup_s", type=click.FloatRange(0), default=default.warmup_s,
                         show_default=True, help="Seconds of unreported load before each measured cell."),
            click.option("--duration", "duration_s", type=click.FloatRange(0, min_open=True),
                         default=default.duration_s, show_default=True, help="Seconds per measured cell."),
            click.option("--operations", type=click.IntRange(1), default=None,
                         help="End each cell after this many operations instead of --duration."),
            click.option("--concurrency", "levels", default=levels, show_default=True,
                         help="Concurrency sweep: comma-separated levels, e.g. 1,4,16."),
            click.option("--smoke", is_flag=True, help="A quick run with small sizes (what CI runs)."),
            click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks"), show_default=True,
                         help="Local directory for the run's reports."),
            click.option("--json", "as_json", is_flag=True, help="Print the results document as JSON."),
        ]  # fmt: skip
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def make_spec(smoke_spec: Any, smoke: bool, seed: int, warmup_s: float, duration_s: float, operations: int | None,
              levels: str, defaults: Any) -> Any:  # fmt: skip
    """The RunSpec from the options; --smoke replaces what was left at its default."""
    from robolake.bench.core import RunSpec, parse_levels

    spec = RunSpec(seed=seed, warmup_s=warmup_s, duration_s=duration_s, operations=operations,
                   concurrency=parse_levels(levels))  # fmt: skip
    if not smoke:
        return spec
    changed = {f.name: getattr(spec, f.name) for f in dataclasses.fields(RunSpec)
               if getattr(spec, f.name) != getattr(defaults, f.name)}  # fmt: skip
    return dataclasses.replace(smoke_spec, **changed)


def finish(settings: Any, doc: dict[str, Any], md: str, title: str, out: Path, as_json: bool) -> None:
    from robolake.bench import report

    where = report.save(settings, doc, md, title, out)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        out_console.print(md, markup=False)
    err_console.print(f"results (report.md, results.json, throughput.png, latency_cdf.png): {', '.join(where)}")


def say(message: str) -> None:
    err_console.print(f"  {message}", markup=False)


def _sizes(text: str) -> tuple[str, ...]:
    sizes = tuple(s.strip() for s in text.split(",") if s.strip())
    if not sizes:
        raise ConfigError(f"--sizes {text!r} is empty; give sizes like 8MiB,64MiB,1GiB")
    return sizes


@click.command("large-file-streaming")
@click.option("--sizes", default="8MiB,64MiB,256MiB,1GiB", show_default=True,
              help="Object sizes (video files), comma-separated: 8MiB, 256MiB, 1GiB.")
@click.option("--objects-per-size", type=click.IntRange(1), default=2, show_default=True)
@click.option("--range-size", default="1MiB", show_default=True, help="Size of each ranged read (a seek).")
@click.option("--no-warp", is_flag=True, help="Skip the warp reference runs.")
@run_options(importlib.import_module("robolake.bench.streaming").DEFAULT_SPEC)
def large_file_streaming(sizes: str, objects_per_size: int, range_size: str, no_warp: bool, seed: int,
                         warmup_s: float, duration_s: float, operations: int | None, levels: str, smoke: bool,
                         out: Path, as_json: bool) -> None:  # fmt: skip
    """Video-sized objects: multipart upload, streaming GET (MiB/s, time to first byte), ranged reads.

    For each size: the objects go up with robolake's verified multipart uploader; then at each
    concurrency level, whole-object GETs with robolake's streaming client direct to MinIO and
    through the accelerator, 1 MiB ranged reads at random offsets, and warp reading the same
    objects (the reference; robolake's MiB/s over warp's is reported). Needs the running stack
    and free disk for the temporary files (2 x the largest size). Uses (and empties) the bucket
    robolake-bench-stream. Full size takes about 10 minutes; try --smoke first:

    \b
        robolake bench large-file-streaming --smoke
        robolake bench large-file-streaming --sizes 64MiB,1GiB --concurrency 1,4,8
    """
    from robolake.bench import streaming

    spec = make_spec(streaming.SMOKE_SPEC, smoke, seed, warmup_s, duration_s, operations, levels,
                     streaming.DEFAULT_SPEC)  # fmt: skip
    if smoke and sizes == "8MiB,64MiB,256MiB,1GiB":
        params = streaming.SMOKE_PARAMS
    else:
        params = streaming.StreamingParams(sizes=_sizes(sizes), objects_per_size=objects_per_size,
                                           range_size=range_size)  # fmt: skip
    if no_warp:
        params = dataclasses.replace(params, warp_sizes=())
    settings = load_settings()
    doc = streaming.run(settings, spec, params, say)
    finish(settings, doc, streaming.markdown(doc), streaming.TITLE, out, as_json)


@click.command("mixed-workload")
@click.option("--mix", default="loader=12,stream=2,upload=2,list=1", show_default=True,
              help="Worker weights per kind: loader (small GETs), stream (video GETs), upload (new episodes), "
                   "list (LIST); a kind left out does not run.")
@click.option("--small-objects", type=click.IntRange(2), default=1000, show_default=True)
@click.option("--video-size", default="16MiB", show_default=True, help="Size of each streamed video object.")
@click.option("--paths", default="direct,accelerator", show_default=True, help="Where the traffic goes.")
@run_options(importlib.import_module("robolake.bench.mixed").DEFAULT_SPEC)
def mixed_workload(mix: str, small_objects: int, video_size: str, paths: str, seed: int, warmup_s: float,
                   duration_s: float, operations: int | None, levels: str, smoke: bool, out: Path,
                   as_json: bool) -> None:  # fmt: skip
    """Concurrent robotics traffic: loaders, video streams, uploads of new episodes and listings at once.

    A concurrency level is the total number of workers, split across the kinds by the --mix
    weights (at least one each). Every kind gets its own throughput and latency per path
    (direct MinIO node 1, the accelerator). Uses (and cleans up) the bucket robolake-bench-mixed.

    \b
        robolake bench mixed-workload --smoke
        robolake bench mixed-workload --mix loader=24,stream=4,upload=1 --concurrency 8,32
    """
    from robolake.bench import mixed
    from robolake.bench.streaming import size_bytes

    spec = make_spec(mixed.SMOKE_SPEC, smoke, seed, warmup_s, duration_s, operations, levels, mixed.DEFAULT_SPEC)
    chosen = tuple(p.strip() for p in paths.split(",") if p.strip())
    if smoke:
        params = dataclasses.replace(mixed.SMOKE_PARAMS, mix=mixed.parse_mix(mix), paths=chosen)
    else:
        params = mixed.MixedParams(mix=mixed.parse_mix(mix), small_objects=small_objects,
                                   video_bytes=size_bytes(video_size), paths=chosen)  # fmt: skip
    settings = load_settings()
    doc = mixed.run(settings, spec, params, say)
    finish(settings, doc, mixed.markdown(doc), mixed.TITLE, out, as_json)


@click.command("dataloader")
@click.option("--episodes", type=click.IntRange(1), default=400, show_default=True, help="Episodes in the dataset.")
@click.option("--frames", type=click.IntRange(1), default=300, show_default=True,
              help="Frames (samples) per episode; 300 is ~5 s at 59.94 Hz.")
@click.option("--batch-episodes", type=click.IntRange(1), default=16, show_default=True,
              help="Episodes per batch GET on the 'accelerator batch' path.")
@click.option("--paths", default="direct,accelerator,accelerator batch", show_default=True)
@run_options(importlib.import_module("robolake.bench.dataloader").DEFAULT_SPEC)
def dataloader(episodes: int, frames: int, batch_episodes: int, paths: str, seed: int, warmup_s: float,
               duration_s: float, operations: int | None, levels: str, smoke: bool, out: Path,
               as_json: bool) -> None:  # fmt: skip
    """Episodes/s and samples/s of a training loader reading UMI episodes through each path.

    One loader step = one episode: its pose and gripper JSON fetched, decoded and stacked into a
    (frames, features) float32 array, as a PyTorch Dataset's __getitem__ would. Concurrency is
    the number of loader workers. Uses (and cleans up) the bucket robolake-bench-loader.

    \b
        robolake bench dataloader --smoke
        robolake bench dataloader --episodes 1000 --concurrency 1,8,32
    """
    from robolake.bench import dataloader as loader

    spec = make_spec(loader.SMOKE_SPEC, smoke, seed, warmup_s, duration_s, operations, levels, loader.DEFAULT_SPEC)
    chosen = tuple(p.strip() for p in paths.split(",") if p.strip())
    if smoke:
        params = dataclasses.replace(loader.SMOKE_PARAMS, paths=chosen)
    else:
        params = loader.LoaderParams(episodes=episodes, frames=frames, batch_episodes=batch_episodes, paths=chosen)
    settings = load_settings()
    doc = loader.run(settings, spec, params, say)
    finish(settings, doc, loader.markdown(doc), loader.TITLE, out, as_json)


@click.command("warp-check")
@click.option("--small-size", default="4KiB", show_default=True)
@click.option("--small-objects", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--small-concurrency", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option("--large-size", default="64MiB", show_default=True)
@click.option("--large-objects", type=click.IntRange(1), default=8, show_default=True)
@click.option("--large-concurrency", type=click.IntRange(1, 1024), default=4, show_default=True)
@click.option("--duration", "duration_s", type=float, default=15.0, show_default=True,
              help="Seconds per run (warp needs at least 6).")
@click.option("--smoke", is_flag=True, help="200 x 4KiB at 8 and 4 x 16MiB at 2, 6 s runs (about 1 minute).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks"), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results document as JSON.")
def warp_check(small_size: str, small_objects: int, small_concurrency: int, large_size: str, large_objects: int,
               large_concurrency: int, duration_s: float, smoke: bool, out: Path, as_json: bool) -> None:  # fmt: skip
    """Our load driver and warp on the same plain GET workload: same node, objects and concurrency.

    Shows that robolake's drivers measure the storage, not themselves: small-object GET
    objects/s should be within 25% of warp's, large-object GET MiB/s within 15%. warp runs
    before and after our driver; its figure is the mean. Exit status 0 either way; the verdict
    is printed and stored (summary.all_within).

    \b
        robolake bench warp-check --smoke
    """
    from robolake.bench import warpcheck

    params = warpcheck.SMOKE_PARAMS if smoke else warpcheck.WarpCheckParams(
        small_size=small_size, small_objects=small_objects, small_concurrency=small_concurrency,
        large_size=large_size, large_objects=large_objects, large_concurrency=large_concurrency,
        duration_s=duration_s)  # fmt: skip
    settings = load_settings()
    doc = warpcheck.run(settings, params, say)
    finish(settings, doc, warpcheck.markdown(doc), warpcheck.TITLE, out, as_json)


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks"), show_default=True,
              help="Where local runs are looked up.")
def compare(run_a: str, run_b: str, out: Path) -> None:
    """Ratios B / A for every series two runs share (same path, operation and concurrency).

    RUN_A and RUN_B are run ids (looked up in --out, then in s3://umi-experiments/benchmarks/),
    run directories, or results.json files:

    \b
        robolake bench compare 20261124T101500Z-dataloader-1a2b3c 20261124T111500Z-dataloader-4d5e6f
    """
    from robolake.bench import report

    settings = load_settings()
    a = report.load(run_a, settings, out)
    b = report.load(run_b, settings, out)
    out_console.print(report.compare(a, b), markup=False)
