"""`robolake version put | read | import | install-hook`: data into and out of the repository."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import Progress, TextColumn

from robolake.cli.common import err_console, load_settings
from robolake.cli.version import Pairs, _emit, _meta, _open, _transfer_bar, branch_option, common, meta_option
from robolake.versioning import put_dataset, read_dataset
from robolake.versioning.client import ImportStatus
from robolake.versioning.dataset import content_checksum
from robolake.versioning.hooks import hook_reasons


@click.command()
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
        f"{done.total_bytes} bytes ({done.uploaded} sent, {done.deleted} removed"
        + (f", {done.resumed} changes an interrupted put had staged taken over" if done.resumed else "")
        + f"), content sha256 {done.content_sha256}",
    )


@click.command()
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


@click.command("import")
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


@click.command("install-hook")
@branch_option(default="main", show_default=True, help="Branch whose commits and merges the hook checks.")
@click.option(
    "--url",
    default=None,
    help="Webhook URL [default: the stack's hooks server; lakeFS sends the token from its environment].",
)
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
