"""Batch GET: one signed request returns many small objects as a tar stream, in request order.

    POST /_robolake/batch      body: {"bucket": "umi-raw", "keys": ["pose/episode_00001.json", ...]}
    200 application/x-tar      one member per requested key, in order; a key that could not be
                               read is a zero-length member whose PAX header carries
                               `robolake.status` (e.g. 404) and `robolake.error` (e.g. NoSuchKey)

The request must be SigV4-signed with its body hash (not UNSIGNED-PAYLOAD) by a principal whose
secret the accelerator holds; members are answered from the cache, misses fetched from MinIO
concurrently (bounded) and cached. Objects above the size threshold are fetched but not cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from robolake.accelerator import s3xml
from robolake.accelerator.cache import CachedObject, ObjectKey
from robolake.accelerator.replay import CHECKSUM_MODE
from robolake.accelerator.upstream import response_headers
from robolake.sigv4 import Verified, sign

if TYPE_CHECKING:
    from robolake.accelerator.server import Accelerator

MAX_KEYS = 10_000
FETCH_CONCURRENCY = 16


def _member(name: str, data: bytes, pax: dict[str, str] | None = None) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    if pax:
        info.pax_headers = pax
    header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")
    padding = (-len(data)) % tarfile.BLOCKSIZE
    return header + data + b"\0" * padding


async def handle_batch(accel: Accelerator, request: web.Request) -> web.StreamResponse:
    body = await request.read()
    path, _, query = request.raw_path.partition("?")
    result = accel.verifier.verify(request.method, path, query, request.headers)
    if not isinstance(result, Verified):
        return s3xml.error_response(403, "AccessDenied", f"batch GET needs a valid signature ({result.reason})",
                                    request.path)
    if result.payload_hash != hashlib.sha256(body).hexdigest():
        return s3xml.error_response(400, "XAmzContentSHA256Mismatch",
                                    "batch GET must be signed over its body", request.path)
    try:
        doc = json.loads(body)
        bucket = str(doc["bucket"])
        keys = [str(k) for k in doc["keys"]]
    except (ValueError, KeyError, TypeError):
        return s3xml.error_response(400, "MalformedJSON", 'body must be {"bucket": ..., "keys": [...]}', request.path)
    if not bucket or len(keys) > MAX_KEYS:
        return s3xml.error_response(400, "InvalidArgument", f"need a bucket and at most {MAX_KEYS} keys",
                                    request.path)
    accel.metrics.inc("batch_keys", len(keys))
    limiter = asyncio.Semaphore(FETCH_CONCURRENCY)
    access_key, secret = next(iter(accel.config.credentials.items()))

    async def one(key: ObjectKey) -> tuple[bytes, int, str]:
        obj, tier = accel.lookup(key)
        if obj is not None:
            accel.metrics.inc(f"batch_hit_{tier}")
            return obj.body, 200, ""
        async with limiter:
            return await _fetch(accel, key, access_key, secret)

    tasks = [asyncio.ensure_future(one((bucket, k))) for k in keys]
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar",
                                                       "X-Amz-Request-Id": s3xml.request_id()})
    await response.prepare(request)
    try:
        pending = bytearray()
        for key, task in zip(keys, tasks, strict=True):
            data, status, error = await task
            pax = None if status == 200 else {"robolake.status": str(status), "robolake.error": error}
            pending += _member(key, data if status == 200 else b"", pax)
            if len(pending) >= 256 * 1024:
                await response.write(bytes(pending))
                pending.clear()
        pending += b"\0" * (2 * tarfile.BLOCKSIZE)
        await response.write(bytes(pending))
    finally:
        for task in tasks:
            task.cancel()
    await response.write_eof()
    return response


async def _fetch(accel: Accelerator, key: ObjectKey, access_key: str, secret: str) -> tuple[bytes, int, str]:
    epoch = accel.invalidations.epoch(key)
    path = "/" + quote(key[0], safe="") + "/" + quote(key[1], safe="/~")
    host = f"{accel.config.host}:{accel.config.port}"
    headers = {"Host": host, **sign("GET", path, [], host, access_key, secret, region=accel.config.region,
                                    extra_headers={CHECKSUM_MODE: "ENABLED"})}  # a complete copy: see prefetch
    _, response = await accel.upstream.request("GET", path, headers, None, retry=True, second_opinion=True)
    async with response:
        body = await response.read()
        if response.status != 200:
            code = _error_code(body) or f"HTTP{response.status}"
            accel.metrics.inc("batch_missing")
            return b"", response.status, code
        if len(body) <= accel.config.max_object_bytes:
            obj = CachedObject.from_response(body, response_headers(response), checksums_asked=True,
                                             validated_at=time.time())
            accel.store(key, obj, epoch)
        accel.metrics.inc("batch_miss")
        return body, 200, ""


def _error_code(body: bytes) -> str:
    start = body.find(b"<Code>")
    end = body.find(b"</Code>")
    return body[start + 6:end].decode(errors="replace") if 0 <= start < end else ""


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
