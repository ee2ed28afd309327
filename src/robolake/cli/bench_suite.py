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

from robolake.cli.common import err_console, load_settings, out_console, with_options
from robolake.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


# --out and --json as the data benchmarks and warp-check take them
OUTPUT_OPTIONS = [
    click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks"), show_default=True),
    click.option("--json", "as_json", is_flag=True, help="Print the results document as JSON."),
]


def names(text: str, *, lower: bool = False) -> tuple[str, ...]:
    """`a, b,,c` -> ("a", "b", "c"): a comma-separated option value, blanks dropped."""
    parts = (part.strip() for part in text.split(","))
    return tuple(part.lower() if lower else part for part in parts if part)


# The RunSpec's options: (flag, dest, type, help); the defaults are the workload's DEFAULT_SPEC.
_SPEC_OPTIONS = (
    ("--seed", "seed", click.IntRange(0), "Seed for object bodies, key order and the mix."),
    ("--warmup", "warmup_s", click.FloatRange(0), "Seconds of unreported load before each measured cell."),
    ("--duration", "duration_s", click.FloatRange(0, min_open=True), "Seconds per measured cell."),
)


def run_options(default: Any) -> Callable[[F], F]:
    """--seed/--warmup/--duration/--operations/--concurrency/--smoke/--out/--json, defaults from `default`."""
    levels = ",".join(map(str, default.concurrency))
    options = [
        *(
            click.option(flag, dest, type=kind, default=getattr(default, dest), show_default=True, help=text)
            for flag, dest, kind, text in _SPEC_OPTIONS
        ),
        click.option(
            "--operations",
            type=click.IntRange(1),
            default=None,
            help="End each cell after this many operations instead of --duration.",
        ),
        click.option(
            "--concurrency",
            "levels",
            default=levels,
            show_default=True,
            help="Concurrency sweep: comma-separated levels, e.g. 1,4,16.",
        ),
        click.option("--smoke", is_flag=True, help="A quick run with small sizes (what CI runs)."),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            default=Path("benchmarks"),
            show_default=True,
            help="Local directory for the run's reports.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the results document as JSON."),
    ]
    return with_options(options)


def make_spec(smoke_spec: Any, defaults: Any, run: dict[str, Any]) -> Any:
    """The RunSpec from the run options in `run` (popped); --smoke replaces what was left at its default."""
    from robolake.bench.core import RunSpec, parse_levels

    spec = RunSpec(
        seed=run.pop("seed"),
        warmup_s=run.pop("warmup_s"),
        duration_s=run.pop("duration_s"),
        operations=run.pop("operations"),
        concurrency=parse_levels(run.pop("levels")),
    )
    if not run["smoke"]:
        return spec
    changed = {
        f.name: getattr(spec, f.name)
        for f in dataclasses.fields(RunSpec)
        if getattr(spec, f.name) != getattr(defaults, f.name)
    }
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
    sizes = names(text)
    if not sizes:
        raise ConfigError(f"--sizes {text!r} is empty; give sizes like 8MiB,64MiB,1GiB")
    return sizes


@click.command("large-file-streaming")
@click.option(
    "--sizes",
    default="8MiB,64MiB,256MiB,1GiB",
    show_default=True,
    help="Object sizes (video files), comma-separated: 8MiB, 256MiB, 1GiB.",
)
@click.option("--objects-per-size", type=click.IntRange(1), default=2, show_default=True)
@click.option("--range-size", default="1MiB", show_default=True, help="Size of each ranged read (a seek).")
@click.option("--no-warp", is_flag=True, help="Skip the warp reference runs.")
@run_options(importlib.import_module("robolake.bench.streaming").DEFAULT_SPEC)
def large_file_streaming(sizes: str, objects_per_size: int, range_size: str, no_warp: bool, **run: Any) -> None:
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

    spec = make_spec(streaming.SMOKE_SPEC, streaming.DEFAULT_SPEC, run)
    if run["smoke"] and sizes == "8MiB,64MiB,256MiB,1GiB":
        params = streaming.SMOKE_PARAMS
    else:
        params = streaming.StreamingParams(
            sizes=_sizes(sizes), objects_per_size=objects_per_size, range_size=range_size
        )
    if no_warp:
        params = dataclasses.replace(params, warp_sizes=())
    settings = load_settings()
    doc = streaming.run(settings, spec, params, say)
    finish(settings, doc, streaming.markdown(doc), streaming.TITLE, run["out"], run["as_json"])


@click.command("mixed-workload")
@click.option(
    "--mix",
    default="loader=12,stream=2,upload=2,list=1",
    show_default=True,
    help="Worker weights per kind: loader (small GETs), stream (video GETs), upload (new episodes), "
    "list (LIST); a kind left out does not run.",
)
@click.option("--small-objects", type=click.IntRange(2), default=1000, show_default=True)
@click.option("--video-size", default="16MiB", show_default=True, help="Size of each streamed video object.")
@click.option("--paths", default="direct,accelerator", show_default=True, help="Where the traffic goes.")
@run_options(importlib.import_module("robolake.bench.mixed").DEFAULT_SPEC)
def mixed_workload(mix: str, small_objects: int, video_size: str, paths: str, **run: Any) -> None:
    """Concurrent robotics traffic: loaders, video streams, uploads of new episodes and listings at once.

    A concurrency level is the total number of workers, split across the kinds by the --mix
    weights (at least one each). Every kind gets its own throughput and latency per path
    (direct MinIO node 1, the accelerator). Uses (and cleans up) the bucket robolake-bench-mixed.

    \b
        robolake bench mixed-workload --smoke
        robolake bench mixed-workload --mix loader=24,stream=4,upload=1 --concurrency 8,32
    """
    from robolake.bench import mixed
    from robolake.bench.core import parse_size

    spec = make_spec(mixed.SMOKE_SPEC, mixed.DEFAULT_SPEC, run)
    if run["smoke"]:
        params = dataclasses.replace(mixed.SMOKE_PARAMS, mix=mixed.parse_mix(mix), paths=names(paths))
    else:
        params = mixed.MixedParams(
            mix=mixed.parse_mix(mix),
            small_objects=small_objects,
            video_bytes=parse_size(video_size, "--video-size"),
            paths=names(paths),
        )
    settings = load_settings()
    doc = mixed.run(settings, spec, params, say)
    finish(settings, doc, mixed.markdown(doc), mixed.TITLE, run["out"], run["as_json"])


_JSON_ONLY = ("frames", "batch_episodes", "paths", "warmup_s", "duration_s", "operations", "levels")
_TRAINING_ONLY = ("workers", "epochs", "batch_size", "profile", "block_size", "loaders")
_FLAGS = {"levels": "--concurrency", "warmup_s": "--warmup", "duration_s": "--duration"}  # dest -> flag


DATALOADER_OPTIONS = [
    click.option(
        "--mode",
        type=click.Choice(["json", "training"]),
        default="json",
        help="json: per-episode JSON loads through each path; training: a UMI replay buffer read from a "
        "lakeFS commit by robolake vs UMI's own loader (local disk into memory) vs naive per-frame GETs.",
    ),
    click.option(
        "--episodes",
        type=click.IntRange(1),
        default=None,
        help="Episodes in the dataset [default: 400 (json), 6 (training; of the --profile)].",
        show_default=False,
    ),
    click.option(
        "--frames",
        type=click.IntRange(1),
        default=300,
        help="json: frames (samples) per episode; 300 is ~5 s at 59.94 Hz.",
    ),
    click.option("--batch-episodes", type=click.IntRange(1), default=16, help="json: episodes per batch GET."),
    click.option("--paths", default="direct,accelerator,accelerator batch", help="json: the GET paths."),
    click.option("--workers", type=int, default=None, help="training: worker processes per loader [default: 2]."),
    click.option(
        "--epochs", type=int, default=None, help="training: epochs; the first is robolake's cold one [default: 3]."
    ),
    click.option("--batch-size", type=int, default=None, help="training: samples per batch [default: 16]."),
    click.option("--profile", default=None, help="training: generator profile of the dataset [default: small]."),
    click.option("--block-size", default=None, help="training: robolake's block size, e.g. 1MiB [default: 4MiB]."),
    click.option(
        "--loaders",
        default=None,
        help="training: which loaders [default: umi,robolake,naive; robolake-nocache on request].",
    ),
]


@click.command("dataloader", context_settings={"show_default": True})
@with_options(DATALOADER_OPTIONS)
@run_options(importlib.import_module("robolake.bench.dataloader").DEFAULT_SPEC)
def dataloader(mode: str, episodes: int | None, **options: Any) -> None:
    """Samples/s of a training loader: JSON episodes per path, or the real training path (--mode training).

    --mode json: one loader step = one episode, its pose and gripper JSON fetched, decoded and
    stacked into a (frames, 7) float32 array, direct, through the accelerator and as batch GETs;
    concurrency is the number of loader workers. Uses (and cleans up) robolake-bench-loader.

    --mode training: a generated UMI replay buffer is committed on a new lakeFS branch; UMI's own
    loader (the zip from local disk into memory), robolake (LakeDataset at the commit, block
    cache cold then warm) and a naive loader (one GET per frame chunk) each run the same epochs
    with the same sampler, seed and worker processes (UMI's before and after robolake's epoch).
    Reports samples/s per epoch, the ratio to UMI's loader (goal: robolake >= 0.70x), CPU per
    sample, GETs and peak RSS/PSS; checks every loader returned the same samples. The branch
    and the cache are deleted at the end. A few minutes (the first
    run also generates the dataset, ~1.5 min, kept under the cache directory).

    \b
        robolake bench dataloader --smoke
        robolake bench dataloader --episodes 1000 --concurrency 1,8,32
        robolake bench dataloader --mode training --smoke
        robolake bench dataloader --mode training --workers 2 --epochs 3
    """
    _refuse_options_of_the_other_mode(mode)
    if mode == "training":
        _training(episodes, options)
    else:
        _json(episodes, options)


def _json(episodes: int | None, options: dict[str, Any]) -> None:
    from robolake.bench import dataloader as loader

    frames, batch_episodes, paths = options.pop("frames"), options.pop("batch_episodes"), options.pop("paths")
    run = {k: v for k, v in options.items() if k not in _TRAINING_ONLY}
    spec = make_spec(loader.SMOKE_SPEC, loader.DEFAULT_SPEC, run)
    if run["smoke"]:
        params = dataclasses.replace(loader.SMOKE_PARAMS, paths=names(paths))
    else:
        params = loader.LoaderParams(
            episodes=400 if episodes is None else episodes,
            frames=frames,
            batch_episodes=batch_episodes,
            paths=names(paths),
        )
    settings = load_settings()
    doc = loader.run(settings, spec, params, say)
    finish(settings, doc, loader.markdown(doc), loader.TITLE, run["out"], run["as_json"])


def _refuse_options_of_the_other_mode(mode: str) -> None:
    context = click.get_current_context()
    given = {
        name
        for name in (*_JSON_ONLY, *_TRAINING_ONLY)
        if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    wrong = sorted(given & set(_TRAINING_ONLY if mode == "json" else _JSON_ONLY))
    if wrong:
        flags = ", ".join(_FLAGS.get(w, "--" + w.replace("_", "-")) for w in wrong)
        other = "training" if mode == "json" else "json"
        raise ConfigError(f"{flags} only apply to --mode {other}; drop them or add --mode {other}")


def _training(episodes: int | None, options: dict[str, Any]) -> None:
    from robolake.bench import training
    from robolake.bench.core import parse_size
    from robolake.storage.progress import counter_progress

    base = training.SMOKE if options["smoke"] else training.TrainingParams()
    given: dict[str, Any] = {
        "episodes": episodes,
        "workers": options["workers"],
        "epochs": options["epochs"],
        "batch_size": options["batch_size"],
        "profile": options["profile"],
        "seed": options["seed"] if options["seed"] != 0 else None,
    }
    if options["block_size"] is not None:
        given["block_bytes"] = parse_size(options["block_size"], "--block-size")
    if options["loaders"] is not None:
        given["loaders"] = names(options["loaders"], lower=True)
    params = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    settings = load_settings()
    with counter_progress("generating the dataset", console=err_console) as progress:
        doc = training.run(settings, params, say, progress=progress)
    finish(settings, doc, training.markdown(doc), training.TITLE, options["out"], options["as_json"])


@click.command("warp-check", context_settings={"show_default": True})
@click.option("--small-size", default="4KiB")
@click.option("--small-objects", type=click.IntRange(1), default=1000)
@click.option("--small-concurrency", type=click.IntRange(1, 1024), default=16)
@click.option("--large-size", default="64MiB")
@click.option("--large-objects", type=click.IntRange(1), default=8)
@click.option("--large-concurrency", type=click.IntRange(1, 1024), default=4)
@click.option("--duration", "duration_s", type=float, default=15.0, help="Seconds per run (warp needs at least 6).")
@click.option("--smoke", is_flag=True, help="200 x 4KiB at 8 and 4 x 16MiB at 2, 6 s runs (about 1 minute).")
@with_options(OUTPUT_OPTIONS)
def warp_check(smoke: bool, out: Path, as_json: bool, **options: Any) -> None:
    """Our load driver and warp on the same plain GET workload: same node, objects and concurrency.

    Shows that robolake's drivers measure the storage, not themselves: small-object GET
    objects/s should be within 25% of warp's, large-object GET MiB/s within 15%. warp runs
    before and after our driver; its figure is the mean. Exit status 0 either way; the verdict
    is printed and stored (summary.all_within).

    \b
        robolake bench warp-check --smoke
    """
    from robolake.bench import warpcheck

    params = warpcheck.SMOKE_PARAMS if smoke else warpcheck.WarpCheckParams(**options)
    settings = load_settings()
    doc = warpcheck.run(settings, params, say)
    finish(settings, doc, warpcheck.markdown(doc), warpcheck.TITLE, out, as_json)


@click.command("compare", context_settings={"show_default": True})
@click.argument("run_a")
@click.argument("run_b")
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("benchmarks"), help="Where local runs are looked up."
)
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
