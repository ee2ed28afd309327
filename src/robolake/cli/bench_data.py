"""`robolake bench small-files` and `robolake bench upload` (attached to the `bench` group in main.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from robolake.cli.bench_suite import OUTPUT_OPTIONS, finish, names, say
from robolake.cli.common import err_console, load_settings, with_options

SMALL_FILES_OPTIONS = [
    click.option(
        "--endpoint",
        default=None,
        help="Where PUT/HEAD/LIST go, HOST:PORT (default: the accelerator); e.g. a MinIO node.",
    ),
    click.option("--direct-endpoint", default=None, help="MinIO endpoint of the direct GET path (default: node 1)."),
    click.option("--objects", type=click.IntRange(2), default=2000, show_default=True, help="Distinct objects."),
    click.option(
        "--frames",
        "frames_per_object",
        type=click.IntRange(1),
        default=60,
        show_default=True,
        help="Frames per JSON body (60: pose ~12 KB, gripper ~1.7 KB).",
    ),
    click.option("--concurrency", "levels", default="1,8,32", show_default=True, help="Concurrency sweep."),
    click.option("--duration", "duration_s", type=float, default=5.0, show_default=True, help="Seconds per cell."),
    click.option(
        "--warmup",
        "warmup_s",
        type=float,
        default=1.0,
        show_default=True,
        help="Seconds of unreported load before each cell.",
    ),
    click.option("--seed", type=click.IntRange(0), default=0, show_default=True),
    click.option("--ops", default="put,get,head,list", show_default=True, help="Operations to measure."),
    click.option(
        "--paths",
        default=",".join(("direct", "accelerator cold", "accelerator warm", "accelerator batch")),
        show_default=True,
        help="GET paths to compare.",
    ),
    click.option(
        "--batch-size", type=click.IntRange(1, 1000), default=100, show_default=True, help="Keys per batch GET request."
    ),
    click.option("--smoke", is_flag=True, help="A quick run: 300 objects, concurrency 1,8, 1 s cells (about 40 s)."),
    *OUTPUT_OPTIONS,
]


@click.command("small-files")
@with_options(SMALL_FILES_OPTIONS)
def bench_small_files(
    endpoint: str | None,
    direct_endpoint: str | None,
    levels: str,
    ops: str,
    paths: str,
    smoke: bool,
    out: Path,
    as_json: bool,
    **options: Any,
) -> None:
    """small_file_performance: many small pose and gripper JSON objects, GET through every path.

    At each concurrency level: GET direct from MinIO, through the accelerator cold (first read)
    and warm, and as batch GETs; then PUT, HEAD and LIST. Reports objects/s, MiB/s and latency
    p50/p90/p99 per cell with PNG plots. Uses (and cleans up) the bucket robolake-bench-small.

    \b
        robolake bench small-files --smoke
        robolake bench small-files --concurrency 1,8,32,64 --duration 10
    """
    from robolake.bench import small_files
    from robolake.bench.core import parse_levels

    settings = load_settings()
    params = (
        small_files.SMOKE
        if smoke
        else small_files.SmallFileBenchParams(
            concurrency_levels=parse_levels(levels),
            ops=names(ops, lower=True),
            paths=names(paths, lower=True),
            **options,
        )
    )
    doc = small_files.run(settings, params, say, direct_endpoint=direct_endpoint, ops_endpoint=endpoint)
    finish(settings, doc, small_files.markdown(doc), small_files.TITLE, out, as_json)


@click.command("upload")
@click.option("--endpoint", default=None, help="S3 endpoint HOST:PORT (default: the accelerator).")
@click.option("--objects", type=click.IntRange(1), default=10_000, show_default=True, help="Files to upload.")
@click.option("--obj-size", default="4KiB", show_default=True, help="Object size (4096, 4KiB, 1MiB).")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option(
    "--warp-duration", "warp_duration_s", type=float, default=20.0, show_default=True, help="Seconds per warp put run."
)
@click.option("--smoke", is_flag=True, help="A quick run: 500 objects, 6 s warp runs.")
@with_options(OUTPUT_OPTIONS)
def bench_upload(endpoint: str | None, smoke: bool, out: Path, as_json: bool, **options: Any) -> None:
    """Our verified uploader vs `warp put`: same object size, concurrency and endpoint, one run.

    Prints both objects/s figures and their ratio (goal >= 0.70). Uses (and empties) the bucket
    robolake-bench-upload. Example: robolake bench upload --objects 10000 --obj-size 4KiB
    """
    from robolake.bench import upload
    from robolake.storage.progress import object_progress

    settings = load_settings()
    params = upload.SMOKE if smoke else upload.UploadBenchParams(**options)
    with object_progress("uploading", console=err_console) as progress:
        doc = upload.run(settings, params, lambda m: err_console.print(f"  {m}"), endpoint=endpoint, progress=progress)
    finish(settings, doc, upload.markdown(doc), "Upload benchmark", out, as_json)
