"""`robolake console`: the web console (stack, versions, metrics, episode browser)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import cast

import click

from robolake.cli.common import PORT, err_console, load_settings, run_cli


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: the stack's host, 127.0.0.1].")
@click.option("--port", type=PORT, default=None, help="Port [default: ROBOLAKE_CONSOLE_PORT or 9030].")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The stack's state directory [default: ROBOLAKE_STATE_DIR or ~/.local/state/robolake].",
)
def console(host: str | None, port: int | None, state_dir: Path | None) -> None:
    """Open the lake in a browser: cluster health, versions, metrics, and an episode browser.

    Pages: / (nodes, drives, capacity, buckets, component health), /versions (branches, tags,
    commits with their metadata, a diff per episode), /metrics (the last hour from Prometheus,
    benchmark runs and their plots) and /episodes (pick a ref and a dataset, play an episode's
    video beside its pose and gripper curves, see its replay-buffer frames), each with a JSON
    twin under /api/. `robolake stack up` starts it; run it yourself to serve another address.

    Every request but /health needs HTTP basic auth with the stack's lakeFS key pair, on loopback
    too (user: access key id, password: secret key; `robolake stack env` prints them as
    LAKECTL_CREDENTIALS_*).

    Example: robolake console --port 9030, then open http://127.0.0.1:9030/
    """
    from robolake.console import run_console

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    announce = functools.partial(err_console.print, markup=False)
    settings = load_settings()
    run_console(settings.override(state_dir=state_dir) if state_dir else settings, host, port, announce=announce)


def main() -> None:
    run_cli(cast(click.Group, console))


if __name__ == "__main__":  # `python -m robolake.cli.console --port ...` is how the stack starts it
    main()
