"""Entry point of the `robolake` command.

Commands are imported when they run (or when `--help` lists them), not all at start: a command
then loads only the libraries it uses, which keeps `robolake <command>` from paying a second for
all of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

import click

from robolake import __version__
from robolake.cli.common import run_cli


class LazyGroup(click.Group):
    """A group whose commands are made by `loaders` (name -> function) the first time they are asked for."""

    def __init__(self, *args: object, loaders: Mapping[str, Callable[[], click.Command]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.loaders = dict(loaders)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.loaders})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.loaders:
            self.add_command(self.loaders[cmd_name](), cmd_name)
        return super().get_command(ctx, cmd_name)


def _from(module: str, name: str, *extra: tuple[str, tuple[str, ...]]) -> Callable[[], click.Command]:
    """A loader of robolake.cli.`module`.`name`, with the commands `extra` names added to it (a group)."""

    def load() -> click.Command:
        command: click.Command = getattr(importlib.import_module(f"robolake.cli.{module}"), name)
        for other, names in extra:
            loaded = importlib.import_module(f"robolake.cli.{other}")
            for sub in names:
                assert isinstance(command, click.Group)
                command.add_command(getattr(loaded, sub))
        return command

    return load


LOADERS: dict[str, Callable[[], click.Command]] = {
    "stack": _from("stack", "stack"),
    "buckets": _from("stack", "buckets"),
    "certs": _from("stack", "certs"),
    "version": _from("version", "version", ("version_data", ("put", "read", "import_", "install_hook"))),
    "accelerator": _from("accelerator", "accelerator"),
    "hooks": _from("hooks", "hooks"),
    "bench": _from(
        "bench",
        "bench",
        ("bench_data", ("bench_small_files", "bench_upload")),
        ("bench_suite", ("large_file_streaming", "mixed_workload", "dataloader", "warp_check", "compare")),
        ("process", ("bench_process",)),
    ),
    "generate": _from("data", "generate"),
    "upload": _from("data", "upload"),
    "ingest": _from("data", "ingest"),
    "runs": _from("ml", "runs"),
    "export": _from("export", "export"),
    "process": _from("process", "process"),
    "users": _from("users", "users"),
    "console": _from("console", "console"),
    "reliability": _from("reliability", "reliability"),
}


@click.group(
    cls=LazyGroup,
    loaders=LOADERS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="robolake")
def cli() -> None:
    """robolake: a data lake for robot-learning data.

    A 3-node erasure-coded MinIO cluster, lakeFS for dataset versioning, and tools to fill,
    version and benchmark it. Start with `robolake stack up`, then `robolake stack status`.

    Settings come from flags, then ROBOLAKE_* environment variables, then a .env file in the
    current directory (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD set the MinIO root credentials).
    """


def main() -> None:
    run_cli(cli)


if __name__ == "__main__":
    main()
