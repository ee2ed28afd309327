"""`robolake bench ...`: benchmarks that print ratios against a baseline measured in the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from robolake.cli.common import err_console, load_settings


@click.group()
def bench() -> None:
    """Measure the stack. Every figure is a ratio against a baseline from the same run.

    Workloads: small-files (small_file_performance), large-file-streaming, mixed-workload,
    dataloader; warp-check cross-checks our load driver with warp; compare prints the ratios
    between two runs. Each run has a seed, a warm-up, a duration (or --operations) and a
    concurrency sweep, and writes report.md, results.json, throughput.png and latency_cdf.png
    to ./benchmarks/<run-id>/ (or --out) and to s3://umi-experiments/benchmarks/<run-id>/.
    Start with --smoke (under a minute each).
    """


@bench.command("accelerator")
@click.option("--obj-size", default="4KiB", show_default=True, help="Object size (warp syntax: 4KiB, 1MiB).")
@click.option("--objects", default=2000, show_default=True, help="Objects in the working set.")
@click.option("--concurrency", default=16, show_default=True, help="Concurrent GETs (warp --concurrent).")
@click.option("--duration", "duration_s", default=20.0, show_default=True, help="Seconds per measured run.")
@click.option("--batch-size", default=100, show_default=True, help="Keys per batch GET request.")
@click.option("--batch-concurrency", default=4, show_default=True, help="Concurrent batch requests.")
@click.option(
    "--parts",
    default="warm,cold,large",
    show_default=True,
    help="warm: warm GET and batch GET; cold: fresh objects; large: GET and PUT of --large-size.",
)
@click.option("--cold-objects", default=20000, show_default=True, help="Fresh objects for the cold part.")
@click.option("--large-size", default="64MiB", show_default=True, help="Object size of the large part (warp syntax).")
@click.option("--large-objects", default=16, show_default=True, help="Objects read by the large GET runs.")
@click.option("--large-concurrency", default=4, show_default=True, help="Concurrent large GETs and PUTs.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks"), show_default=True)
def accelerator_bench(out: Path, parts: str, **options: Any) -> None:
    """The accelerator vs direct MinIO GET/PUT, warp as the load generator, same run, same objects.

    warm: GET of a working set read once through the accelerator first, and batch GET; cold: GET of
    fresh objects (the share of misses is reported); large: GET and PUT of 64 MiB objects. Each
    accelerator run sits between two direct runs against MinIO node 1; ratios are against their mean.
    Needs the running stack. Uses (and empties) the bucket robolake-bench; takes ~10 minutes with the
    defaults. Example, small: robolake bench accelerator --duration 5 --objects 500 --cold-objects 5000
    """
    from robolake.bench import accelerator as run
    from robolake.cli.bench_suite import finish

    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    options.update(obj_size=options["obj_size"].strip(), large_size=options["large_size"].strip(), parts=chosen)
    params = run.AcceleratorBenchParams(**options)
    settings = load_settings()
    doc = run.run(settings, params, lambda m: err_console.print(f"  {m}"))
    finish(settings, doc, run.markdown(doc), "Accelerator benchmark", out, as_json=False)
