"""A typed client of the lakeFS REST API (v1), for the calls robolake's versioning needs.

Repositories, branches, tags, objects (upload verified against lakeFS's MD5), commits with
metadata, log, diff, merge (a conflict names its paths), revert and zero-copy import.

One `requests.Session` per thread, because a Session is not thread-safe and the dataset
functions upload with a thread pool; all of them use the same key pair (HTTP basic auth).
Every request runs inside `errors.translate_errors`: callers only ever see robolake errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.keys import check_bucket, check_prefix
from robolake.state import StateDir
from robolake.versioning.errors import (
    Call,
    ConflictError,
    ImportFailedError,
    IntegrityError,
    Kind,
    LakeFSError,
    conflict,
    translate_errors,
)

PAGE_SIZE = 1000  # the largest `amount` lakeFS accepts
_q = functools.partial(quote, safe="")  # names in URL paths: "a/b" must stay one segment


@dataclasses.dataclass(frozen=True)
class Repository:
    id: str
    default_branch: str
    storage_namespace: str
    creation_date: int

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Repository:
        return cls(raw["id"], raw["default_branch"], raw["storage_namespace"], int(raw["creation_date"]))


@dataclasses.dataclass(frozen=True)
class Ref:
    """A branch or tag and the commit it points at."""

    id: str
    commit_id: str

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Ref:
        return cls(raw["id"], raw["commit_id"])


@dataclasses.dataclass(frozen=True)
class Commit:
    id: str
    message: str
    committer: str
    creation_date: int  # Unix seconds
    parents: tuple[str, ...]
    metadata: dict[str, str]
    meta_range_id: str = ""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Commit:
        return cls(
            raw["id"], raw.get("message", ""), raw.get("committer", ""), int(raw.get("creation_date", 0)),
            tuple(raw.get("parents") or ()), dict(raw.get("metadata") or {}), raw.get("meta_range_id", ""),
        )


@dataclasses.dataclass(frozen=True)
class ObjectStat:
    path: str
    checksum: str  # MD5 hex for objects uploaded through the API; the S3 ETag for imported ones
    size_bytes: int
    mtime: int
    physical_address: str
    content_type: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ObjectStat:
        return cls(
            raw["path"], raw.get("checksum", ""), int(raw.get("size_bytes") or 0), int(raw.get("mtime", 0)),
            raw.get("physical_address", ""), raw.get("content_type") or "", dict(raw.get("metadata") or {}),
        )


@dataclasses.dataclass(frozen=True)
class DiffEntry:
    type: str  # added | removed | changed | conflict | prefix_changed
    path: str
    path_type: str = "object"
    size_bytes: int | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DiffEntry:
        return cls(raw["type"], raw["path"], raw.get("path_type", "object"), raw.get("size_bytes"))


@dataclasses.dataclass(frozen=True)
class MergeBase:
    source_commit_id: str
    destination_commit_id: str
    base_commit_id: str


@dataclasses.dataclass(frozen=True)
class ImportStatus:
    id: str
    completed: bool
    ingested_objects: int
    commit: Commit | None
    error: str

    @classmethod
    def from_json(cls, import_id: str, raw: Mapping[str, Any]) -> ImportStatus:
        commit = Commit.from_json(raw["commit"]) if raw.get("commit") else None
        error = (raw.get("error") or {}).get("message", "")
        return cls(import_id, bool(raw.get("completed")), int(raw.get("ingested_objects") or 0), commit, error)


class LakeFSClient:
    """Calls of the lakeFS API at `endpoint` (e.g. http://127.0.0.1:8000) with one key pair."""

    def __init__(
        self, endpoint: str, access_key_id: str, secret_access_key: str, *,
        timeout_s: float = 60.0, long_timeout_s: float = 1800.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self.timeout_s = timeout_s
        # Commits, merges and reverts write metaranges; on large branches that takes minutes.
        self.long_timeout_s = long_timeout_s
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LakeFSClient(endpoint={self.endpoint!r}, access_key_id={self.access_key_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> LakeFSClient:
        """A client for the stack `settings` describe; keys from the environment, else the state dir."""
        env = os.environ if environ is None else environ
        key = env.get("ROBOLAKE_LAKEFS_ACCESS_KEY_ID", "")
        secret = env.get("ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY", "")
        if bool(key) != bool(secret):
            raise ConfigError(
                "only one of ROBOLAKE_LAKEFS_ACCESS_KEY_ID and ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY is set; "
                "set both (the lakeFS key pair), or neither to use the local stack's keys"
            )
        if not key:
            state = StateDir(settings.state_dir)
            creds = state.load_credentials()  # never create keys here: a client must not invent them
            if creds is None:
                raise ConfigError(
                    f"no lakeFS keys: {str(state.credentials_path)!r} does not exist; start the stack "
                    "(`robolake stack up`), point ROBOLAKE_STATE_DIR at its state directory, or set "
                    "ROBOLAKE_LAKEFS_ACCESS_KEY_ID and ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY"
                )
            key, secret = creds.lakefs_access_key_id, creds.lakefs_secret_access_key
        return cls(settings.lakefs_endpoint, key, secret)

    # ---- plumbing ------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = (self.access_key_id, self._secret_access_key)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close the sessions of every thread that used this client."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def __enter__(self) -> LakeFSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, call: Call, *, params: Mapping[str, Any] | None = None,
        json: Any = None, data: bytes | IO[bytes] | None = None, headers: Mapping[str, str] | None = None,
        stream: bool = False, timeout_s: float | None = None,
    ) -> requests.Response:
        timeout = timeout_s or self.timeout_s
        with translate_errors(self.endpoint, call, self.access_key_id, self._locate):
            response = self._session().request(
                method, f"{self.endpoint}/api/v1{path}", params=params, json=json, data=data,
                headers=headers, stream=stream, timeout=(min(5.0, timeout), timeout),
            )
            response.raise_for_status()
        return response

    def _locate(self, call: Call) -> tuple[Kind, str] | None:
        """After a 404: probe the repository, then each ref, to name the part that is missing."""
        repo = f"/repositories/{_q(call.repo)}"
        probes: list[tuple[Kind, str, str]] = [("repository", call.repo, repo)] if call.repo else []
        for kind, name in call.refs:
            # GET commits/{ref} dereferences any ref: branch, tag, commit id, or `main~1`.
            where = {"branch": "branches", "tag": "tags"}.get(kind, "commits")
            probes.append((kind, name, f"{repo}/{where}/{_q(name)}"))
        for kind, name, path in probes:
            try:
                status = self._session().get(f"{self.endpoint}/api/v1{path}", timeout=(5.0, self.timeout_s)).status_code
            except requests.RequestException:
                return None
            if status == 404:
                return kind, name
            if status >= 300:
                return None
        return ("path", call.path) if call.path else None

    def _pages(self, path: str, call: Call, params: Mapping[str, Any] | None = None,
               amount: int = PAGE_SIZE) -> Iterator[Any]:
        """Every result of a paginated listing, following `pagination.next_offset`."""
        query = {**(params or {}), "amount": amount}
        while True:
            body = self._request("GET", path, call, params=query).json()
            yield from body.get("results", [])
            page = body.get("pagination") or {}
            if not page.get("has_more") or not page.get("next_offset"):
                return
            query["after"] = page["next_offset"]

    # ---- repositories and branches -------------------------------------------------------

    def list_repositories(self) -> Iterator[Repository]:
        for raw in self._pages("/repositories", Call("list repositories")):
            yield Repository.from_json(raw)

    def get_repository(self, repo: str) -> Repository:
        call = Call(f"read repository {repo!r}", repo)
        return Repository.from_json(self._request("GET", f"/repositories/{_q(repo)}", call).json())

    def create_branch(self, repo: str, name: str, source: str) -> Ref:
        call = Call(f"create branch {name!r} from {source!r}", repo, (("ref", source),))
        self._request("POST", f"/repositories/{_q(repo)}/branches", call, json={"name": name, "source": source})
        return self.get_branch(repo, name)

    def get_branch(self, repo: str, name: str) -> Ref:
        call = Call(f"read branch {name!r}", repo, (("branch", name),))
        return Ref.from_json(self._request("GET", f"/repositories/{_q(repo)}/branches/{_q(name)}", call).json())

    def list_branches(self, repo: str, prefix: str = "") -> Iterator[Ref]:
        call = Call("list branches", repo)
        for raw in self._pages(f"/repositories/{_q(repo)}/branches", call, {"prefix": prefix} if prefix else None):
            yield Ref.from_json(raw)

    def delete_branch(self, repo: str, name: str) -> None:
        call = Call(f"delete branch {name!r}", repo, (("branch", name),))
        self._request("DELETE", f"/repositories/{_q(repo)}/branches/{_q(name)}", call)

    # ---- tags ----------------------------------------------------------------------------

    def create_tag(self, repo: str, tag: str, ref: str) -> Ref:
        call = Call(f"create tag {tag!r} at {ref!r}", repo, (("ref", ref),))
        response = self._request("POST", f"/repositories/{_q(repo)}/tags", call, json={"id": tag, "ref": ref})
        return Ref.from_json(response.json())

    def list_tags(self, repo: str, prefix: str = "") -> Iterator[Ref]:
        call = Call("list tags", repo)
        for raw in self._pages(f"/repositories/{_q(repo)}/tags", call, {"prefix": prefix} if prefix else None):
            yield Ref.from_json(raw)

    def delete_tag(self, repo: str, tag: str) -> None:
        call = Call(f"delete tag {tag!r}", repo, (("tag", tag),))
        self._request("DELETE", f"/repositories/{_q(repo)}/tags/{_q(tag)}", call)

    # ---- commits -------------------------------------------------------------------------

    def commit(
        self, repo: str, branch: str, message: str, metadata: Mapping[str, object] | None = None, *,
        allow_empty: bool = False,
    ) -> Commit:
        """Commit what is staged on `branch`; metadata values are stored as strings."""
        call = Call(f"commit to branch {branch!r}", repo, (("branch", branch),))
        body = {"message": message, "metadata": _str_map(metadata), "allow_empty": allow_empty}
        response = self._request(
            "POST", f"/repositories/{_q(repo)}/branches/{_q(branch)}/commits", call, json=body,
            timeout_s=self.long_timeout_s,
        )
        return Commit.from_json(response.json())

    def get_commit(self, repo: str, ref: str) -> Commit:
        """The commit any ref (branch, tag, commit id, `main~1`) points at."""
        call = Call(f"resolve ref {ref!r}", repo, (("ref", ref),))
        return Commit.from_json(self._request("GET", f"/repositories/{_q(repo)}/commits/{_q(ref)}", call).json())

    def log(self, repo: str, ref: str, *, limit: int | None = None, prefix: str = "") -> Iterator[Commit]:
        """Commits reachable from `ref`, newest first (with their metadata); optionally touching `prefix`."""
        call = Call(f"read the log of {ref!r}", repo, (("ref", ref),))
        params: dict[str, Any] = {"prefixes": [prefix]} if prefix else {}
        amount = min(limit, PAGE_SIZE) if limit else PAGE_SIZE
        for n, raw in enumerate(self._pages(f"/repositories/{_q(repo)}/refs/{_q(ref)}/commits", call, params, amount)):
            if limit is not None and n >= limit:
                return
            yield Commit.from_json(raw)

    def revert(self, repo: str, branch: str, ref: str, *, parent_number: int = 0) -> Commit:
        """Commit on `branch` the inverse of commit `ref`; for a merge commit pick the parent (1 or 2)."""
        call = Call(f"revert {ref!r} on branch {branch!r}", repo, (("branch", branch), ("ref", ref)), hints=(
            (409, "a merge commit needs parent_number 1 (the branch merged into) or 2; otherwise a later "
                  "commit changed the same paths: revert that one first"),
        ))
        body = {"ref": ref, "parent_number": parent_number}
        self._request(
            "POST", f"/repositories/{_q(repo)}/branches/{_q(branch)}/revert", call, json=body,
            timeout_s=self.long_timeout_s,
        )
        return self.get_commit(repo, branch)

    # ---- diff and merge ------------------------------------------------------------------

    def diff(self, repo: str, left: str, right: str, *, prefix: str = "", two_dot: bool = False) -> Iterator[DiffEntry]:
        """What `right` changed relative to `left`: since their merge base (three-dot, lakeFS's
        default, as a merge of right into left would apply it), or plainly between them (two-dot)."""
        call = Call(f"diff {left!r} and {right!r}", repo, (("ref", left), ("ref", right)))
        params = {"type": "two_dot" if two_dot else "three_dot", **({"prefix": prefix} if prefix else {})}
        for raw in self._pages(f"/repositories/{_q(repo)}/refs/{_q(left)}/diff/{_q(right)}", call, params):
            yield DiffEntry.from_json(raw)

    def uncommitted(self, repo: str, branch: str, *, prefix: str = "") -> Iterator[DiffEntry]:
        """Changes staged on `branch` and not committed yet."""
        call = Call(f"list uncommitted changes of branch {branch!r}", repo, (("branch", branch),))
        params = {"prefix": prefix} if prefix else None
        for raw in self._pages(f"/repositories/{_q(repo)}/branches/{_q(branch)}/diff", call, params):
            yield DiffEntry.from_json(raw)

    def merge_base(self, repo: str, source: str, dest: str) -> MergeBase:
        call = Call(f"find the merge base of {source!r} and {dest!r}", repo, (("ref", source), ("ref", dest)))
        raw = self._request("GET", f"/repositories/{_q(repo)}/refs/{_q(source)}/merge/{_q(dest)}", call).json()
        return MergeBase(raw["source_commit_id"], raw["destination_commit_id"], raw["base_commit_id"])

    def merge(
        self, repo: str, source: str, dest: str, *, message: str = "",
        metadata: Mapping[str, object] | None = None, strategy: str | None = None,
    ) -> str:
        """Merge ref `source` into branch `dest`; return the merge commit id.

        Raises ConflictError with `.paths` when both sides changed the same paths.
        """
        call = Call(f"merge {source!r} into {dest!r}", repo, (("ref", source), ("branch", dest)))
        body: dict[str, Any] = {"message": message or f"Merge {source!r} into {dest!r}", "metadata": _str_map(metadata)}
        if strategy:
            body["strategy"] = strategy
        try:
            response = self._request(
                "POST", f"/repositories/{_q(repo)}/refs/{_q(source)}/merge/{_q(dest)}", call, json=body,
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

    # ---- objects -------------------------------------------------------------------------

    def upload_object(
        self, repo: str, branch: str, path: str, body: bytes | IO[bytes], *, md5_hex: str | None = None,
        metadata: Mapping[str, str] | None = None, content_type: str = "application/octet-stream",
    ) -> ObjectStat:
        """Stage `body` at `path` on `branch`; with `md5_hex`, check lakeFS received exactly those bytes."""
        call = Call(f"upload {path!r} to branch {branch!r}", repo, (("branch", branch),))
        headers = {"Content-Type": content_type, **{f"X-Lakefs-Meta-{k}": v for k, v in (metadata or {}).items()}}
        response = self._request(
            "POST", f"/repositories/{_q(repo)}/branches/{_q(branch)}/objects", call, params={"path": path},
            data=body, headers=headers, timeout_s=self.long_timeout_s,
        )
        stat = ObjectStat.from_json(response.json())
        # lakeFS hashes the request body itself (MD5) on the way to the blockstore.
        if md5_hex is not None and stat.checksum != md5_hex:
            raise IntegrityError(
                f"uploading {path!r} to {repo}/{branch}: lakeFS received bytes with MD5 {stat.checksum}, "
                f"the local file has MD5 {md5_hex}; the data changed in transit or on disk. Upload again",
                call=call,
            )
        return stat

    def stat_object(self, repo: str, ref: str, path: str) -> ObjectStat:
        call = Call(f"stat {path!r} at {ref!r}", repo, (("ref", ref),), path)
        params = {"path": path}
        return ObjectStat.from_json(self._request("GET", f"/repositories/{_q(repo)}/refs/{_q(ref)}/objects/stat",
                                                  call, params=params).json())

    def get_object(self, repo: str, ref: str, path: str) -> bytes:
        call = Call(f"read {path!r} at {ref!r}", repo, (("ref", ref),), path)
        return self._request("GET", f"/repositories/{_q(repo)}/refs/{_q(ref)}/objects", call,
                             params={"path": path}, timeout_s=self.long_timeout_s).content

    def download_object(self, repo: str, ref: str, path: str, dest: Path) -> tuple[str, int]:
        """Stream the object to `dest` (atomically: `.partial`, then rename); return (sha256, size)."""
        call = Call(f"read {path!r} at {ref!r}", repo, (("ref", ref),), path)
        digest, size = hashlib.sha256(), 0
        partial = dest.with_name(dest.name + ".partial")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with translate_errors(self.endpoint, call, self.access_key_id), open(partial, "wb") as fh:
                response = self._request("GET", f"/repositories/{_q(repo)}/refs/{_q(ref)}/objects", call,
                                         params={"path": path}, stream=True, timeout_s=self.long_timeout_s)
                with response:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        fh.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            os.replace(partial, dest)
        except RobolakeError:  # before OSError: ServiceUnavailableError and AuthError are OSErrors too
            partial.unlink(missing_ok=True)
            raise
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise RobolakeError(f"cannot write {str(dest)!r} (from {path!r} at {ref!r}): {exc.strerror}") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return digest.hexdigest(), size

    def list_objects(self, repo: str, ref: str, prefix: str = "", *, delimiter: str = "") -> Iterator[ObjectStat]:
        """Objects (and with `delimiter`, common prefixes) under `prefix` at `ref`, in path order."""
        call = Call(f"list {prefix or '/'!r} at {ref!r}", repo, (("ref", ref),))
        params = {"prefix": prefix, "delimiter": delimiter}
        for raw in self._pages(f"/repositories/{_q(repo)}/refs/{_q(ref)}/objects/ls", call, params):
            yield ObjectStat.from_json(raw)

    def delete_objects(self, repo: str, branch: str, paths: Iterable[str]) -> int:
        """Stage the removal of `paths` from `branch`; return how many were asked for."""
        batch: list[str] = []
        count = 0
        for path in [*paths, None]:
            if path is not None:
                batch.append(path)
            if batch and (path is None or len(batch) == PAGE_SIZE):
                call = Call(f"delete {len(batch)} object(s) from branch {branch!r}", repo, (("branch", branch),))
                body = self._request("POST", f"/repositories/{_q(repo)}/branches/{_q(branch)}/objects/delete",
                                     call, json={"paths": batch}).json()
                if body.get("errors"):
                    first = body["errors"][0]
                    raise LakeFSError(
                        f"cannot {call.action}: {len(body['errors'])} failed, e.g. {first.get('path')!r}: "
                        f"{first.get('message')} (HTTP {first.get('status_code')})", call=call,
                    )
                count += len(batch)
                batch = []
        return count

    # ---- zero-copy import ----------------------------------------------------------------

    def start_import(
        self, repo: str, branch: str, source_uri: str, destination: str, message: str,
        metadata: Mapping[str, object] | None = None,
    ) -> str:
        """Start importing every object under `source_uri` (s3://bucket/prefix/) to `destination`."""
        if not source_uri.startswith("s3://") or len(source_uri) <= len("s3://") or source_uri[5] == "/":
            raise ConfigError(f"import source {source_uri!r} is not an s3://bucket/prefix/ URI; e.g. s3://umi-raw/pose/")
        source = source_uri if source_uri.endswith("/") else source_uri + "/"
        bucket, _, source_prefix = source.removeprefix("s3://").partition("/")
        check_bucket(bucket, f"the bucket of {source_uri!r}")
        check_prefix(source_prefix, f"the prefix of {source_uri!r}")
        dest = check_prefix(destination, "destination").strip("/")
        dest = dest + "/" if dest else ""
        call = Call(f"import {source!r} into branch {branch!r}", repo, (("branch", branch),))
        body = {
            "paths": [{"type": "common_prefix", "path": source, "destination": dest}],
            "commit": {"message": message, "metadata": _str_map(metadata)},
        }
        response = self._request("POST", f"/repositories/{_q(repo)}/branches/{_q(branch)}/import", call, json=body)
        return str(response.json()["id"])

    def import_status(self, repo: str, branch: str, import_id: str) -> ImportStatus:
        call = Call(f"read the status of import {import_id!r}", repo, (("branch", branch),))
        raw = self._request("GET", f"/repositories/{_q(repo)}/branches/{_q(branch)}/import", call,
                            params={"id": import_id}).json()
        return ImportStatus.from_json(import_id, raw)

    def cancel_import(self, repo: str, branch: str, import_id: str) -> None:
        call = Call(f"cancel import {import_id!r}", repo, (("branch", branch),))
        self._request("DELETE", f"/repositories/{_q(repo)}/branches/{_q(branch)}/import", call,
                      params={"id": import_id})

    def import_prefix(
        self, repo: str, branch: str, source_uri: str, destination: str, message: str,
        metadata: Mapping[str, object] | None = None, *, poll_interval_s: float = 2.0, timeout_s: float = 3600.0,
        progress: Callable[[ImportStatus], None] | None = None,
    ) -> ImportStatus:
        """Import without copying (lakeFS records the objects' addresses) and commit; wait for it."""
        import_id = self.start_import(repo, branch, source_uri, destination, message, metadata)
        deadline = time.monotonic() + timeout_s
        wait_s = min(0.1, poll_interval_s)  # small imports finish in a second: poll fast, then back off
        try:
            while True:
                status = self.import_status(repo, branch, import_id)
                if progress is not None:
                    progress(status)
                if status.error:
                    raise ImportFailedError(
                        f"importing {source_uri!r} into {repo}/{branch} failed: {status.error}; lakeFS must "
                        "reach the bucket with its blockstore credentials (see `robolake stack logs lakefs`)",
                        server_message=status.error,
                    )
                if status.completed:
                    return status
                if time.monotonic() > deadline:
                    raise ImportFailedError(
                        f"importing {source_uri!r} into {repo}/{branch} did not finish in {timeout_s:.0f} s "
                        f"({status.ingested_objects} objects so far); it was cancelled. Import smaller prefixes"
                    )
                time.sleep(wait_s)
                wait_s = min(wait_s * 1.5, poll_interval_s)
        except (ImportFailedError, KeyboardInterrupt):
            self._cancel_quietly(repo, branch, import_id)
            raise

    def _cancel_quietly(self, repo: str, branch: str, import_id: str) -> None:
        # It may have finished or failed meanwhile; then there is nothing left to cancel.
        with contextlib.suppress(RobolakeError):
            self.cancel_import(repo, branch, import_id)


def _str_map(values: Mapping[str, object] | None) -> dict[str, str]:
    """lakeFS metadata maps strings to strings."""
    return {str(k): str(v) for k, v in (values or {}).items()}
