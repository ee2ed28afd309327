"""`robolake version ...`: branches, commits, log, diff, merge, tags, revert, put, read, import."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from robolake.cli.common import err_console, load_settings, out_console, prefix_callback
from robolake.errors import ConfigError
from robolake.versioning import Commit, LakeFSClient, TransferProgress, diff_summary, put_dataset, read_dataset
from robolake.versioning.client import ImportStatus
from robolake.versioning.dataset import content_checksum
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
            bar.update(task, completed=p.bytes_done, total=p.bytes_total, files=f"{p.files_done}/{p.files_total} files")

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


@branch.command("list")
@common
def branch_list(repo: str | None, as_json: bool) -> None:
    """List branches and the commit each points at.

    \b
    Example:
      robolake version branch list --json
    """
    client, repo = _open(repo)
    refs = list(client.list_branches(repo))
    table = Table("branch", "commit", box=None)
    for ref in refs:
        table.add_row(ref.id, ref.commit_id[:12])
    if as_json:
        _emit(True, [dataclasses.asdict(r) for r in refs], "")
    else:
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
    tags = list(client.list_tags(repo))
    text = "\n".join(f"{t.id}  {t.commit_id[:12]}" for t in tags) or "no tags"
    _emit(as_json, [dataclasses.asdict(t) for t in tags], text)


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


# ---- data in and out ---------------------------------------------------------------------


@version.command()
@click.argument("local_dir", type=click.Path(path_type=Path, file_okay=False))
@branch_option(required=True, help="Branch to commit to.")
@click.option("--prefix", required=True, help="Where the folder's files go in the repository.")
@click.option("-m", "--message", default=None, help="Commit message [default: a summary].")
@click.option("--name", default=None, help="Dataset name in the metadata [default: the prefix's last part].")
@meta_option
@click.option("--workers", default=8, show_default=True, type=click.IntRange(1, 8), help="Parallel uploads.")
@click.option(
    "--if-changed",
    is_flag=True,
    help="Make no commit when the branch head already holds exactly this content (a re-run is then a no-op).",
)
@common
def put(
    local_dir: Path,
    branch_name: str,
    prefix: str,
    message: str | None,
    name: str | None,
    meta: Pairs,
    workers: int,
    if_changed: bool,
    repo: str | None,
    as_json: bool,
) -> None:
    """Upload LOCAL_DIR to PREFIX on a branch, verify every file, and commit once.

    The commit's metadata holds the dataset name, object count, total bytes and a content
    checksum, plus --meta pairs. Unchanged files are not sent again; files gone from the folder
    are removed from the prefix.

    \b
    Example:
      robolake version put ./episodes --branch cup-v2 --prefix umi/cup --meta seed=7
    """
    client, repo = _open(repo)
    with _transfer_bar("uploading") as report, hook_reasons(client, repo):
        done = put_dataset(
            client,
            repo,
            branch_name,
            local_dir,
            prefix,
            _meta(meta),
            report,
            name=name,
            message=message,
            workers=workers,
            if_changed=if_changed,
        )
    summary = {k: v for k, v in done.as_dict().items() if k != "files"}
    _emit(
        as_json,
        summary,
        f"committed {done.commit.id} on {branch_name!r}: {done.object_count} files, "
        f"{done.total_bytes} bytes ({done.uploaded} sent, {done.deleted} removed), "
        f"content sha256 {done.content_sha256}",
    )


@version.command()
@click.argument("ref")
@click.argument("prefix")
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@click.option("--workers", default=8, show_default=True, type=click.IntRange(1, 8), help="Parallel downloads.")
@common
def read(ref: str, prefix: str, dest: Path, workers: int, repo: str | None, as_json: bool) -> None:
    """Download everything under PREFIX at REF into DEST, checking each file's sha256.

    \b
    Example:
      robolake version read cup-v2.0 umi/cup ./cup-v2
    """
    client, repo = _open(repo)
    with _transfer_bar("downloading") as report:
        files = read_dataset(client, repo, ref, prefix, dest, workers=workers, progress=report)
    checksum = content_checksum(files)
    _emit(
        as_json,
        {"ref": ref, "prefix": prefix, "dest": str(dest), "content_sha256": checksum, "files": files},
        f"read {len(files)} files into {str(dest)!r}; content sha256 {checksum}",
    )


@version.command("import")
@click.option("--from", "source", required=True, metavar="S3_URI", help="s3://bucket/prefix/ to import.")
@branch_option(required=True, help="Branch to import into (it gets one commit).")
@click.option("--to", "destination", default=None, help="Prefix in the repository [default: the source's prefix].")
@click.option("-m", "--message", default=None, help="Commit message [default: 'Import S3_URI'].")
@meta_option
@common
def import_(
    source: str,
    branch_name: str,
    destination: str | None,
    message: str | None,
    meta: Pairs,
    repo: str | None,
    as_json: bool,
) -> None:
    """Import objects already in a bucket without copying them (lakeFS records their addresses).

    \b
    Example:
      robolake version import --from s3://umi-raw/pose/ --branch raw-import --to raw/pose/
    """
    client, repo = _open(repo)
    if destination is None:
        destination = source.removeprefix("s3://").partition("/")[2]
    with Progress(TextColumn("{task.description}"), console=err_console, transient=True) as bar:
        task = bar.add_task(f"importing {source}")

        def show(s: ImportStatus) -> None:
            bar.update(task, description=f"importing {source}: {s.ingested_objects} objects")

        commit_message = message or f"Import {source}"
        status = client.import_prefix(
            repo, branch_name, source, destination, commit_message, _meta(meta), progress=show
        )
    commit_id, count = (status.commit.id if status.commit else ""), status.ingested_objects
    if count == 0:
        err_console.print(
            f"warning: nothing was found under {source}; check the bucket and prefix "
            "(a prefix matches whole path segments)"
        )
    _emit(
        as_json,
        dict(source=source, branch=branch_name, destination=destination, ingested_objects=count, commit_id=commit_id),
        f"imported {count} objects from {source} to {destination or '/'!r} on {branch_name!r}: {commit_id}",
    )


@version.command("install-hook")
@branch_option(default="main", show_default=True, help="Branch whose commits and merges the hook checks.")
@click.option("--url", default=None, help="Webhook URL with ?token= [default: the stack's hooks server and token].")
@click.option("--timeout", default="2m", show_default=True, help="How long lakeFS waits for the hook (Go duration).")
@common
def install_hook(branch_name: str, url: str | None, timeout: str, repo: str | None, as_json: bool) -> None:
    """Guard a branch with the UMI validation hook (pre-commit and pre-merge).

    Commits _lakefs_actions/robolake-validate-umi.yaml to the branch, unless the same file is
    committed there already. lakeFS runs the hook for that commit too, so a hook server it cannot
    reach fails the install and leaves the branch unchanged.

    \b
    Example:
      robolake version install-hook --branch main
    """
    from robolake.versioning.hooks import ACTION_PATH, install_validation_hook, stack_hook_url

    client, repo = _open(repo)
    done = install_validation_hook(client, repo, branch_name, url or stack_hook_url(load_settings()), timeout=timeout)
    _emit(
        as_json,
        {"repo": repo, "branch": branch_name, "path": ACTION_PATH, "commit_id": done.id if done else None},
        f"installed the UMI validation hook on {branch_name!r}: {done.id}"
        if done
        else f"the UMI validation hook is installed on {branch_name!r} already",
    )
