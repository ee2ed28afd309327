"""`robolake hooks serve`: the UMI validation webhook lakeFS calls before commits and merges."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import click

from robolake.cli.common import PORT, err_console, load_settings, run_cli


@click.group()
def hooks() -> None:
    """The UMI validation hook: lakeFS asks it before every commit and merge into a guarded branch.

    It checks the replay buffers (*.zarr.zip), pose/gripper episode JSON and MP4s the operation
    adds or changes, and refuses the operation with the path and the problem when one is broken.
    The stack runs it on 127.0.0.1:9020 and guards robotics-data's main; guard another branch
    with `robolake version install-hook --branch NAME`.
    """


@hooks.command()
@click.option("--host", default=None, help="Address to listen on [default: the stack's host].")
@click.option("--port", type=PORT, default=None, help="Port [default: ROBOLAKE_HOOKS_PORT or 9020].")
@click.option("--lakefs-endpoint", default=None, help="lakeFS URL to read objects from [default: the stack's].")
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where replay buffers and videos are downloaded to be checked [default: the temp dir].",
)
@click.option(
    "--max-object-mb",
    type=click.IntRange(1, 1 << 20),
    default=1024,
    show_default=True,
    help="Refuse replay buffers and videos larger than this.",
)
@click.option(
    "--time-budget-s",
    type=click.FloatRange(1, 3600),
    default=100.0,
    show_default=True,
    help="Give up (and refuse the operation) after this long; keep it below the action's timeout.",
)
@click.option(
    "--allow-from",
    multiple=True,
    metavar="CIDR|private",
    help="Also accept calls from this network (repeatable; `private`: 10/8, 172.16/12, 192.168/16, fc00::/7), "
    "for a lakeFS in a container network. Loopback is always accepted; the token is asked for either way.",
)
def serve(
    host: str | None,
    port: int | None,
    lakefs_endpoint: str | None,
    work_dir: Path | None,
    max_object_mb: int,
    time_budget_s: float,
    allow_from: tuple[str, ...],
) -> None:
    """Run the hooks server in the foreground (Ctrl-C stops it).

    It accepts calls from loopback (and --allow-from networks) only, with `Authorization: Bearer
    <ROBOLAKE_HOOKS_TOKEN>` (or ?token= in the URL; default: the token in the stack's state
    directory). The stack's lakeFS has the token as LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN, which the
    action file names instead of holding it. It reads objects from lakeFS with the stack's keys,
    or with ROBOLAKE_LAKEFS_ACCESS_KEY_ID / ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY.

    Example: robolake hooks serve --port 9020
    """
    from robolake.versioning.hooks import ValidationLimits
    from robolake.versioning.hooks_server import run_hooks_server

    limits = ValidationLimits(max_object_bytes=max_object_mb << 20, time_budget_s=time_budget_s)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    announce = functools.partial(err_console.print, markup=False)
    run_hooks_server(
        load_settings(), limits, host, port, lakefs_endpoint, work_dir, allow_from=allow_from, announce=announce
    )


def main() -> None:
    run_cli(hooks)


if __name__ == "__main__":  # `python -m robolake.cli.hooks serve ...` is how the stack starts it
    main()
