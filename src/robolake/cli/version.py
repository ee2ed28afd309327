"""`robolake version ...`: branches, commits, log, diff, merge, tags, revert (put, read, import: version_data.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from robolake.cli.common import err_console, load_settings, out_console, prefix_callback
from robolake.errors import ConfigError
from robolake.versioning import Commit, LakeFSClient, TransferProgress, diff_summary
from robolake.versioning.hooks import hook_reasons

F = TypeVar("F", bound=Callable[..., Any])
Pairs = tuple[str, ...]  # a repeated option's values, e.g. --meta KEY=VALUE
STRATEGIES = click.Choice(["source-wins", "dest-wins"])
branch_option = functools.partial(click.option, "--branch", "branch_name")


def common(func: F) -> F:
    """--repo and --json, which every command takes."""
    func = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(func)
    return click.option(
        "--repo", default=None, metavar="NAME", help="lakeFS repository [default: the stack's, robotics-data]."
    )(func)


meta_option = click.option(
    "--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Commit metadata; repeat for more keys."
)


def _open(repo: str | None) -> tuple[LakeFSClient, str]:
    settings = load_settings()
    return LakeFSClient.from_settings(settings), repo or settings.lakefs_repo


def _meta(pairs: Pairs) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta {pair!r} is not KEY=VALUE; e.g. --meta seed=42")
        out[key] = value
    return out


def _emit(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        out_console.print(text)


def _when(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _commit_line(commit: Commit) -> str:
    meta = " ".join(f"{k}={v}" for k, v in sorted(commit.metadata.items()))
    return f"{commit.id[:12]}  {_when(commit.creation_date)}  {commit.message}" + (f"  [{meta}]" if meta else "")


@contextlib.contextmanager
def _transfer_bar(verb: str) -> Iterator[Callable[[TransferProgress], None]]:
    bar_and_files = (BarColumn(), TextColumn("{task.fields[files]}"), DownloadColumn())
    columns = (TextColumn(verb), *bar_and_files, TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(verb, total=None, files="")

        def report(p: TransferProgress) -> None:
            bar.update(
                task, completed=p.bytes_done, total=p.bytes_total, files=f"{p.objects_done}/{p.objects_total} files"
            )

        yield report


@click.group()
def version() -> None:
    """Version datasets with lakeFS: branches, commits, diffs, merges, tags, imports.

    Every command works on the stack's repository (robotics-data) unless --repo says otherwise,
    and prints JSON with --json. The lakeFS keys come from the stack's state directory, or from
    ROBOLAKE_LAKEFS_ACCESS_KEY_ID / ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY.

    \b
    A typical round:
      robolake version branch create cup-v2 --from main
      robolake version put ./episodes --branch cup-v2 --prefix umi/cup --meta seed=7
      robolake version diff main cup-v2
      robolake version merge cup-v2 main
      robolake version tag create cup-v2.0 main
    """


# ---- branches ----------------------------------------------------------------------------


@version.group()
def branch() -> None:
    """Create, list and delete branches."""


@branch.command("list")
@common
def branch_list(repo: str | None, as_json: bool) -> None:
    """List branches and the commit each points at.

    \b
    Example:
      robolake version branch list --json
    """
    client, repo = _open(repo)
    _emit_refs(as_json, "branch", list(client.list_branches(repo)))


@branch.command("create")
@click.argument("name")
@click.option("--from", "source", default="main", show_default=True, help="Branch, tag or commit to start from.")
@common
def branch_create(name: str, source: str, repo: str | None, as_json: bool) -> None:
    """Create branch NAME at a ref.

    \b
    Example:
      robolake version branch create cup-v2 --from main
    """
    client, repo = _open(repo)
    ref = client.create_branch(repo, name, source)
    _emit(as_json, dataclasses.asdict(ref), f"created branch {ref.id!r} at {ref.commit_id[:12]}")


def _emit_refs(as_json: bool, kind: str, refs: list[Any]) -> None:
    """Branches or tags: JSON, or a table of name and commit ("no tags" when there are none)."""
    if as_json:
        _emit(True, [dataclasses.asdict(r) for r in refs], "")
        return
    if not refs:
        out_console.print(f"no {kind}s")
        return
    table = Table(kind, "commit", box=None)
    for ref in refs:
        table.add_row(ref.id, ref.commit_id[:12])
    out_console.print(table)


@branch.command("delete")
@click.argument("name")
@common
def branch_delete(name: str, repo: str | None, as_json: bool) -> None:
    """Delete branch NAME (its commits stay reachable from other refs).

    \b
    Example:
      robolake version branch delete cup-v2
    """
    client, repo = _open(repo)
    client.delete_branch(repo, name)
    _emit(as_json, {"deleted": name}, f"deleted branch {name!r}")


# ---- commits -----------------------------------------------------------------------------


@version.command()
@click.argument("branch_name", metavar="BRANCH")
@click.option("-m", "--message", required=True, help="Commit message.")
@meta_option
@click.option("--allow-empty", is_flag=True, help="Commit even when nothing changed.")
@common
def commit(branch_name: str, message: str, meta: Pairs, allow_empty: bool, repo: str | None, as_json: bool) -> None:
    """Commit what is staged on BRANCH, with metadata.

    \b
    Example:
      robolake version commit cup-v2 -m "regenerate poses" --meta seed=7 --meta profile=small
    """
    client, repo = _open(repo)
    with hook_reasons(client, repo):  # a refusal by the UMI validation hook says why
        done = client.commit(repo, branch_name, message, _meta(meta), allow_empty=allow_empty)
    _emit(as_json, dataclasses.asdict(done), f"committed {done.id} on {branch_name!r}")


@version.command()
@click.argument("ref", default="main")
@click.option("-n", "--limit", default=20, show_default=True, help="Show at most this many commits (0: all).")
@click.option("--prefix", default="", help="Only commits that touched this prefix.", callback=prefix_callback)
@common
def log(ref: str, limit: int, prefix: str, repo: str | None, as_json: bool) -> None:
    """Show the commits reachable from REF (default main), newest first, with metadata.

    \b
    Example:
      robolake version log cup-v2 -n 5
    """
    client, repo = _open(repo)
    commits = list(client.log(repo, ref, limit=limit or None, prefix=prefix))
    text = "\n".join(_commit_line(c) for c in commits) or f"no commits at {ref!r}"
    _emit(as_json, [dataclasses.asdict(c) for c in commits], text)


@version.command()
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--prefix", default="", help="Only paths under this prefix.", callback=prefix_callback)
@click.option("--two-dot", is_flag=True, help="Compare the two refs directly, not from their merge base.")
@common
def diff(ref_a: str, ref_b: str, prefix: str, two_dot: bool, repo: str | None, as_json: bool) -> None:
    """Show what REF_B changed relative to REF_A, path by path and per episode.

    By default (three-dot, like lakeFS) the changes REF_B made since it and REF_A diverged: what a
    merge of REF_B into REF_A would bring. Episodes are found in paths like .../episode_00012/...

    \b
    Example:
      robolake version diff main cup-v2 --prefix umi/cup/
    """
    client, repo = _open(repo)
    entries = list(client.diff(repo, ref_a, ref_b, prefix=prefix, two_dot=two_dot))
    summary = diff_summary(entries)
    if as_json:
        _emit(True, {"entries": [dataclasses.asdict(e) for e in entries], "summary": summary.as_dict()}, "")
        return
    marks = {"added": "+", "removed": "-", "changed": "~", "conflict": "!", "prefix_changed": "~"}
    for entry in entries:
        out_console.print(f"{marks.get(entry.type, '?')} {entry.path}", markup=False)
    counts = ", ".join(f"{n} {kind}" for kind, n in summary.counts.items() if n) or "no changes"
    out_console.print(f"{counts}; {len(summary.episodes)} episode(s) touched")
    for name, changes in summary.episodes.items():
        parts = [f"{len(v)} {k}" for k, v in changes.as_dict().items() if v]
        out_console.print(f"  {name}: {', '.join(parts)}", markup=False)


@version.command()
@click.argument("source")
@click.argument("dest")
@click.option("-m", "--message", default="", help="Merge commit message.")
@meta_option
@click.option("--strategy", type=STRATEGIES, default=None, help="On conflicts, take this side instead of failing.")
@common
def merge(
    source: str, dest: str, message: str, meta: Pairs, strategy: str | None, repo: str | None, as_json: bool
) -> None:
    """Merge SOURCE (a branch, tag or commit) into branch DEST.

    On a conflict nothing changes, and the conflicting paths are listed.

    \b
    Example:
      robolake version merge cup-v2 main -m "cup dataset v2"
    """
    client, repo = _open(repo)
    with hook_reasons(client, repo):
        merged = client.merge(repo, source, dest, message=message, metadata=_meta(meta), strategy=strategy)
    _emit(as_json, {"source": source, "dest": dest, "commit_id": merged}, f"merged {source!r} into {dest!r}: {merged}")


# ---- tags and revert ---------------------------------------------------------------------


@version.group()
def tag() -> None:
    """Create, list and delete tags (immutable names for commits)."""


@tag.command("create")
@click.argument("name")
@click.argument("ref")
@common
def tag_create(name: str, ref: str, repo: str | None, as_json: bool) -> None:
    """Tag the commit REF points at as NAME.

    \b
    Example:
      robolake version tag create cup-v2.0 main
    """
    client, repo = _open(repo)
    made = client.create_tag(repo, name, ref)
    _emit(as_json, dataclasses.asdict(made), f"tagged {made.commit_id[:12]} as {made.id!r}")


@tag.command("list")
@common
def tag_list(repo: str | None, as_json: bool) -> None:
    """List tags and their commits.

    \b
    Example:
      robolake version tag list
    """
    client, repo = _open(repo)
    _emit_refs(as_json, "tag", list(client.list_tags(repo)))


@tag.command("delete")
@click.argument("name")
@common
def tag_delete(name: str, repo: str | None, as_json: bool) -> None:
    """Delete tag NAME.

    \b
    Example:
      robolake version tag delete cup-v2.0
    """
    client, repo = _open(repo)
    client.delete_tag(repo, name)
    _emit(as_json, {"deleted": name}, f"deleted tag {name!r}")


@version.command()
@click.argument("branch_name", metavar="BRANCH")
@click.argument("ref")
@click.option(
    "--parent-number", default=0, show_default=True, help="For a merge commit: revert relative to this parent (1 or 2)."
)
@common
def revert(branch_name: str, ref: str, parent_number: int, repo: str | None, as_json: bool) -> None:
    """Undo commit REF on BRANCH with a new commit (history is kept).

    REF may be a commit id, a tag, or e.g. main~1. A merge commit needs --parent-number 1.

    \b
    Example:
      robolake version revert main 3f2a9c1e0b7d
    """
    client, repo = _open(repo)
    done = client.revert(repo, branch_name, ref, parent_number=parent_number)
    _emit(as_json, dataclasses.asdict(done), f"reverted {ref!r} on {branch_name!r}: {done.id}")
