"""Datasets on lakeFS: put a local folder as one verified commit, read a prefix back at any ref.

A dataset commit carries in its metadata what a reader needs to check it got the same data:

    dataset         name                   object_count    number of files
    prefix          where it lives         total_bytes     their total size
    content_sha256  sha256 over the sorted lines "<relative path>\\t<sha256 of the file>\\n"

plus whatever the caller adds (generator seed, profile, episode count). Each object also carries
its own sha256 as lakeFS user metadata, so `read_dataset` checks every file end to end.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from robolake.errors import ConfigError, IntegrityError, RobolakeError
from robolake.keys import check_dataset_name, check_prefix
from robolake.storage.progress import TransferProgress
from robolake.umi.naming import episode_token
from robolake.versioning.client import Commit, DiffEntry, LakeFSClient, ObjectStat
from robolake.versioning.errors import BadRequestError

MAX_WORKERS = 8
SHA256_META = "sha256"  # object user metadata key (lakeFS lower-cases it)
RESERVED_METADATA = ("dataset", "prefix", "object_count", "total_bytes", "content_sha256")
_READ_CHUNK = 1 << 20
T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class LocalFile:
    path: Path
    key: str  # path relative to the dataset root, with "/" separators
    size_bytes: int


ProgressFn = Callable[[TransferProgress], None]


@dataclasses.dataclass(frozen=True)
class DatasetCommit:
    """What `put_dataset` committed."""

    commit: Commit
    dataset: str
    prefix: str
    object_count: int
    total_bytes: int
    content_sha256: str
    uploaded: int  # files sent (the others were already on the branch, byte-identical)
    deleted: int  # objects under the prefix that are not in the folder any more
    files: dict[str, str]  # relative path -> sha256
    resumed: int = 0  # uncommitted changes under the prefix found at the start (an interrupted put's)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def normalize_prefix(prefix: str) -> str:
    """ "a/b" -> "a/b/", "/" or "" -> "" (the repository root); ConfigError for a prefix that climbs out."""
    stripped = check_prefix(prefix).strip("/")
    return f"{stripped}/" if stripped else ""


def content_checksum(files: Mapping[str, str]) -> str:
    """sha256 over the sorted "<relative path>\\t<sha256>\\n" lines: one fingerprint of a dataset."""
    digest = hashlib.sha256()
    for key in sorted(files):
        digest.update(f"{key}\t{files[key]}\n".encode())
    return digest.hexdigest()


def scan_dir(local_dir: Path) -> list[LocalFile]:
    """Every regular file under `local_dir`, sorted by relative path."""
    if not local_dir.is_dir():
        raise ConfigError(f"{str(local_dir)!r} is not a directory; give the folder that holds the dataset")
    found: list[LocalFile] = []
    for root, dirs, names in os.walk(local_dir):
        dirs.sort()
        for name in names:
            path = Path(root) / name
            if path.is_file():
                key = path.relative_to(local_dir).as_posix()
                found.append(LocalFile(path, key, path.stat().st_size))
    return sorted(found, key=lambda f: f.key)


def hash_file(path: Path) -> tuple[str, str]:
    """(md5, sha256) of a file in one pass: MD5 is what lakeFS reports, sha256 what we record."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def put_dataset(
    client: LakeFSClient,
    repo: str,
    branch: str,
    local_dir: Path,
    prefix: str,
    metadata: Mapping[str, object] | None = None,
    progress: ProgressFn | None = None,
    *,
    name: str | None = None,
    message: str | None = None,
    workers: int = MAX_WORKERS,
    if_changed: bool = False,
) -> DatasetCommit:
    """Make `prefix` on `branch` hold exactly the files of `local_dir`, verified, as one commit.

    Files already there with the same MD5 are not sent again; objects under the prefix that
    the folder no longer has are removed. Uncommitted changes under `prefix` (what an interrupted
    put of the same prefix staged) are taken over: the put makes the prefix exact anyway, so the
    commit holds the folder's files whatever was staged; changes elsewhere on the branch are
    refused, since the commit would take them along. The commit is made even when nothing changed, so
    every put leaves a commit whose metadata describes the dataset — unless `if_changed`, when
    a put that changes nothing and finds the branch's head already describing this exact
    content returns that head commit instead (so re-running a setup script is a no-op).
    """
    extra = dict(metadata or {})
    prefix = normalize_prefix(prefix)
    files, resumed = _files_to_put(client, repo, branch, local_dir, prefix, extra, name)
    existing = {o.path: o for o in client.list_objects(repo, branch, prefix)}

    def put_one(local: LocalFile) -> tuple[str, bool]:
        md5, sha = hash_file(local.path)
        old = existing.get(prefix + local.key)
        if old is not None and old.checksum == md5 and old.metadata.get(SHA256_META) == sha:
            return sha, False
        with open(local.path, "rb") as fh:
            client.upload_object(repo, branch, prefix + local.key, fh, md5_hex=md5, metadata={SHA256_META: sha})
        return sha, True

    done = _in_parallel(files, put_one, workers, progress, lambda f: (f.key, f.size_bytes))
    hashes = {f.key: sha for f, (sha, _) in done}
    uploaded = sum(sent for _, (_, sent) in done)
    stale = sorted(set(existing) - {prefix + f.key for f in files})
    deleted = client.delete_objects(repo, branch, stale) if stale else 0
    dataset = name or PurePosixPath(prefix).name or local_dir.resolve().name
    total_bytes = sum(f.size_bytes for f in files)
    checksum = content_checksum(hashes)
    described = {"dataset": dataset, "prefix": prefix, "object_count": len(files), "total_bytes": total_bytes}
    commit = _commit(
        client,
        repo,
        branch,
        {**extra, **described, "content_sha256": checksum},
        message or f"Put dataset {dataset!r}: {len(files)} files, {total_bytes} bytes",
        reuse_head=if_changed and uploaded == 0 and deleted == 0 and resumed == 0,
    )
    return DatasetCommit(commit, dataset, prefix, len(files), total_bytes, checksum, uploaded, deleted, hashes, resumed)


def _files_to_put(
    client: LakeFSClient,
    repo: str,
    branch: str,
    local_dir: Path,
    prefix: str,
    extra: Mapping[str, object],
    name: str | None,
) -> tuple[list[LocalFile], int]:
    """The folder's files and how many uncommitted changes under `prefix` the put takes over.

    Raised before anything is written: bad metadata or name, an empty folder, and uncommitted
    changes outside `prefix` (a commit of the dataset must hold only the dataset).
    """
    clash = sorted(set(extra) & set(RESERVED_METADATA))
    if clash:
        raise ConfigError(f"metadata key(s) {clash} are set by robolake itself; rename them")
    if name is not None:
        check_dataset_name(name)
    files = scan_dir(local_dir)
    if not files:
        raise ConfigError(f"{str(local_dir)!r} holds no files; nothing to put")
    resumed = 0
    for change in client.uncommitted(repo, branch):
        if not change.path.startswith(prefix):
            raise BadRequestError(
                f"branch {branch!r} of {repo!r} has uncommitted changes outside {prefix or '/'!r} (e.g. "
                f"{change.path!r}); a dataset commit must hold only the dataset. Commit or reset them first "
                "(`lakectl branch reset`), or put into a new branch"
            )
        resumed += 1
    return files, resumed


def _commit(
    client: LakeFSClient, repo: str, branch: str, metadata: Mapping[str, object], message: str, *, reuse_head: bool
) -> Commit:
    """Commit the dataset; with `reuse_head`, return the head instead when it describes this same content."""
    if reuse_head:
        head = client.get_commit(repo, branch)
        if all(head.metadata.get(key) == str(metadata[key]) for key in ("content_sha256", "prefix")):
            return head
    return client.commit(repo, branch, message, metadata, allow_empty=True)


def read_dataset(
    client: LakeFSClient,
    repo: str,
    ref: str,
    prefix: str,
    dest_dir: Path,
    *,
    workers: int = MAX_WORKERS,
    progress: ProgressFn | None = None,
) -> dict[str, str]:
    """Download every object under `prefix` at `ref` into `dest_dir`; return {relative path: sha256}.

    The ref is resolved to a commit first, so a branch that moves meanwhile cannot mix two
    versions. Each file is checked against the sha256 recorded at upload, when there is one.
    """
    prefix = normalize_prefix(prefix)
    commit_id = client.get_commit(repo, ref).id
    objects = [o for o in client.list_objects(repo, commit_id, prefix) if o.path != prefix]
    if not objects:
        raise RobolakeError(f"nothing under {prefix or '/'!r} at {ref!r} in {repo!r}; check the ref and the prefix")
    root = dest_dir.resolve()

    def get_one(obj: ObjectStat) -> str:
        key = obj.path[len(prefix) :]
        target = (root / key).resolve()
        if not target.is_relative_to(root) or key.endswith("/"):
            raise IntegrityError(
                f"object {obj.path!r} at {ref!r} cannot be stored under {str(root)!r}; skip it "
                "by reading a narrower prefix"
            )
        sha, size = client.download_object(repo, commit_id, obj.path, target)
        want = obj.metadata.get(SHA256_META)
        if size != obj.size_bytes or (want is not None and want != sha):
            raise IntegrityError(
                f"{obj.path!r} at {ref!r} ({commit_id[:12]}): read {size} bytes with sha256 {sha}, lakeFS "
                f"recorded {obj.size_bytes} bytes"
                + (f" with sha256 {want}" if want else "")
                + "; the stored object is damaged or was replaced behind lakeFS. Read it again, then report it"
            )
        return sha

    done = _in_parallel(objects, get_one, workers, progress, lambda o: (o.path, o.size_bytes))
    return dict(sorted((obj.path[len(prefix) :], sha) for obj, sha in done))


def _in_parallel(
    items: Sequence[T],
    work: Callable[[T], R],
    workers: int,
    progress: ProgressFn | None,
    describe: Callable[[T], tuple[str, int]],
) -> list[tuple[T, R]]:
    """`work` on every item in a thread pool, progress after each (`describe`: path and size).

    The first failure cancels what has not started and waits for what has, then is raised.
    """
    total_bytes = sum(describe(item)[1] for item in items)
    results: list[tuple[T, R]] = []
    done_bytes = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, MAX_WORKERS))) as pool:
        futures = {pool.submit(work, item): item for item in items}
        try:
            for future in concurrent.futures.as_completed(futures):
                item = futures[future]
                results.append((item, future.result()))
                path, size = describe(item)
                done_bytes += size
                if progress is not None:
                    progress(TransferProgress(len(results), len(items), done_bytes, total_bytes, path=path))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return results


@dataclasses.dataclass(frozen=True)
class EpisodeChanges:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    conflict: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class DiffSummary:
    """A diff grouped by episode (`episode_00012` anywhere in the path); the rest under `other`."""

    episodes: dict[str, EpisodeChanges]  # "episode_00012" -> changes, in episode order
    other: EpisodeChanges
    counts: dict[str, int]  # change type -> number of paths

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "episodes": {name: c.as_dict() for name, c in self.episodes.items()},
            "other": self.other.as_dict(),
        }


def diff_summary(entries: Iterable[DiffEntry]) -> DiffSummary:
    """Group diff entries by the episode their path names; count each kind of change."""
    groups: dict[str, dict[str, list[str]]] = {}
    other: dict[str, list[str]] = {}
    counts = {"added": 0, "removed": 0, "changed": 0, "conflict": 0}
    for entry in entries:
        kind = entry.type if entry.type in counts else "changed"  # prefix_changed: a changed folder
        counts[kind] += 1
        token = episode_token(entry.path)
        bucket = groups.setdefault(token, {}) if token else other
        bucket.setdefault(kind, []).append(entry.path)

    def freeze(bucket: Mapping[str, list[str]]) -> EpisodeChanges:
        return EpisodeChanges(**{k: tuple(sorted(v)) for k, v in bucket.items()})

    ordered = sorted(groups, key=lambda name: (int(name.split("_", 1)[1]), name))
    return DiffSummary({name: freeze(groups[name]) for name in ordered}, freeze(other), counts)
