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
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks"), show_default=True)
def accelerator_bench(out: Path, **options: Any) -> None:
    """Warm GET through the accelerator vs direct MinIO GET (both with warp), and batch GET.

    Needs the running stack. Uses (and empties) the bucket robolake-bench. Example, small:
    robolake bench accelerator --duration 5 --objects 500
    """
    from robolake.bench import accelerator as run
    from robolake.cli.bench_suite import finish

    params = run.AcceleratorBenchParams(**{**options, "obj_size": options["obj_size"].strip()})
    settings = load_settings()
    doc = run.run(settings, params, lambda m: err_console.print(f"  {m}"))
    finish(settings, doc, run.markdown(doc), "Accelerator benchmark", out, as_json=False)
