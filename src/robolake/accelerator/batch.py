"""Batch GET: one signed request returns many small objects as a tar stream, in request order.

    POST /_robolake/batch      body: {"bucket": "umi-raw", "keys": ["pose/episode_00001.json", ...]}
    200 application/x-tar      one member per requested key, in order; a key that could not be
                               read is a zero-length member whose PAX header carries
                               `robolake.status` (e.g. 404) and `robolake.error` (e.g. NoSuchKey)

The request must be SigV4-signed with its body hash (not UNSIGNED-PAYLOAD) by a principal whose
secret the accelerator holds; members are answered from the cache, misses fetched from MinIO
concurrently (bounded) through the one fill path (robolake.accelerator.fill) and cached.
Objects above the size threshold are fetched but not cached. The signature is checked before
the body is read, and the body is read only up to MAX_BODY_BYTES. A member is named by its key
when that is a plain relative path; any other key (`../x`, `/etc/passwd`, control characters)
gets a neutral name, `robolake-member-<index>`, and the key itself in the PAX header
`robolake.key`, so extracting the tar cannot write outside its directory; `parse_batch` reads
the key from either.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Sequence

from aiohttp import web

from robolake.accelerator import halfclose, s3xml
from robolake.accelerator.fill import Filler
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.sigv4 import Verified, Verifier

MAX_KEYS = 10_000
MAX_KEY_BYTES = 1024  # S3's (and MinIO's) longest object name
MAX_BODY_BYTES = 16 * 1024 * 1024  # MAX_KEYS keys of S3's longest, JSON-quoted: room to spare
READ_CHUNK_BYTES = 256 * 1024
FETCH_CONCURRENCY = 16
FLUSH_BYTES = 256 * 1024  # members are written in pieces of about this size

Member = tuple[bytes, int, str]  # body, HTTP status, S3 error code ("" when the status is 200)
KEY_PAX = "robolake.key"
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def _plain_name(key: str) -> bool:
    """A key that is safe as a tar member name: relative, no `.`/`..`/empty segments, no control characters."""
    if key.startswith("/") or _UNSAFE_CHARS.search(key):
        return False
    return all(segment not in ("", ".", "..") for segment in key.split("/"))


def _member(index: int, key: str, data: bytes, pax: dict[str, str] | None = None) -> bytes:
    name = key if _plain_name(key) else f"robolake-member-{index:05d}"
    if name != key:
        pax = {**(pax or {}), KEY_PAX: key}
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    if pax:
        info.pax_headers = pax
    header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
    padding = (-len(data)) % tarfile.BLOCKSIZE
    return header + data + b"\0" * padding


class BatchHandler:
    """`POST /_robolake/batch`: verifies the request, then reads each key through the cache."""

    def __init__(self, filler: Filler, verifier: Verifier, metrics: Metrics, *, own: frozenset[str]) -> None:
        self._filler = filler
        self._verifier = verifier
        self._metrics = metrics
        self._own = own  # batch GET reads as root: only root may ask for it

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        result = self._verifier.verify(request.method, path, query, request.headers)
        if not isinstance(result, Verified):  # before the body is read: an anonymous one costs nothing
            reason = f"batch GET needs a valid signature ({result.reason})"
            return s3xml.error_response(403, "AccessDenied", reason, request.path)
        if result.access_key not in self._own:
            reason = "batch GET is for the stack's root user; a team's users read objects one by one (GET)"
            return s3xml.error_response(403, "AccessDenied", reason, request.path)
        try:
            body = await _read_bounded(request)
        except Exception:  # connection lost, or cut short by a half-close: aiohttp's payload errors
            request.content.feed_eof()
            return s3xml.error_response(400, "IncompleteBody", "the batch GET body ended early", request.path)
        if body is None:
            reason = f"a batch GET body is at most {MAX_BODY_BYTES} bytes"
            return s3xml.error_response(413, "EntityTooLarge", reason, request.path)
        if result.payload_hash != hashlib.sha256(body).hexdigest():
            reason = "batch GET must be signed over its body"
            return s3xml.error_response(400, "XAmzContentSHA256Mismatch", reason, request.path)
        parsed = _parse(request, body)
        if isinstance(parsed, web.Response):
            return parsed
        bucket, keys = parsed
        self._metrics.inc("batch_keys", len(keys))
        limiter = asyncio.Semaphore(FETCH_CONCURRENCY)
        tasks = [asyncio.ensure_future(self._one(_object_name(bucket, k), limiter)) for k in keys]
        try:
            return await _write_tar(request, keys, tasks)
        finally:  # a client gone mid-stream leaves fetches behind: cancel them and wait until they are done
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, key: ObjectKey, limiter: asyncio.Semaphore) -> Member:
        obj, tier = self._filler.lookup(key)
        if obj is not None:
            self._metrics.inc(f"batch_hit_{tier}")
            return obj.body, 200, ""
        async with limiter, self._filler.fetch_signed(key, op="batch") as got:
            body = got.obj.body if got.obj is not None else await got.response.read()
            if got.response.status != 200:
                self._metrics.inc("batch_missing")
                return b"", got.response.status, _error_code(body) or f"HTTP{got.response.status}"
        self._metrics.inc("batch_miss")
        return body, 200, ""


def _object_name(bucket: str, key: str) -> ObjectKey:
    """The object MinIO reads for `key` (`/a.txt` is `a.txt`): a fill is cached where writes invalidate it."""
    named = s3xml.split_path(s3xml.object_path((bucket, key)))
    return named if named[0] else (bucket, key)  # a name MinIO refuses: its error, nothing cached


def _parse(request: web.Request, body: bytes) -> tuple[str, list[str]] | web.Response:
    """(bucket, keys) of a well-formed batch body, or the error answer to send."""
    try:
        doc = json.loads(body)
        bucket, keys = doc["bucket"], doc["keys"]
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested 100k deep
        reason = 'body must be {"bucket": ..., "keys": [...]}'
        return s3xml.error_response(400, "MalformedJSON", reason, request.path)
    if not isinstance(bucket, str) or not bucket or not isinstance(keys, list) or len(keys) > MAX_KEYS:
        reason = f"need a bucket name and a list of at most {MAX_KEYS} keys"
        return s3xml.error_response(400, "InvalidArgument", reason, request.path)
    for index, key in enumerate(keys):
        if not isinstance(key, str) or not key or not _utf8_within(key, MAX_KEY_BYTES):
            reason = (
                f"key {index} ({str(key)[:64]!r}) must be a non-empty UTF-8 string of at most {MAX_KEY_BYTES} bytes"
            )
            return s3xml.error_response(400, "InvalidArgument", reason, request.path)
    return bucket, keys


def _utf8_within(text: str, max_bytes: int) -> bool:
    try:
        return len(text.encode("utf-8")) <= max_bytes  # a lone surrogate (JSON "\ud800") is no UTF-8
    except UnicodeEncodeError:
        return False


async def _read_bounded(request: web.Request) -> bytes | None:
    """The request body, or None when it is longer than MAX_BODY_BYTES (read no further then)."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return None
    halfclose.watch(request)
    body = bytearray()
    while len(body) <= MAX_BODY_BYTES and (chunk := await request.content.read(READ_CHUNK_BYTES)):
        body += chunk
    return bytes(body) if len(body) <= MAX_BODY_BYTES else None


async def _write_tar(
    request: web.Request, keys: list[str], tasks: Sequence[asyncio.Future[Member]]
) -> web.StreamResponse:
    """Stream one tar member per key, in request order, as each fetch finishes."""
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "application/x-tar", "X-Amz-Request-Id": s3xml.request_id()}
    )
    await response.prepare(request)
    pending = bytearray()
    for index, (key, task) in enumerate(zip(keys, tasks, strict=True)):
        data, status, error = await task
        pax = None if status == 200 else {"robolake.status": str(status), "robolake.error": error}
        pending += _member(index, key, data if status == 200 else b"", pax)
        if len(pending) >= FLUSH_BYTES:
            await response.write(bytes(pending))
            pending.clear()
    pending += b"\0" * (2 * tarfile.BLOCKSIZE)
    await response.write(bytes(pending))
    await response.write_eof()
    return response


def _error_code(body: bytes) -> str:
    start = body.find(b"<Code>")
    end = body.find(b"</Code>")
    return body[start + 6 : end].decode(errors="replace") if 0 <= start < end else ""


def parse_batch(stream: io.BufferedIOBase | io.BytesIO) -> list[tuple[str, bytes | None, str]]:
    """Parse a batch tar: (key, body or None, error code) per member, in order."""
    out: list[tuple[str, bytes | None, str]] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            key = info.pax_headers.get(KEY_PAX, info.name)
            status = info.pax_headers.get("robolake.status")
            if status is not None:
                out.append((key, None, info.pax_headers.get("robolake.error", status)))
                continue
            fh = tar.extractfile(info)
            out.append((key, fh.read() if fh else b"", ""))
    return out
