"""What a job reads: a ref resolved once, the raw episodes under a dataset path, and their bytes.

Raw episodes are the generator's (and ingest's) per-episode files, under a dataset path in the
repository::

    <dataset>/pose/episode_XXXXX.json      timestamps, eef_position_m, eef_rot_axis_angle, ...
    <dataset>/gripper/episode_XXXXX.json   width_m, ...
    <dataset>/video/episode_XXXXX.mp4      the gripper camera's video

An episode is processed when all three files are there; an index with only some of them is an
error naming the missing file (a half-uploaded episode must not silently vanish from a buffer).

Every object is identified by its content, not its path: ``sha256`` user metadata (what
``robolake version put`` records) or else lakeFS's checksum with the size. Staged results are
keyed by these identities and the job's parameters, so an episode unchanged between two commits
is not processed twice. Tasks read an object at its physical address (a commit's addresses, and
the bytes under them, never change) through the accelerator, as robolake.ml does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robolake.errors import ConfigError, IntegrityError
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.s3 import S3Target
from robolake.umi.errors import DatasetFormatError
from robolake.umi.naming import split_episode_file
from robolake.versioning import LakeFSClient, NotFoundError, ObjectStat
from robolake.versioning.dataset import normalize_prefix

SENSOR_FILES = {"pose": "json", "gripper": "json", "video": "mp4"}
_BRANCH_RE = re.compile(r"^\w[-\w]*$")


@dataclasses.dataclass(frozen=True)
class InputObject:
    """One object of the source commit: where it is in the repository and in the blockstore."""

    path: str
    physical_address: str
    size_bytes: int
    identity: str  # "sha256:<hex>" or "lakefs:<checksum>:<size>"
    sha256: str | None

    @classmethod
    def from_stat(cls, stat: ObjectStat) -> InputObject:
        sha = stat.metadata.get("sha256")
        identity = f"sha256:{sha}" if sha else f"lakefs:{stat.checksum}:{stat.size_bytes}"
        return cls(stat.path, stat.physical_address, stat.size_bytes, identity, sha)


@dataclasses.dataclass(frozen=True)
class RawEpisode:
    index: int
    pose: InputObject
    gripper: InputObject
    video: InputObject

    @property
    def identity(self) -> str:
        """One fingerprint of the episode's three files."""
        text = "\n".join(o.identity for o in (self.pose, self.gripper, self.video))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Source:
    """A ref resolved once: every read of the job happens at `commit_id`."""

    repo: str
    ref: str
    commit_id: str

    @property
    def where(self) -> str:
        return f"lakefs://{self.repo}/{self.commit_id[:12]}"


def resolve_source(client: LakeFSClient, repo: str, ref: str) -> Source:
    """The commit `ref` names; NotFoundError naming the ref (or the repository) otherwise."""
    try:
        commit = client.get_commit(repo, ref)
    except NotFoundError as exc:
        if exc.kind == "repository":
            raise
        raise NotFoundError(
            f"ref {ref!r} is not a branch, tag or commit of repository {repo!r}; check its name "
            "(`robolake version branch list`, `robolake version tag list`)",
            status=404,
        ) from exc
    return Source(repo, ref, commit.id)


def target_branch(client: LakeFSClient, repo: str, ref: str, to_branch: str | None) -> str:
    """The branch a job commits to: `to_branch`, else `ref` when it is a branch."""
    if to_branch is not None:
        if not _BRANCH_RE.match(to_branch):
            raise ConfigError(f"--to-branch {to_branch!r} is not a lakeFS branch name (letters, digits, '-', '_')")
        client.get_branch(repo, to_branch)  # NotFoundError names the branch
        return to_branch
    if _BRANCH_RE.match(ref):
        try:
            client.get_branch(repo, ref)
            return ref
        except NotFoundError:
            pass
    raise ConfigError(f"ref {ref!r} is not a branch of {repo!r}; give --to-branch BRANCH to say where to commit")


def list_raw_episodes(client: LakeFSClient, source: Source, dataset: str) -> list[RawEpisode]:
    """The complete raw episodes under `dataset` at the source commit, in index order."""
    prefix = normalize_prefix(dataset)
    found: dict[int, dict[str, ObjectStat]] = {}
    for stat in client.list_objects(source.repo, source.commit_id, prefix):
        parts = stat.path[len(prefix) :].split("/")
        if len(parts) != 2 or parts[0] not in SENSOR_FILES:
            continue
        named = split_episode_file(parts[1])
        if named is None or named[1] != SENSOR_FILES[parts[0]]:
            continue
        found.setdefault(named[0], {})[parts[0]] = stat
    at = f"at {source.where} (ref {source.ref!r})"
    if not found:
        raise NotFoundError(
            f"dataset path {dataset!r} holds no raw episodes {at}: expected pose/, gripper/ and video/ "
            "episode_XXXXX files under it (as `robolake generate` writes them); check the path",
            status=404,
        )
    episodes = []
    for index in sorted(found):
        files = found[index]
        missing = [f"{s}/episode_{index:05d}.{e}" for s, e in SENSOR_FILES.items() if s not in files]
        if missing:
            raise DatasetFormatError(
                f"lakefs://{source.repo}/{source.commit_id[:12]}/{prefix}",
                f"episode {index} lacks {', '.join(missing)}",
                "upload the episode's three files, or remove the rest of it",
            )
        episodes.append(RawEpisode(index, *(InputObject.from_stat(files[s]) for s in SENSOR_FILES)))
    return episodes


def params_hash(params: Mapping[str, Any]) -> str:
    """A short, stable fingerprint of a job's parameters."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _split_address(obj: InputObject) -> tuple[str, str]:
    bucket, _, key = obj.physical_address.removeprefix("s3://").partition("/")
    if not obj.physical_address.startswith("s3://") or not key:
        raise ConfigError(f"{obj.path!r} is stored at {obj.physical_address!r}, not an s3:// address")
    return bucket, key


def read_input(target: S3Target, obj: InputObject, dest: Path | None = None) -> bytes:
    """The object's bytes (or, with `dest`, written to that file and b""), checked against its sha256."""
    bucket, key = _split_address(obj)
    client = boto3_client(target, max_pool_connections=2, read_timeout_s=300.0)
    digest = hashlib.sha256()
    size = 0
    chunks: list[bytes] = []
    with boto_errors("GET", bucket, key, target, hint=f"the job reads {obj.path!r} there"):
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        out = open(dest, "wb") if dest is not None else None  # noqa: SIM115 - closed below
        try:
            while block := body.read(1 << 20):
                digest.update(block)
                size += len(block)
                if out is not None:
                    out.write(block)
                else:
                    chunks.append(block)
        finally:
            if out is not None:
                out.close()
    if size != obj.size_bytes or (obj.sha256 and digest.hexdigest() != obj.sha256):
        raise IntegrityError(
            f"{obj.path!r}: read {size} bytes with sha256 {digest.hexdigest()}, lakeFS recorded "
            f"{obj.size_bytes} bytes" + (f" with sha256 {obj.sha256}" if obj.sha256 else "") + "; read it again"
        )
    return b"".join(chunks)
