"""A typed client of the lakeFS REST API (v1), for the calls robolake's versioning needs.

    LakeFSTransport   transport.py   sessions, one request, pagination, naming what a 404 missed
    └── ObjectCalls   objects.py     objects (upload verified against lakeFS's MD5), zero-copy import
        └── LakeFSClient  here       repositories, branches, tags, commits with metadata, log,
                                     diff, merge (a conflict names its paths), revert, hook runs

Every request runs inside `errors.translate_errors`: callers only ever see robolake errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from robolake.versioning.errors import Call, ConflictError, conflict
from robolake.versioning.models import (
    Commit,
    DiffEntry,
    HookRun,
    ImportStatus,
    MergeBase,
    Metadata,
    ObjectStat,
    Ref,
    Repository,
    str_map,
)
from robolake.versioning.objects import ObjectCalls
from robolake.versioning.transport import PAGE_SIZE, q

__all__ = [
    "Commit",
    "DiffEntry",
    "HookRun",
    "ImportStatus",
    "LakeFSClient",
    "MergeBase",
    "ObjectStat",
    "Ref",
    "Repository",
]


class LakeFSClient(ObjectCalls):
    """Calls of the lakeFS API at `endpoint` (e.g. http://127.0.0.1:8000) with one key pair."""

    # ---- repositories and branches -------------------------------------------------------

    def list_repositories(self) -> Iterator[Repository]:
        for raw in self._pages("/repositories", Call("list repositories")):
            yield Repository.from_json(raw)

    def get_repository(self, repo: str) -> Repository:
        call = Call(f"read repository {repo!r}", repo)
        return Repository.from_json(self._request("GET", f"/repositories/{q(repo)}", call).json())

    def create_branch(self, repo: str, name: str, source: str) -> Ref:
        call = Call(f"create branch {name!r} from {source!r}", repo, (("ref", source),))
        self._request("POST", f"/repositories/{q(repo)}/branches", call, json={"name": name, "source": source})
        return self.get_branch(repo, name)

    def get_branch(self, repo: str, name: str) -> Ref:
        call = Call(f"read branch {name!r}", repo, (("branch", name),))
        return Ref.from_json(self._request("GET", f"/repositories/{q(repo)}/branches/{q(name)}", call).json())

    def list_branches(self, repo: str, prefix: str = "") -> Iterator[Ref]:
        return self._refs(repo, "branches", prefix)

    def delete_branch(self, repo: str, name: str) -> None:
        call = Call(f"delete branch {name!r}", repo, (("branch", name),))
        self._request("DELETE", f"/repositories/{q(repo)}/branches/{q(name)}", call)

    # ---- tags ----------------------------------------------------------------------------

    def create_tag(self, repo: str, tag: str, ref: str) -> Ref:
        call = Call(f"create tag {tag!r} at {ref!r}", repo, (("ref", ref),))
        response = self._request("POST", f"/repositories/{q(repo)}/tags", call, json={"id": tag, "ref": ref})
        return Ref.from_json(response.json())

    def list_tags(self, repo: str, prefix: str = "") -> Iterator[Ref]:
        return self._refs(repo, "tags", prefix)

    def _refs(self, repo: str, kind: str, prefix: str) -> Iterator[Ref]:
        """The branches or the tags (`kind`) of `repo` whose names start with `prefix`."""
        pages = self._pages(
            f"/repositories/{q(repo)}/{kind}", Call(f"list {kind}", repo), {"prefix": prefix} if prefix else None
        )
        return (Ref.from_json(raw) for raw in pages)

    def delete_tag(self, repo: str, tag: str) -> None:
        call = Call(f"delete tag {tag!r}", repo, (("tag", tag),))
        self._request("DELETE", f"/repositories/{q(repo)}/tags/{q(tag)}", call)

    # ---- commits -------------------------------------------------------------------------

    def commit(
        self, repo: str, branch: str, message: str, metadata: Metadata | None = None, *, allow_empty: bool = False
    ) -> Commit:
        """Commit what is staged on `branch`; metadata values are stored as strings."""
        call = Call(f"commit to branch {branch!r}", repo, (("branch", branch),))
        body = {"message": message, "metadata": str_map(metadata), "allow_empty": allow_empty}
        response = self._request(
            "POST",
            f"/repositories/{q(repo)}/branches/{q(branch)}/commits",
            call,
            json=body,
            timeout_s=self.long_timeout_s,
        )
        return Commit.from_json(response.json())

    def get_commit(self, repo: str, ref: str) -> Commit:
        """The commit any ref (branch, tag, commit id, `main~1`) points at."""
        call = Call(f"resolve ref {ref!r}", repo, (("ref", ref),))
        return Commit.from_json(self._request("GET", f"/repositories/{q(repo)}/commits/{q(ref)}", call).json())

    def log(self, repo: str, ref: str, *, limit: int | None = None, prefix: str = "") -> Iterator[Commit]:
        """Commits reachable from `ref`, newest first (with their metadata); optionally touching `prefix`."""
        call = Call(f"read the log of {ref!r}", repo, (("ref", ref),))
        params: dict[str, Any] = {"prefixes": [prefix]} if prefix else {}
        amount = min(limit, PAGE_SIZE) if limit else PAGE_SIZE
        for n, raw in enumerate(self._pages(f"/repositories/{q(repo)}/refs/{q(ref)}/commits", call, params, amount)):
            if limit is not None and n >= limit:
                return
            yield Commit.from_json(raw)

    def revert(self, repo: str, branch: str, ref: str, *, parent_number: int = 0) -> Commit:
        """Commit on `branch` the inverse of commit `ref`; for a merge commit pick the parent (1 or 2)."""
        call = Call(
            f"revert {ref!r} on branch {branch!r}",
            repo,
            (("branch", branch), ("ref", ref)),
            hints=(
                (
                    409,
                    "a merge commit needs parent_number 1 (the branch merged into) or 2; otherwise a later "
                    "commit changed the same paths: revert that one first",
                ),
            ),
        )
        body = {"ref": ref, "parent_number": parent_number}
        self._request(
            "POST",
            f"/repositories/{q(repo)}/branches/{q(branch)}/revert",
            call,
            json=body,
            timeout_s=self.long_timeout_s,
        )
        return self.get_commit(repo, branch)

    # ---- diff and merge ------------------------------------------------------------------

    def diff(self, repo: str, left: str, right: str, *, prefix: str = "", two_dot: bool = False) -> Iterator[DiffEntry]:
        """What `right` changed relative to `left`: since their merge base (three-dot, lakeFS's
        default, as a merge of right into left would apply it), or plainly between them (two-dot)."""
        call = Call(f"diff {left!r} and {right!r}", repo, (("ref", left), ("ref", right)))
        params = {"type": "two_dot" if two_dot else "three_dot", **({"prefix": prefix} if prefix else {})}
        for raw in self._pages(f"/repositories/{q(repo)}/refs/{q(left)}/diff/{q(right)}", call, params):
            yield DiffEntry.from_json(raw)

    def uncommitted(self, repo: str, branch: str, *, prefix: str = "") -> Iterator[DiffEntry]:
        """Changes staged on `branch` and not committed yet."""
        call = Call(f"list uncommitted changes of branch {branch!r}", repo, (("branch", branch),))
        params = {"prefix": prefix} if prefix else None
        for raw in self._pages(f"/repositories/{q(repo)}/branches/{q(branch)}/diff", call, params):
            yield DiffEntry.from_json(raw)

    def merge_base(self, repo: str, source: str, dest: str) -> MergeBase:
        call = Call(f"find the merge base of {source!r} and {dest!r}", repo, (("ref", source), ("ref", dest)))
        raw = self._request("GET", f"/repositories/{q(repo)}/refs/{q(source)}/merge/{q(dest)}", call).json()
        return MergeBase(raw["source_commit_id"], raw["destination_commit_id"], raw["base_commit_id"])

    def merge(
        self,
        repo: str,
        source: str,
        dest: str,
        *,
        message: str = "",
        metadata: Metadata | None = None,
        strategy: str | None = None,
        squash: bool = False,
    ) -> str:
        """Merge ref `source` into branch `dest`; return the merge commit id.

        With `squash`, the merge commit has `dest` as its only parent (lakeFS's ``squash_merge``):
        `dest` gains exactly one commit. Raises ConflictError with `.paths` when both sides changed
        the same paths.
        """
        call = Call(f"merge {source!r} into {dest!r}", repo, (("ref", source), ("branch", dest)))
        body: dict[str, Any] = {"message": message or f"Merge {source!r} into {dest!r}", "metadata": str_map(metadata)}
        if strategy:
            body["strategy"] = strategy
        if squash:
            body["squash_merge"] = True
        try:
            response = self._request(
                "POST",
                f"/repositories/{q(repo)}/refs/{q(source)}/merge/{q(dest)}",
                call,
                json=body,
                timeout_s=self.long_timeout_s,
            )
        except ConflictError as exc:
            # The merge answer says only "conflict found"; the paths come from a second query.
            raise conflict(call, self.conflicts(repo, source, dest)) from exc
        return str(response.json()["reference"])

    def conflicts(self, repo: str, source: str, dest: str) -> list[str]:
        """Paths a merge of `source` into `dest` cannot reconcile."""
        # lakeFS's three-dot diff runs the merge's own comparison and marks conflicts "conflict".
        found = [d.path for d in self.diff(repo, dest, source) if d.type == "conflict"]
        if found:
            return found
        # Otherwise: paths changed on both sides since the merge base.
        base = self.merge_base(repo, source, dest).base_commit_id
        theirs = {d.path for d in self.diff(repo, base, dest, two_dot=True)}
        return sorted(d.path for d in self.diff(repo, base, source, two_dot=True) if d.path in theirs)

    # ---- actions: what the hooks of a run said ------------------------------------------

    def hook_runs(self, repo: str, run_id: str) -> Iterator[HookRun]:
        """The hooks lakeFS ran in actions run `run_id` (one commit's or merge's), in order."""
        call = Call(f"list the hooks of run {run_id!r}", repo)
        for raw in self._pages(f"/repositories/{q(repo)}/actions/runs/{q(run_id)}/hooks", call):
            yield HookRun.from_json(raw)

    def hook_run_output(self, repo: str, run_id: str, hook_run_id: str) -> str:
        """The log lakeFS kept of one hook run (for a webhook: the request and the answer)."""
        call = Call(f"read the output of hook run {hook_run_id!r}", repo)
        where = f"/repositories/{q(repo)}/actions/runs/{q(run_id)}/hooks/{q(hook_run_id)}/output"
        return self._request("GET", where, call).text
