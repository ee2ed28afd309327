"""Client helpers for the accelerator's own API (batch GET); plain S3 calls need nothing special.

Usage:

    from robolake.accelerator.client import BatchClient
    client = BatchClient("http://127.0.0.1:9000", access_key, secret_key)
    for item in client.get_batch("umi-raw", ["pose/episode_00001.json", "gripper/episode_00001.json"]):
        if item.ok: use(item.body)
        else: print(item.key, item.error)   # e.g. NoSuchKey
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from urllib.parse import urlsplit

import requests

from robolake.accelerator.batch import parse_batch
from robolake.errors import AuthError, RobolakeError, ServiceUnavailableError
from robolake.sigv4 import sign
from robolake.storage.reader import GetResult, ObjectReader

BATCH_PATH = "/_robolake/batch"


@dataclasses.dataclass(frozen=True)
class BatchItem:
    key: str
    body: bytes | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.body is not None


class BatchClient:
    """Fetch many small objects in one request (a tar stream, in request order)."""

    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, *, region: str = "us-east-1", timeout_s: float = 60.0
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def signed_request(self, bucket: str, keys: list[str]) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a signed batch request (for custom async clients too)."""
        body = json.dumps({"bucket": bucket, "keys": keys}).encode()
        headers = sign(
            "POST",
            BATCH_PATH,
            [],
            self.host,
            self.access_key,
            self.secret_key,
            payload_hash=hashlib.sha256(body).hexdigest(),
            region=self.region,
            extra_headers={"content-type": "application/json"},
        )
        return body, headers

    def get_batch(self, bucket: str, keys: list[str]) -> list[BatchItem]:
        body, headers = self.signed_request(bucket, keys)
        url = self.endpoint + BATCH_PATH
        try:
            response = self.session.post(url, data=body, headers=headers, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise ServiceUnavailableError(f"the accelerator at {self.endpoint} does not answer: {exc}") from exc
        if response.status_code == 403:
            raise AuthError(
                f"the accelerator at {self.endpoint} refused the batch request for access key "
                f"{self.access_key!r} (HTTP 403): {response.text[:200]}"
            )
        if response.status_code != 200:
            raise RobolakeError(
                f"batch GET of {len(keys)} keys from {bucket!r} failed: HTTP "
                f"{response.status_code}: {response.text[:200]}"
            )
        return [BatchItem(k, b, e) for k, b, e in parse_batch(io.BytesIO(response.content))]


class AsyncBatchClient:
    """Batch GET from asyncio code, over an ObjectReader's pooled raw connections (cheap per request)."""

    def __init__(self, reader: ObjectReader) -> None:
        self.reader = reader

    async def get_batch(self, bucket: str, keys: list[str]) -> tuple[list[BatchItem], GetResult]:
        """The members in request order, and the raw answer (timings, size)."""
        body = json.dumps({"bucket": bucket, "keys": keys}).encode()
        result = await self.reader.send("POST", BATCH_PATH, body=body, headers={"content-type": "application/json"})
        return [BatchItem(k, b, e) for k, b, e in parse_batch(io.BytesIO(result.body))], result
