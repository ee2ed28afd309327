"""One large file as an S3 multipart upload: every part and the completed object verified.

    await put_multipart(s3, bucket, key, path, digest, headers, budget=budget, parts_in_flight=4)

`digest` is ``integrity.digest_file(path, multipart_part_size=...)``: the MD5 of every part, read
once before anything is sent. Each part is read again, checked against its MD5 (the file must
not change underneath), sent with its Content-MD5, and its ETag compared; the final ETag must be
the multipart ETag computed from the parts. Any failure aborts the upload, so no parts are left
behind on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

from robolake.storage import integrity
from robolake.storage.aio import ByteBudget, first_error
from robolake.storage.errors import IntegrityError, LocalFileChangedError, S3Error
from robolake.storage.integrity import Digest
from robolake.storage.s3 import AsyncS3


async def put_multipart(
    s3: AsyncS3,
    bucket: str,
    key: str,
    path: Path,
    digest: Digest,
    headers: Mapping[str, str],
    *,
    budget: ByteBudget,
    parts_in_flight: int,
) -> None:
    """Upload `path` in the parts `digest` describes; IntegrityError unless the server stored exactly them."""
    upload_id = await s3.call(lambda: s3.create_multipart_upload(bucket, key, headers))
    try:
        etags = await _put_parts(s3, bucket, key, upload_id, path, digest, budget, parts_in_flight)
        etag = await _complete(s3, bucket, key, upload_id, etags, digest)
    except BaseException:
        with contextlib.suppress(Exception):
            await s3.abort_multipart_upload(bucket, key, upload_id)
        raise
    if etag != digest.etag:
        raise IntegrityError(
            f"{bucket}/{key}: the server reports ETag {etag!r} for the completed upload, "
            f"but the parts of {str(path)!r} give {digest.etag!r}"
        )


async def _put_parts(
    s3: AsyncS3,
    bucket: str,
    key: str,
    upload_id: str,
    path: Path,
    digest: Digest,
    budget: ByteBudget,
    parts_in_flight: int,
) -> list[str]:
    ranges = integrity.part_ranges(digest.size, digest.part_size)
    in_flight = asyncio.Semaphore(max(1, parts_in_flight))
    etags: list[str] = [""] * len(ranges)

    async def part(number: int, offset: int, length: int) -> None:
        async with in_flight, budget.hold(length):
            data = await asyncio.to_thread(_read_range, path, offset, length)
            md5 = await asyncio.to_thread(integrity.md5_of, data)
            if md5 != digest.part_md5s[number - 1]:
                raise LocalFileChangedError(
                    f"{str(path)!r} changed while being uploaded (part "
                    f"{number}); nothing was written for it. Upload it again"
                )
            content_md5 = integrity.content_md5(md5)

            async def attempt() -> str:
                etag = await s3.upload_part(bucket, key, upload_id, number, data, content_md5)
                if etag != md5.hex():
                    raise IntegrityError(f"{bucket}/{key} part {number}: ETag {etag!r} != MD5 {md5.hex()!r}")
                return etag

            etags[number - 1] = await s3.call(attempt)

    try:
        async with asyncio.TaskGroup() as group:
            for number, (offset, length) in enumerate(ranges, start=1):
                group.create_task(part(number, offset, length))
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    return etags


async def _complete(s3: AsyncS3, bucket: str, key: str, upload_id: str, etags: list[str], digest: Digest) -> str:
    tries = 0

    async def attempt() -> str:
        nonlocal tries
        tries += 1
        try:
            return await s3.complete_multipart_upload(bucket, key, upload_id, etags)
        except S3Error as exc:
            # A retried completion whose first try succeeded (answer lost) finds no upload any more.
            if exc.code == "NoSuchUpload" and tries > 1:
                head = await s3.head_object(bucket, key)
                if head is not None and (head.metadata or {}).get("sha256") == digest.sha256:
                    return head.etag
            raise

    return await s3.call(attempt)


def _read_range(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read(length)
    if len(data) != length:
        raise LocalFileChangedError(f"{str(path)!r} is shorter than when it was hashed; nothing was written for it")
    return data
