"""A small asyncio S3 client: one aiohttp session, requests signed with our own SigV4 `sign()`.

Why not boto3: a boto3 thread pool spends 1.5-2.6 ms of client CPU per small GET or PUT on this
2-core machine, AsyncS3 0.33-0.90 ms (measured with ``python -m robolake.bench.clients``; the
figures are in the package docstring), and where clients and servers share two cores,
small-object throughput is decided by client CPU. For large response bodies use ObjectReader:
`request` reads a body whole.

Bodies are sent with ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` (MinIO accepts it over plain
http, as S3 does over https) plus a signed ``Content-MD5``, so the body is still checked by the
server without a second SHA-256 pass over it. Small XML bodies we build are signed in full.

Every request goes through `call()`, which applies the client's RetryPolicy; aiohttp's exceptions
are mapped to `S3Error(status=0)` here and never escape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import random
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, canonical_query, sign
from robolake.storage.errors import S3Error, error_for, no_answer
from robolake.storage.integrity import content_md5, md5_of, normalise_etag
from robolake.storage.retry import RetryPolicy

T = TypeVar("T")
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def normalise_endpoint(value: str) -> str:
    """``HOST:PORT`` or ``http(s)://HOST:PORT`` → ``http(s)://HOST:PORT``; ConfigError otherwise."""
    raw = value.strip()
    url = raw if "://" in raw else f"http://{raw}"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(
            f"endpoint {value!r} is not HOST:PORT (or http://HOST:PORT); e.g. 127.0.0.1:9000 for the accelerator"
        )
    return f"{parts.scheme}://{parts.netloc}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class S3Target:
    """Where to send requests and as whom."""

    endpoint: str
    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    region: str = "us-east-1"

    @classmethod
    def from_settings(cls, settings: Settings, endpoint: str | None = None) -> S3Target:
        """The stack's root credentials; `endpoint` defaults to the accelerator."""
        return cls(
            endpoint=normalise_endpoint(endpoint or settings.accelerator_endpoint),
            access_key=settings.minio_root_user,
            secret_key=settings.minio_root_password,
        )

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """One listed or HEADed object. `metadata` is None when the server did not report user metadata."""

    key: str
    size: int
    etag: str  # normalised: no quotes, lower case
    last_modified: str
    metadata: dict[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


def object_path(bucket: str, key: str = "") -> str:
    """The encoded request path; SigV4's canonical URI of it is the same string."""
    return f"/{bucket}/{quote(key, safe='/~')}" if key else f"/{bucket}"


def _error_fields(body: bytes) -> tuple[str, str]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", body[:200].decode("utf-8", "replace")
    return root.findtext("Code") or "", root.findtext("Message") or ""


def answer_error(
    target: S3Target, method: str, what: str, status: int, body: bytes, headers: Mapping[str, str]
) -> RobolakeError:
    """The error for a non-2xx answer: its XML body's code and message (MinIO's header for HEAD)."""
    code, message = _error_fields(body) if body else (headers.get("x-minio-error-code", ""), "")
    return error_for(method, what, target.endpoint, status, code, message, access_key=target.access_key)


class AsyncS3:
    """S3 requests over one aiohttp session. Use as ``async with AsyncS3(target) as s3:``."""

    def __init__(
        self,
        target: S3Target,
        *,
        connections: int = 64,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
        seed: int | None = None,
    ) -> None:
        self.target = target
        self.retry = retry or RetryPolicy()
        self.retries = 0  # retried attempts, for reports
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self._host = target.host

    async def __aenter__(self) -> AsyncS3:
        connector = aiohttp.TCPConnector(
            limit=self._connections, limit_per_host=self._connections, keepalive_timeout=30, enable_cleanup_closed=True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- one request, then the retry loop ---------------------------------------------------

    async def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        payload_hash: str = EMPTY_SHA256,
        ok: tuple[int, ...] = (200,),
    ) -> Response:
        """Send one signed request; raise S3Error (or AuthError) unless the status is in `ok`."""
        if self._session is None:
            raise RuntimeError("AsyncS3 is used outside `async with`")
        path = object_path(bucket, key)
        qs = canonical_query(query)
        signed = sign(
            method,
            path,
            list(query),
            self._host,
            self.target.access_key,
            self.target.secret_key,
            payload_hash=payload_hash,
            region=self.target.region,
            extra_headers=headers,
        )
        url = URL(f"{self.target.endpoint}{path}?{qs}" if qs else f"{self.target.endpoint}{path}", encoded=True)
        target = f"{bucket}/{key}" if key else bucket
        try:
            async with self._session.request(method, url, data=body, headers=signed, allow_redirects=False) as resp:
                data = await resp.read()
                status, resp_headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise no_answer(method, target, self.target.endpoint, exc) from exc
        if status in ok:
            return Response(status, resp_headers, data)
        raise answer_error(self.target, method, target, status, data, resp_headers)

    async def call(self, attempt_fn: Callable[[], Awaitable[T]], *, policy: RetryPolicy | None = None) -> T:
        """Run `attempt_fn` until it succeeds or the policy says stop (then re-raise its error)."""
        policy = policy or self.retry
        attempt = 1
        while True:
            try:
                return await attempt_fn()
            except Exception as exc:
                if not policy.should_retry(exc, attempt):
                    raise
                self.retries += 1
                await asyncio.sleep(policy.delay_s(attempt, self._rng))
                attempt += 1

    # ---- S3 operations -----------------------------------------------------------------------

    async def put_object(
        self, bucket: str, key: str, body: bytes, *, content_md5: str, headers: Mapping[str, str] | None = None
    ) -> str:
        """One attempt at a PUT with Content-MD5; returns the normalised ETag."""
        extra = {"content-md5": content_md5, **(headers or {})}
        response = await self.request("PUT", bucket, key, body=body, headers=extra, payload_hash=UNSIGNED_PAYLOAD)
        return normalise_etag(response.headers.get("ETag", ""))

    async def head_object(self, bucket: str, key: str) -> ObjectInfo | None:
        response = await self.request("HEAD", bucket, key, ok=(200, 404))
        if response.status == 404:
            return None
        h = response.headers
        meta = {k[len("x-amz-meta-") :].lower(): v for k, v in h.items() if k.lower().startswith("x-amz-meta-")}
        return ObjectInfo(
            key, int(h.get("Content-Length", "0")), normalise_etag(h.get("ETag", "")), h.get("Last-Modified", ""), meta
        )

    async def get_object(self, bucket: str, key: str) -> bytes:
        return (await self.request("GET", bucket, key)).body

    async def create_bucket(self, bucket: str) -> bool:
        """Create `bucket`; False if it already exists and is ours."""
        try:
            await self.request("PUT", bucket)
        except S3Error as exc:
            if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            raise
        return True

    async def list_page(
        self,
        bucket: str,
        prefix: str,
        *,
        delimiter: str = "",
        token: str = "",
        max_keys: int = 1000,
        metadata: bool = True,
    ) -> tuple[list[ObjectInfo], str, int]:
        """One ListObjectsV2 page: (objects, next continuation token or "", response bytes).

        `metadata` adds MinIO's ``metadata=true`` extension (user metadata in the listing);
        other servers ignore it and `ObjectInfo.metadata` stays None.
        """
        query = [("list-type", "2"), ("prefix", prefix), ("max-keys", str(max_keys))]
        if delimiter:
            query.append(("delimiter", delimiter))
        if token:
            query.append(("continuation-token", token))
        if metadata:
            query.append(("metadata", "true"))
        response = await self.request("GET", bucket, query=query)
        objects, next_token = parse_list(response.body)
        return objects, next_token, len(response.body)

    async def list_objects(
        self, bucket: str, prefix: str, *, delimiter: str = "", metadata: bool = True
    ) -> list[ObjectInfo]:
        """Every object under `prefix` (direct children only with `delimiter="/"`), each page retried."""
        out: list[ObjectInfo] = []
        token = ""
        while True:
            page, token, _ = await self.call(
                functools.partial(self.list_page, bucket, prefix, delimiter=delimiter, token=token, metadata=metadata)
            )
            out.extend(page)
            if not token:
                return out

    async def create_multipart_upload(self, bucket: str, key: str, headers: Mapping[str, str]) -> str:
        response = await self.request("POST", bucket, key, query=[("uploads", "")], headers=headers)
        upload_id = ET.fromstring(response.body).findtext(f"{_NS}UploadId") or ""
        if not upload_id:
            raise S3Error(
                f"POST {bucket}/{key}?uploads returned no UploadId",
                status=response.status,
                method="POST",
                target=f"{bucket}/{key}",
            )
        return upload_id

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, body: bytes, content_md5: str
    ) -> str:
        response = await self.request(
            "PUT",
            bucket,
            key,
            query=[("partNumber", str(number)), ("uploadId", upload_id)],
            body=body,
            headers={"content-md5": content_md5},
            payload_hash=UNSIGNED_PAYLOAD,
        )
        return normalise_etag(response.headers.get("ETag", ""))

    async def complete_multipart_upload(self, bucket: str, key: str, upload_id: str, etags: Sequence[str]) -> str:
        parts = "".join(
            f'<Part><PartNumber>{n}</PartNumber><ETag>"{e}"</ETag></Part>' for n, e in enumerate(etags, start=1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        response = await self.request(
            "POST",
            bucket,
            key,
            query=[("uploadId", upload_id)],
            body=body,
            payload_hash=hashlib.sha256(body).hexdigest(),
        )
        root = ET.fromstring(response.body)
        if root.tag.endswith("Error"):  # S3 may report a failed completion inside a 200 response
            raise S3Error(
                f"completing {bucket}/{key} failed: {root.findtext('Code')} {root.findtext('Message')}",
                status=500,
                code=root.findtext("Code") or "InternalError",
                method="POST",
                target=f"{bucket}/{key}",
            )
        return normalise_etag(root.findtext(f"{_NS}ETag") or "")

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self.request("DELETE", bucket, key, query=[("uploadId", upload_id)], ok=(204, 200, 404))

    async def delete_objects(self, bucket: str, keys: Sequence[str]) -> None:
        """Delete up to 1000 keys in one request (quiet mode)."""
        if not keys:
            return
        items = "".join(f"<Object><Key>{_xml_escape(k)}</Key></Object>" for k in keys)
        body = f"<Delete><Quiet>true</Quiet>{items}</Delete>".encode()
        await self.request(
            "POST",
            bucket,
            query=[("delete", "")],
            body=body,
            headers={"content-md5": content_md5(md5_of(body))},
            payload_hash=hashlib.sha256(body).hexdigest(),
        )

    async def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many."""
        keys = [o.key for o in await self.list_objects(bucket, prefix, metadata=False)]
        for start in range(0, len(keys), 1000):
            await self.call(functools.partial(self.delete_objects, bucket, keys[start : start + 1000]))
        return len(keys)


def parse_list(body: bytes) -> tuple[list[ObjectInfo], str]:
    """Objects and the next continuation token from a ListObjectsV2 response."""
    root = ET.fromstring(body)
    objects = []
    for item in root.iter(f"{_NS}Contents"):
        meta_el = item.find(f"{_NS}UserMetadata")
        metadata = None
        if meta_el is not None:
            metadata = {}
            for child in meta_el:
                name = child.tag.removeprefix(_NS).lower()
                metadata[name.removeprefix("x-amz-meta-")] = child.text or ""
        objects.append(
            ObjectInfo(
                key=item.findtext(f"{_NS}Key") or "",
                size=int(item.findtext(f"{_NS}Size") or 0),
                etag=normalise_etag(item.findtext(f"{_NS}ETag") or ""),
                last_modified=item.findtext(f"{_NS}LastModified") or "",
                metadata=metadata,
            )
        )
    truncated = (root.findtext(f"{_NS}IsTruncated") or "false") == "true"
    token = root.findtext(f"{_NS}NextContinuationToken") or ""
    return objects, token if truncated else ""


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
