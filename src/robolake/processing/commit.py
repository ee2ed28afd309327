"""A job's outputs committed to a branch as ONE commit, or not at all.

The outputs are uploaded to a work branch, ``robolake-process-<job key>``, made from the target's
head; committed there; then squash-merged into the target (lakeFS's ``squash_merge``: the merge
commit's only parent is the target's previous head, so the target gains exactly one commit, with
the job's message and metadata). The target is touched once, by the merge, which lakeFS makes
atomically: a job killed at any point before leaves the target as it was, with no uncommitted
object on it. The work branch is deleted afterwards; one left behind by a killed job (same job
key) is deleted when the job runs again. Staging outside lakeFS (the tasks' results in
``umi-processed``) plus a work branch means no partial result is ever visible on the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from robolake.ml.lerobot_export import require_clean_branch
from robolake.storage.layout import content_type_for
from robolake.versioning import LakeFSClient, NotFoundError
from robolake.versioning.dataset import hash_file

WORK_BRANCH_PREFIX = "robolake-process-"
JOB_KEY_META = "job_key"  # in the commit's metadata
JOB_KEY_OBJECT_META = "job-key"  # in each output object's user metadata (a header name)


@dataclasses.dataclass(frozen=True)
class Committed:
    commit_id: str
    branch: str
    paths: tuple[str, ...]
    up_to_date: bool  # the branch already held these outputs of this job: nothing was committed


def work_branch(job_key: str) -> str:
    return f"{WORK_BRANCH_PREFIX}{job_key[:20]}"


def already_committed(client: LakeFSClient, repo: str, branch: str, paths: Mapping[str, str]) -> bool:
    """True when every output path on `branch` carries this job key (`paths`: lake path -> job key)."""
    for path, key in paths.items():
        try:
            stat = client.stat_object(repo, branch, path)
        except NotFoundError:
            return False
        if stat.metadata.get(JOB_KEY_OBJECT_META) != key:
            return False
    return True


def commit_outputs(
    client: LakeFSClient,
    repo: str,
    branch: str,
    files: Mapping[str, Path],
    *,
    job_key: str,
    message: str,
    metadata: Mapping[str, object],
    remove: Iterable[str] = (),
) -> Committed:
    """Put `files` (lake path -> local file) on `branch` as one squash-merged commit; `remove`: paths deleted in it."""
    require_clean_branch(client, repo, branch, "processing")
    if already_committed(client, repo, branch, dict.fromkeys(files, job_key)):
        head = client.get_commit(repo, branch)
        return Committed(head.id, branch, tuple(files), up_to_date=True)
    work = work_branch(job_key)
    with contextlib.suppress(NotFoundError):
        client.delete_branch(repo, work)  # what a killed run of this same job left
    client.create_branch(repo, work, client.get_commit(repo, branch).id)
    try:
        for path, local in files.items():
            md5, sha = hash_file(local)
            with open(local, "rb") as fh:
                client.upload_object(
                    repo,
                    work,
                    path,
                    fh,
                    md5_hex=md5,
                    metadata={"sha256": sha, JOB_KEY_OBJECT_META: job_key},
                    content_type=content_type_for(path),
                )
        stale = [p for p in remove if p not in files]
        if stale:
            client.delete_objects(repo, work, stale)  # what an older output had and this one has not
        meta = {**metadata, JOB_KEY_META: job_key}
        client.commit(repo, work, message, meta)
        commit_id = client.merge(repo, work, branch, message=message, metadata=meta, squash=True)
    finally:
        with contextlib.suppress(NotFoundError):
            client.delete_branch(repo, work)
    return Committed(commit_id, branch, tuple(files), up_to_date=False)
