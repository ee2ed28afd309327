"""A parallel, verified, resumable uploader for trees of many small files (and a few big ones).

    summary = upload_tree(settings, "umi_data", "umi-raw", "pose/cup")   # to the accelerator
    summary = upload_tree(S3Target(endpoint=..., access_key=..., secret_key=...), ...)
    summary.raise_for_failures()

How it works, in order:
  1. Walk the tree (sorted; ``*.partial`` files, which are half-written, are left out).
  2. Ask the server what is there already: one ListObjectsV2 per directory (``delimiter=/``) when
     the files sit in a few directories, else one recursive listing of their common prefix, with
     MinIO's ``metadata=true`` so each entry carries its ``x-amz-meta-sha256``.
  3. Workers (asyncio, one aiohttp session) read and hash each file once. An object that is
     present with the same size and SHA-256 (or, from a server that lists no metadata, the same
     ETag) is skipped, so a rerun rewrites nothing. Otherwise it is PUT with Content-MD5 and its
     ETag compared with our MD5; files of `multipart_threshold` bytes or more go up in parts, each
     with its own Content-MD5, and the final ETag is compared with the multipart ETag we computed
     (multipart.py).
  4. Errors are retried per the RetryPolicy (connection errors, 5xx, SlowDown). An object that
     still fails is reported in `UploadSummary.failures`; the rest carry on. If the endpoint stops
     answering altogether the run stops with ServiceUnavailableError: rerun to resume.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from robolake.config import Settings
from robolake.errors import ConfigError, ServiceUnavailableError
from robolake.keys import check_bucket, check_key, check_prefix
from robolake.storage import errors, integrity
from robolake.storage.aio import ByteBudget, first_error, run_async
from robolake.storage.integrity import MIB, Digest
from robolake.storage.layout import MetadataFn, content_type_for, default_metadata, join_key, safe_header_value
from robolake.storage.multipart import put_multipart
from robolake.storage.progress import ProgressCallback, TransferProgress
from robolake.storage.retry import RetryPolicy
from robolake.storage.s3 import AsyncS3, ObjectInfo, S3Target

INLINE_READ_BYTES = 1 * MIB  # smaller files are read on the event loop; bigger ones in a thread
MEMORY_BUDGET_BYTES = 256 * MIB  # file bodies and parts held in memory at once
PER_DIRECTORY_LISTING_MAX = 32  # more directories than this: one recursive listing instead


@dataclasses.dataclass(frozen=True)
class UploadItem:
    """One file to store as one object."""

    bucket: str
    key: str
    path: Path
    size: int
    content_type: str
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)  # x-amz-meta-* without the prefix


@dataclasses.dataclass(frozen=True, slots=True)
class UploadFailure:
    """An object that was not stored after every retry, and why (the last error's message)."""

    key: str
    path: str
    error: str


@dataclasses.dataclass(frozen=True)
class UploadSummary:
    """What a run did. `objects` were written and verified; `skipped` were already there."""

    endpoint: str
    destination: str
    objects: int
    skipped: int
    bytes: int
    seconds: float
    retries: int
    failures: tuple[UploadFailure, ...] = ()

    @property
    def total(self) -> int:
        return self.objects + self.skipped + len(self.failures)

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "total": self.total,
            "objects_per_s": round(self.objects_per_s, 1),
            "mb_per_s": round(self.mb_per_s, 2),
        }

    def raise_for_failures(self) -> None:
        """UploadIncompleteError naming the first failures, if any object failed."""
        if not self.failures:
            return
        shown = "; ".join(f"{f.key}: {f.error}" for f in self.failures[:3])
        more = f" (and {len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
        raise errors.UploadIncompleteError(
            f"{len(self.failures)} of {self.total} objects were not stored in {self.destination}: {shown}{more}. "
            f"{self.objects + self.skipped} are stored and verified; rerun the same command to upload the rest"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class UploadOptions:
    """How to upload; every field has a sensible default."""

    concurrency: int = 32
    multipart_threshold: int = 64 * MIB
    part_size: int = 16 * MIB
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    memory_budget: int = MEMORY_BUDGET_BYTES

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 1024:
            raise ConfigError(f"concurrency={self.concurrency!r} must be between 1 and 1024")
        if self.part_size < integrity.MIN_PART_BYTES:
            raise ConfigError(f"part_size={self.part_size!r} is below S3's 5 MiB minimum part size")
        if self.multipart_threshold < self.part_size:
            raise ConfigError(
                f"multipart_threshold={self.multipart_threshold!r} must be >= part_size ({self.part_size})"
            )


# ---- building the list of items ---------------------------------------------------------------


def collect_tree(
    local_dir: str | Path, bucket: str, prefix: str = "", *, metadata_fn: MetadataFn = default_metadata
) -> list[UploadItem]:
    """Every regular file under `local_dir` (sorted, ``*.partial`` excluded) as an UploadItem."""
    root = Path(local_dir)
    if not root.is_dir():
        raise ConfigError(f"{str(root)!r} is not a directory; give the folder to upload")
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".partial"):
                continue
            path = Path(dirpath) / name
            if not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            key = check_key(join_key(prefix, rel), f"the key for {str(path)!r}")
            items.append(
                UploadItem(
                    bucket=bucket,
                    key=key,
                    path=path,
                    size=path.stat().st_size,
                    content_type=content_type_for(name),
                    metadata=dict(metadata_fn(rel)),
                )
            )
    return items


def _target(target: Settings | S3Target, endpoint: str | None) -> S3Target:
    if isinstance(target, Settings):
        return S3Target.from_settings(target, endpoint)
    if endpoint:
        from robolake.storage.s3 import normalise_endpoint

        return dataclasses.replace(target, endpoint=normalise_endpoint(endpoint))
    return target


def upload_tree(
    target: Settings | S3Target,
    local_dir: str | Path,
    bucket: str,
    prefix: str = "",
    *,
    endpoint: str | None = None,
    concurrency: int = 32,
    multipart_threshold: int = 64 * MIB,
    part_size: int = 16 * MIB,
    metadata_fn: MetadataFn = default_metadata,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
) -> UploadSummary:
    """Upload every file under `local_dir` to s3://`bucket`/`prefix`/<relative path>, verified and resumable.

    `target`: Settings (root credentials; `endpoint` defaults to the accelerator) or an S3Target.
    """
    check_bucket(bucket)
    check_prefix(prefix)
    items = collect_tree(local_dir, bucket, prefix, metadata_fn=metadata_fn)
    options = UploadOptions(
        concurrency=concurrency,
        multipart_threshold=multipart_threshold,
        part_size=part_size,
        retry=retry or RetryPolicy(),
    )
    return upload_items(
        _target(target, endpoint),
        items,
        options=options,
        progress=progress,
        destination=f"s3://{bucket}/{join_key(prefix, '')}",
    )


def upload_items(
    target: Settings | S3Target,
    items: Sequence[UploadItem],
    *,
    options: UploadOptions | None = None,
    progress: ProgressCallback | None = None,
    destination: str = "",
    endpoint: str | None = None,
) -> UploadSummary:
    """Upload `items` (any buckets); see the module docstring. Returns the summary, never raises for
    per-object failures (see `UploadSummary.raise_for_failures`)."""
    return run_async(
        upload_items_async(
            _target(target, endpoint),
            items,
            options=options or UploadOptions(),
            progress=progress,
            destination=destination,
        )
    )


async def upload_items_async(
    target: S3Target,
    items: Sequence[UploadItem],
    *,
    options: UploadOptions,
    progress: ProgressCallback | None = None,
    destination: str = "",
) -> UploadSummary:
    keys = [(i.bucket, i.key) for i in items]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})[:3]
        raise ConfigError(f"more than one file maps to the same object: {dupes}")
    destination = destination or ", ".join(sorted({f"s3://{i.bucket}/" for i in items})) or "(nothing)"
    async with AsyncS3(target, connections=options.concurrency + 8, retry=options.retry) as s3:
        run = _Run(s3, items, options, progress, destination)
        return await run.execute()


# ---- the run ----------------------------------------------------------------------------------


def _same(remote: ObjectInfo | None, digest: Digest) -> bool:
    """Is the stored object the local file? By SHA-256 metadata, or by ETag from servers without it."""
    if remote is None or remote.size != digest.size:
        return False
    if remote.metadata is not None:
        return remote.metadata.get("sha256") == digest.sha256
    return remote.etag == digest.etag


def _headers(item: UploadItem, digest: Digest) -> dict[str, str]:
    headers = {"content-type": item.content_type, "x-amz-meta-sha256": digest.sha256}
    for name, value in item.metadata.items():
        headers[f"x-amz-meta-{name.lower()}"] = safe_header_value(str(value))
    return headers


def _listing_plan(keys: Iterable[str]) -> list[tuple[str, str]]:
    """(prefix, delimiter) listings that cover `keys`: per directory, or one recursive listing."""
    dirs = sorted({str(PurePosixPath(k).parent) + "/" if "/" in k else "" for k in keys})
    if len(dirs) <= PER_DIRECTORY_LISTING_MAX:
        return [(d, "/") for d in dirs]
    split = [d.split("/")[:-1] for d in dirs]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return [("".join(f"{p}/" for p in common), "")]


class _Run:
    def __init__(
        self,
        s3: AsyncS3,
        items: Sequence[UploadItem],
        options: UploadOptions,
        progress: ProgressCallback | None,
        destination: str,
    ) -> None:
        self.s3, self.items, self.options, self.progress = s3, items, options, progress
        self.destination = destination
        self.budget = ByteBudget(options.memory_budget)
        self.remote: dict[tuple[str, str], ObjectInfo] = {}
        self.uploaded = self.skipped = self.bytes_uploaded = self.bytes_done = 0
        self.failures: list[UploadFailure] = []
        self.consecutive_unreachable = 0
        self.total_bytes = sum(i.size for i in items)

    async def execute(self) -> UploadSummary:
        started = time.perf_counter()
        await self._list_remote()
        self._report()
        queue = iter(self.items)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.options.concurrency, len(self.items))):
                    group.create_task(self._worker(queue))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        return UploadSummary(
            endpoint=self.s3.target.endpoint,
            destination=self.destination,
            objects=self.uploaded,
            skipped=self.skipped,
            bytes=self.bytes_uploaded,
            seconds=round(time.perf_counter() - started, 3),
            retries=self.s3.retries,
            failures=tuple(self.failures),
        )

    async def _list_remote(self) -> None:
        by_bucket: dict[str, list[str]] = {}
        for item in self.items:
            by_bucket.setdefault(item.bucket, []).append(item.key)
        for bucket, keys in by_bucket.items():
            for prefix, delimiter in _listing_plan(keys):
                try:
                    listed = await self._list(bucket, prefix, delimiter)
                except errors.NoSuchBucketError as exc:
                    raise errors.NoSuchBucketError(
                        f"bucket {bucket!r} does not exist at {self.s3.target.endpoint}; "
                        "nothing was uploaded. Create it, or check --bucket",
                        status=exc.status,
                        code=exc.code,
                    ) from exc
                except errors.S3Error as exc:
                    if exc.status == 0:
                        raise ServiceUnavailableError(
                            f"the S3 endpoint {self.s3.target.endpoint} does not answer ({exc}); nothing was "
                            "uploaded. Is the stack running? (robolake stack status)"
                        ) from exc
                    raise
                self.remote.update(((bucket, o.key), o) for o in listed)

    async def _list(self, bucket: str, prefix: str, delimiter: str) -> list[ObjectInfo]:
        # Few, quick retries: an endpoint that is down from the start should be reported at once.
        quick = RetryPolicy(max_attempts=4, base_delay_s=0.2, max_delay_s=1.0)
        out: list[ObjectInfo] = []
        token = ""
        while True:
            page, token, _ = await self.s3.call(
                functools.partial(self.s3.list_page, bucket, prefix, delimiter=delimiter, token=token), policy=quick
            )
            out.extend(page)
            if not token:
                return out

    def _report(self, path: str = "") -> None:
        """`path`: the key just stored and verified (or found there), "" for anything else."""
        if self.progress is not None:
            done = self.uploaded + self.skipped + len(self.failures)
            self.progress(
                TransferProgress(
                    done, len(self.items), self.bytes_done, self.total_bytes, self.skipped, len(self.failures), path
                )
            )

    async def _worker(self, queue: Iterable[UploadItem]) -> None:
        for item in queue:
            stored = ""
            try:
                wrote = await self._one(item)
            except (errors.StorageError, OSError) as exc:
                if isinstance(exc, errors.NoSuchBucketError):
                    raise
                self._failed(item, exc)
            else:
                stored = item.key
                self.consecutive_unreachable = 0
                if wrote:
                    self.uploaded += 1
                    self.bytes_uploaded += item.size
                else:
                    self.skipped += 1
            self.bytes_done += item.size
            self._report(stored)

    def _failed(self, item: UploadItem, exc: BaseException) -> None:
        message = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
        self.failures.append(UploadFailure(item.key, str(item.path), message))
        unreachable = isinstance(exc, errors.S3Error) and exc.status == 0
        self.consecutive_unreachable = self.consecutive_unreachable + 1 if unreachable else 0
        if self.consecutive_unreachable >= max(8, self.options.concurrency):
            raise ServiceUnavailableError(
                f"the S3 endpoint {self.s3.target.endpoint} stopped answering ({message}); stopped after "
                f"{self.uploaded + self.skipped} of {len(self.items)} objects were stored and verified. "
                "Rerun the same command to resume"
            )

    async def _one(self, item: UploadItem) -> bool:
        """Store one item unless it is there already; True if it was written."""
        if item.size >= self.options.multipart_threshold:
            return await self._multipart(item)
        if item.size <= INLINE_READ_BYTES:
            data = item.path.read_bytes()
            return await self._single(item, data, integrity.digest_bytes(data))
        async with self.budget.hold(item.size):
            data = await asyncio.to_thread(item.path.read_bytes)
            return await self._single(item, data, await asyncio.to_thread(integrity.digest_bytes, data))

    async def _single(self, item: UploadItem, data: bytes, digest: Digest) -> bool:
        if _same(self.remote.get((item.bucket, item.key)), digest):
            return False
        headers = _headers(item, digest)

        async def attempt() -> None:
            etag = await self.s3.put_object(
                item.bucket, item.key, data, content_md5=digest.content_md5, headers=headers
            )
            if etag != digest.etag:
                raise errors.IntegrityError(
                    f"{item.bucket}/{item.key}: the server reports ETag {etag!r}, "
                    f"but the MD5 of {str(item.path)!r} is {digest.etag!r}"
                )

        await self.s3.call(attempt)
        return True

    async def _multipart(self, item: UploadItem) -> bool:
        part_size = integrity.choose_part_size(item.size, self.options.part_size)
        digest = await asyncio.to_thread(integrity.digest_file, item.path, multipart_part_size=part_size)
        if digest.size != item.size:
            raise errors.LocalFileChangedError(
                f"{str(item.path)!r} changed size while being read "
                f"({item.size} -> {digest.size} bytes); nothing was written for it"
            )
        if _same(self.remote.get((item.bucket, item.key)), digest):
            return False
        await put_multipart(
            self.s3,
            item.bucket,
            item.key,
            item.path,
            digest,
            _headers(item, digest),
            budget=self.budget,
            parts_in_flight=min(8, self.options.concurrency // 4),
        )
        return True
