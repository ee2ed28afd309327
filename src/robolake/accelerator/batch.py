"""Batch GET: one signed request returns many small objects as a tar stream, in request order.

    POST /_robolake/batch      body: {"bucket": "umi-raw", "keys": ["pose/episode_00001.json", ...]}
    200 application/x-tar      one member per requested key, in order; a key that could not be
                               read is a zero-length member whose PAX header carries
                               `robolake.status` (e.g. 404) and `robolake.error` (e.g. NoSuchKey)

The request must be SigV4-signed with its body hash (not UNSIGNED-PAYLOAD) by a principal whose
secret the accelerator holds; members are answered from the cache, misses fetched from MinIO
concurrently (bounded) through the one fill path (robolake.accelerator.fill) and cached.
Objects above the size threshold are fetched but not cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence

from aiohttp import web

from robolake.accelerator import s3xml
from robolake.accelerator.fill import Filler
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.sigv4 import Verified, Verifier

MAX_KEYS = 10_000
FETCH_CONCURRENCY = 16
FLUSH_BYTES = 256 * 1024  # members are written in pieces of about this size

Member = tuple[bytes, int, str]  # body, HTTP status, S3 error code ("" when the status is 200)


def _member(name: str, data: bytes, pax: dict[str, str] | None = None) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    if pax:
        info.pax_headers = pax
    header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")
    padding = (-len(data)) % tarfile.BLOCKSIZE
    return header + data + b"\0" * padding


class BatchHandler:
    """`POST /_robolake/batch`: verifies the request, then reads each key through the cache."""

    def __init__(self, filler: Filler, verifier: Verifier, metrics: Metrics) -> None:
        self._filler = filler
        self._verifier = verifier
        self._metrics = metrics

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        parsed = self._parse(request, body)
        if isinstance(parsed, web.Response):
            return parsed
        bucket, keys = parsed
        self._metrics.inc("batch_keys", len(keys))
        limiter = asyncio.Semaphore(FETCH_CONCURRENCY)
        tasks = [asyncio.ensure_future(self._one((bucket, k), limiter)) for k in keys]
        try:
            return await _write_tar(request, keys, tasks)
        finally:  # a client gone mid-stream leaves fetches behind: cancel them and wait until they are done
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _parse(self, request: web.Request, body: bytes) -> tuple[str, list[str]] | web.Response:
        """(bucket, keys) of a signed, well-formed batch request, or the error answer to send."""
        path, _, query = request.raw_path.partition("?")
        result = self._verifier.verify(request.method, path, query, request.headers)
        if not isinstance(result, Verified):
            reason = f"batch GET needs a valid signature ({result.reason})"
            return s3xml.error_response(403, "AccessDenied", reason, request.path)
        if result.payload_hash != hashlib.sha256(body).hexdigest():
            reason = "batch GET must be signed over its body"
            return s3xml.error_response(400, "XAmzContentSHA256Mismatch", reason, request.path)
        try:
            doc = json.loads(body)
            bucket = str(doc["bucket"])
            keys = [str(k) for k in doc["keys"]]
        except (ValueError, KeyError, TypeError):
            reason = 'body must be {"bucket": ..., "keys": [...]}'
            return s3xml.error_response(400, "MalformedJSON", reason, request.path)
        if not bucket or len(keys) > MAX_KEYS:
            reason = f"need a bucket and at most {MAX_KEYS} keys"
            return s3xml.error_response(400, "InvalidArgument", reason, request.path)
        return bucket, keys

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


async def _write_tar(
    request: web.Request, keys: list[str], tasks: Sequence[asyncio.Future[Member]]
) -> web.StreamResponse:
    """Stream one tar member per key, in request order, as each fetch finishes."""
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "application/x-tar", "X-Amz-Request-Id": s3xml.request_id()}
    )
    await response.prepare(request)
    pending = bytearray()
    for key, task in zip(keys, tasks, strict=True):
        data, status, error = await task
        pax = None if status == 200 else {"robolake.status": str(status), "robolake.error": error}
        pending += _member(key, data if status == 200 else b"", pax)
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
            status = info.pax_headers.get("robolake.status")
            if status is not None:
                out.append((info.name, None, info.pax_headers.get("robolake.error", status)))
                continue
            fh = tar.extractfile(info)
            out.append((info.name, fh.read() if fh else b"", ""))
    return out
