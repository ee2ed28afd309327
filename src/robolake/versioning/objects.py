"""lakeFS calls on objects: upload (verified against lakeFS's MD5), stat, read, download, list,
delete, reset one staged path, and zero-copy import of a bucket prefix."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from robolake.errors import ConfigError, IntegrityError, RobolakeError
from robolake.keys import check_bucket, check_prefix
from robolake.versioning.errors import Call, ImportFailedError, LakeFSError, translate_errors
from robolake.versioning.models import ImportStatus, Metadata, ObjectStat, str_map
from robolake.versioning.transport import PAGE_SIZE, LakeFSTransport, q


class ObjectCalls(LakeFSTransport):
    """The object and import calls of `LakeFSClient`."""

    def upload_object(
        self,
        repo: str,
        branch: str,
        path: str,
        body: bytes | IO[bytes],
        *,
        md5_hex: str | None = None,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectStat:
        """Stage `body` at `path` on `branch`; with `md5_hex`, check lakeFS received exactly those bytes."""
        call = Call(f"upload {path!r} to branch {branch!r}", repo, (("branch", branch),))
        headers = {"Content-Type": content_type, **{f"X-Lakefs-Meta-{k}": v for k, v in (metadata or {}).items()}}
        response = self._request(
            "POST",
            f"/repositories/{q(repo)}/branches/{q(branch)}/objects",
            call,
            params={"path": path},
            data=body,
            headers=headers,
            timeout_s=self.long_timeout_s,
        )
        stat = ObjectStat.from_json(response.json())
        # lakeFS hashes the request body itself (MD5) on the way to the blockstore.
        if md5_hex is not None and stat.checksum != md5_hex:
            raise IntegrityError(
                f"uploading {path!r} to {repo}/{branch}: lakeFS received bytes with MD5 {stat.checksum}, "
                f"the local file has MD5 {md5_hex}; the data changed in transit or on disk. Upload again"
            )
        return stat

    def stat_object(self, repo: str, ref: str, path: str) -> ObjectStat:
        call = Call(f"stat {path!r} at {ref!r}", repo, (("ref", ref),), path)
        where = f"/repositories/{q(repo)}/refs/{q(ref)}/objects/stat"
        return ObjectStat.from_json(self._request("GET", where, call, params={"path": path}).json())

    def get_object(self, repo: str, ref: str, path: str) -> bytes:
        call = Call(f"read {path!r} at {ref!r}", repo, (("ref", ref),), path)
        where = f"/repositories/{q(repo)}/refs/{q(ref)}/objects"
        return self._request("GET", where, call, params={"path": path}, timeout_s=self.long_timeout_s).content

    def download_object(self, repo: str, ref: str, path: str, dest: Path) -> tuple[str, int]:
        """Stream the object to `dest` (atomically: `.partial`, then rename); return (sha256, size)."""
        call = Call(f"read {path!r} at {ref!r}", repo, (("ref", ref),), path)
        where = f"/repositories/{q(repo)}/refs/{q(ref)}/objects"
        digest, size = hashlib.sha256(), 0
        partial = dest.with_name(dest.name + ".partial")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Reading the body can fail half-way too: translate that as well.
            with translate_errors(self.endpoint, call, self.access_key_id), open(partial, "wb") as fh:
                response = self._request(
                    "GET", where, call, params={"path": path}, stream=True, timeout_s=self.long_timeout_s
                )
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
        for raw in self._pages(f"/repositories/{q(repo)}/refs/{q(ref)}/objects/ls", call, params):
            yield ObjectStat.from_json(raw)

    def delete_objects(self, repo: str, branch: str, paths: Iterable[str]) -> int:
        """Stage the removal of `paths` from `branch`; return how many were asked for."""
        batch: list[str] = []
        count = 0
        for path in [*paths, None]:
            if path is not None:
                batch.append(path)
            if batch and (path is None or len(batch) == PAGE_SIZE):
                self._delete_batch(repo, branch, batch)
                count += len(batch)
                batch = []
        return count

    def _delete_batch(self, repo: str, branch: str, batch: list[str]) -> None:
        call = Call(f"delete {len(batch)} object(s) from branch {branch!r}", repo, (("branch", branch),))
        where = f"/repositories/{q(repo)}/branches/{q(branch)}/objects/delete"
        body = self._request("POST", where, call, json={"paths": batch}).json()
        if body.get("errors"):
            first = body["errors"][0]
            raise LakeFSError(
                f"cannot {call.action}: {len(body['errors'])} failed, e.g. {first.get('path')!r}: "
                f"{first.get('message')} (HTTP {first.get('status_code')})",
                call=call,
            )

    def reset_object(self, repo: str, branch: str, path: str) -> None:
        """Drop the staged change of `path` on `branch` (lakeFS "reset" of one object)."""
        call = Call(f"reset {path!r} on branch {branch!r}", repo, (("branch", branch),), path)
        self._request(
            "PUT", f"/repositories/{q(repo)}/branches/{q(branch)}", call, json={"type": "object", "path": path}
        )

    # ---- zero-copy import ----------------------------------------------------------------

    def start_import(self, repo: str, branch: str, body: Mapping[str, Any]) -> str:
        """Start the import `body` (see `import_request`) describes; return its id (see `import_status`)."""
        source = body["paths"][0]["path"]
        call = Call(f"import {source!r} into branch {branch!r}", repo, (("branch", branch),))
        response = self._request("POST", f"/repositories/{q(repo)}/branches/{q(branch)}/import", call, json=body)
        return str(response.json()["id"])

    def import_status(self, repo: str, branch: str, import_id: str) -> ImportStatus:
        call = Call(f"read the status of import {import_id!r}", repo, (("branch", branch),))
        where = f"/repositories/{q(repo)}/branches/{q(branch)}/import"
        return ImportStatus.from_json(import_id, self._request("GET", where, call, params={"id": import_id}).json())

    def cancel_import(self, repo: str, branch: str, import_id: str) -> None:
        call = Call(f"cancel import {import_id!r}", repo, (("branch", branch),))
        self._request("DELETE", f"/repositories/{q(repo)}/branches/{q(branch)}/import", call, params={"id": import_id})

    def import_prefix(
        self,
        repo: str,
        branch: str,
        source_uri: str,
        destination: str,
        message: str,
        metadata: Metadata | None = None,
        *,
        poll_interval_s: float = 2.0,
        timeout_s: float = 3600.0,
        progress: Callable[[ImportStatus], None] | None = None,
    ) -> ImportStatus:
        """Import every object under `source_uri` (s3://bucket/prefix/) to `destination` without copying
        (lakeFS records the objects' addresses), and commit; wait for it."""
        import_id = self.start_import(repo, branch, import_request(source_uri, destination, message, metadata))
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


def import_request(source_uri: str, destination: str, message: str, metadata: Metadata | None) -> dict[str, Any]:
    """The body of lakeFS's import call: every object under `source_uri` to `destination`, one commit."""
    if not source_uri.startswith("s3://") or len(source_uri) <= len("s3://") or source_uri[5] == "/":
        raise ConfigError(f"import source {source_uri!r} is not an s3://bucket/prefix/ URI; e.g. s3://umi-raw/pose/")
    source = source_uri if source_uri.endswith("/") else source_uri + "/"
    bucket, _, source_prefix = source.removeprefix("s3://").partition("/")
    check_bucket(bucket, f"the bucket of {source_uri!r}")
    check_prefix(source_prefix, f"the prefix of {source_uri!r}")
    dest = check_prefix(destination, "destination").strip("/")
    return {
        "paths": [{"type": "common_prefix", "path": source, "destination": dest + "/" if dest else ""}],
        "commit": {"message": message, "metadata": str_map(metadata)},
    }
