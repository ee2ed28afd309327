"""What every command shares: settings from the environment, and one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from robolake.config import Settings
from robolake.errors import RobolakeError
from robolake.keys import check_prefix

F = TypeVar("F", bound=Callable[..., Any])

# Not a terminal (a pipe, a log file, CI): rich would assume 80 columns and cut URLs in tables.
_WIDTH = None if sys.stdout.isatty() else 160
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)
out_console = Console(highlight=False, soft_wrap=True, width=_WIDTH)


PORT = click.IntRange(1, 65535)  # a TCP port a server listens on


def prefix_callback(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A click callback: refuse a prefix that climbs out (ConfigError, printed as one line)."""
    return check_prefix(value, f"--{param.name}" if isinstance(param, click.Option) else str(param.name).upper())


def load_settings() -> Settings:
    return Settings.load()


def run_cli(group: click.Group) -> None:
    """Run the click group; a RobolakeError becomes one red line and its exit code."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except RobolakeError as exc:
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


def with_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator applying click `options` in the order listed (the first shows first in --help)."""

    def apply(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return apply
