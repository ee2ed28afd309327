"""Entry point of the `robolake` command."""

from __future__ import annotations

import click

from robolake import __version__
from robolake.cli.accelerator import accelerator
from robolake.cli.bench import bench
from robolake.cli.bench_data import bench_small_files, bench_upload
from robolake.cli.bench_suite import compare, dataloader, large_file_streaming, mixed_workload, warp_check
from robolake.cli.common import run_cli
from robolake.cli.console import console
from robolake.cli.data import generate, ingest, upload
from robolake.cli.export import export
from robolake.cli.hooks import hooks
from robolake.cli.ml import runs
from robolake.cli.process import bench_process, process
from robolake.cli.reliability import reliability
from robolake.cli.stack import buckets, stack
from robolake.cli.users import users
from robolake.cli.version import version
from robolake.cli.version_data import import_, install_hook, put, read


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="robolake")
def cli() -> None:
    """robolake: a data lake for robot-learning data.

    A 3-node erasure-coded MinIO cluster, lakeFS for dataset versioning, and tools to fill,
    version and benchmark it. Start with `robolake stack up`, then `robolake stack status`.

    Settings come from flags, then ROBOLAKE_* environment variables, then a .env file in the
    current directory (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD set the MinIO root credentials).
    """


cli.add_command(stack)
cli.add_command(buckets)
cli.add_command(version)
for command in (put, read, import_, install_hook):
    version.add_command(command)
cli.add_command(accelerator)
cli.add_command(hooks)
cli.add_command(bench)
bench.add_command(bench_small_files)
bench.add_command(bench_upload)
for command in (large_file_streaming, mixed_workload, dataloader, warp_check, compare, bench_process):
    bench.add_command(command)
cli.add_command(generate)
cli.add_command(upload)
cli.add_command(ingest)
cli.add_command(runs)
cli.add_command(export)
cli.add_command(process)
cli.add_command(users)
cli.add_command(console)
cli.add_command(reliability)


def main() -> None:
    run_cli(cli)
