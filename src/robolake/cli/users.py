"""`robolake users add | list | remove`: a team's own MinIO credentials, known to the accelerator."""

from __future__ import annotations

import dataclasses
import json

import click
from rich.table import Table

from robolake.cli.common import load_settings, out_console


@click.group()
def users() -> None:
    """A team's own credentials instead of the root key.

    Each user is a MinIO user with one of robolake's policies. The accelerator verifies their
    signatures and answers them from its cache, but only for buckets MinIO has just let them
    read (an allow from MinIO lasts seconds and is dropped when the user changes): MinIO stays
    the judge. A user's keys are written to STATE_DIR/users/NAME.env (mode 0600), never printed.

    \b
    Example:
      robolake users add alice --policy bucket:umi-raw:ro
      set -a; . ~/.local/state/robolake/users/alice.env; set +a   # then aws s3 ls s3://umi-raw
    """


@users.command()
@click.argument("name")
@click.option(
    "--policy",
    required=True,
    metavar="POLICY",
    help="readonly (read every bucket), readwrite (read and write every bucket), bucket:NAME (read and "
    "write one bucket) or bucket:NAME:ro (read one bucket). Adding a user again changes its policy.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the user as JSON (without its secret).")
def add(name: str, policy: str, as_json: bool) -> None:
    """Create user NAME with POLICY (or give an existing one a new policy, keeping its keys)."""
    from robolake.stack.users import add_user

    report = add_user(load_settings(), name, policy)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
        return
    out_console.print(
        f"user {report.name} ({report.policy}, MinIO policy {report.minio_policy}); its keys are in "
        f"{report.credentials_file} (mode 0600)",
        markup=False,
    )


@users.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the users as JSON (no secrets).")
def list_(as_json: bool) -> None:
    """Show the users `users add` created, their policies, and whether MinIO still has them."""
    from robolake.stack.users import list_users

    reports = list_users(load_settings())
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in reports], indent=2))
        return
    table = Table("user", "policy", "MinIO policy", "in MinIO", "keys file")
    for r in reports:
        table.add_row(r.name, r.policy, r.minio_policy, "yes" if r.in_minio else "NO", r.credentials_file)
    out_console.print(table if reports else "no users yet; add one with `robolake users add NAME --policy readonly`")


@users.command()
@click.argument("name")
def remove(name: str) -> None:
    """Remove user NAME: the accelerator stops answering it at once, then MinIO forgets it."""
    from robolake.stack.users import remove_user

    remove_user(load_settings(), name)
    out_console.print(f"user {name} removed", markup=False)
