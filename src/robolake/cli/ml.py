"""`robolake runs list`: which training runs read which lakeFS commit (robolake.ml's run records)."""

from __future__ import annotations

import json

import click
from rich.table import Table

from robolake.cli.common import load_settings, out_console
from robolake.ml import list_runs


@click.group()
def runs() -> None:
    """Training runs recorded in s3://umi-experiments/results/<run-id>/run.json.

    A run record names the lakeFS commit a run read, the ref it was asked for, the dataset path,
    the sampler parameters and the seed: the lineage from a model back to its exact data.
    """


@runs.command("list")
@click.option("--commit", default=None, metavar="ID", help="Only runs that read this commit (a prefix will do).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
def list_command(commit: str | None, as_json: bool) -> None:
    """List run records, oldest first."""
    records = list(list_runs(load_settings(), commit=commit))
    if as_json:
        click.echo(json.dumps([json.loads(r.to_json()) for r in records], indent=2))
        return
    table = Table("run id", "commit", "ref", "path", "seed", "created")
    for r in records:
        table.add_row(r.run_id, r.commit_id[:12], r.ref, f"{r.repo}/{r.path}", str(r.seed), r.created)
    out_console.print(table if records else "no run records" + (f" for commit {commit!r}" if commit else ""))
