"""The S3 handler's logic against a scripted MinIO: hits, 304/412/416, invalidation races, shutdown.

`FakeMinio` stands in for the cluster through the Upstream protocol: it answers a few S3 calls
from a dict, records every request (so a test can prove a hit by counting MinIO's requests), and
can hold one request after computing its answer, which is how a test makes a read race a write.
The handler runs in a real aiohttp server on a free loopback port; what MinIO itself answers is
the integration and conformance suites' business.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import re
import socket
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from yarl import URL

from robolake.accelerator import replay, s3xml
from robolake.accelerator.config import AcceleratorConfig
from robolake.accelerator.server import Accelerator
from robolake.accelerator.upstream import Node, NoHealthyNodeError, UpstreamPool, UpstreamRequest
from robolake.errors import ConfigError, ServiceUnavailableError
from robolake.sigv4 import EMPTY_SHA256, sign

AK, SECRET = "AK", "SECRET"
BUCKET = "b"


@dataclasses.dataclass
class FakeResponse:
    """An UpstreamResponse from a script."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    length: int | None = -1  # -1: len(body)
    released: bool = False

    @property
    def content_length(self) -> int | None:
        return len(self.body) if self.length == -1 else self.length

    async def read(self) -> bytes:
        return self.body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.body

    def release(self) -> None:
        self.released = True

    async def __aenter__(self) -> FakeResponse:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


@dataclasses.dataclass
class Hold:
    """Holds the next request for `target` (a target ending in `?`: any query), after its answer was
    computed, until `release` is set."""

    method: str
    target: str
    arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    release: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def matches(self, request: UpstreamRequest) -> bool:
        if request.method != self.method:
            return False
        return request.target.startswith(self.target) if self.target.endswith("?") else request.target == self.target


def etag_of(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


class FakeMinio:
    """A scripted Upstream: objects in a dict, every request recorded, one request held on demand."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.calls: list[UpstreamRequest] = []
        self.events: list[str] = []  # "cancelled <target>", "closed": the order things stopped in
        self.nodes = [Node("http://minio.test")]
        self.failing = False
        self._holds: list[Hold] = []

    def hold(self, method: str, target: str) -> Hold:
        held = Hold(method, target)
        self._holds.append(held)
        return held

    def gets(self, target: str) -> int:
        return sum(1 for c in self.calls if c.method in ("GET", "HEAD") and c.target.partition("?")[0] == target)

    async def start(self) -> None:
        self.events.append("started")

    async def close(self) -> None:
        self.events.append("closed")

    def healthy_count(self) -> int:
        return 0 if self.failing else 1

    async def request(self, request: UpstreamRequest, *, retry: bool, second_opinion: bool = False) -> FakeResponse:
        if self.failing:
            raise NoHealthyNodeError("no MinIO node answered GET (tried 1 of 1): refused")
        self.calls.append(request)
        body = request.body if isinstance(request.body, bytes) else b""
        answer = self._answer(request, body)
        held = next((h for h in self._holds if h.matches(request)), None)
        if held is not None:
            self._holds.remove(held)
            held.arrived.set()
            try:
                await held.release.wait()
            except asyncio.CancelledError:
                self.events.append(f"cancelled {request.target}")
                raise
        return answer

    def _answer(self, request: UpstreamRequest, body: bytes) -> FakeResponse:
        path, _, query = request.target.partition("?")
        bucket, key = s3xml.split_path(path)
        if request.method in ("PUT", "POST", "DELETE") and "authorization" not in request.headers:
            return FakeResponse(403, [("Content-Type", "application/xml")], b"<Error><Code>AccessDenied</Code></Error>")
        if request.method == "PUT" and key:
            self.objects[bucket, key] = body
            return FakeResponse(200, [("ETag", etag_of(body)), ("Server", "MinIO")])
        if request.method == "DELETE" and key:
            self.objects.pop((bucket, key), None)
            return FakeResponse(204, [("Server", "MinIO")])
        if request.method == "POST" and "delete" in parse_qs(query, keep_blank_values=True):
            for listed in re.findall(rb"<Key>(.*?)</Key>", body):
                self.objects.pop((bucket, listed.decode().replace("&amp;", "&")), None)
            return FakeResponse(200, [("Content-Type", "application/xml")], b"<DeleteResult/>")
        if request.method in ("GET", "HEAD") and key:
            return self._read(request, (bucket, key))
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if request.method == "GET" and params.get("list-type") == "2":
            return self._list(bucket, params)
        return FakeResponse(200, [("Content-Type", "application/xml")], b"<ListBucketResult/>")

    def _list(self, bucket: str, params: dict[str, str]) -> FakeResponse:
        """ListObjectsV2 with prefix, delimiter, start-after and max-keys, as MinIO pages it."""
        prefix, delimiter, after = params.get("prefix", ""), params.get("delimiter", ""), params.get("start-after", "")
        entries: dict[str, str | None] = {}  # name -> ETag (None: a common prefix)
        for (b, key), data in self.objects.items():
            if b != bucket or not key.startswith(prefix) or key <= after:
                continue
            folder = key.find(delimiter, len(prefix)) if delimiter else -1
            if folder >= 0:
                entries.setdefault(key[: folder + 1], None)
            else:
                entries[key] = etag_of(data)
        names = sorted(entries)
        page, truncated = names[: int(params.get("max-keys", "1000"))], len(names) > int(params.get("max-keys", "1000"))
        parts = [
            f"<Contents><Key>{n}</Key><ETag>{entries[n]}</ETag><Size>0</Size></Contents>"
            if entries[n] is not None
            else f"<CommonPrefixes><Prefix>{n}</Prefix></CommonPrefixes>"
            for n in page
        ]
        more = "<IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken>" if truncated else ""
        xml = f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{"".join(parts)}{more}</ListBucketResult>'
        return FakeResponse(200, [("Content-Type", "application/xml")], xml.encode())

    def _read(self, request: UpstreamRequest, key: tuple[str, str]) -> FakeResponse:
        """MinIO's answer, cut down to what these tests ask: preconditions, then the range."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        common = [("Server", "MinIO"), ("X-Amz-Request-Id", "FAKE"), ("Connection", "keep-alive")]
        if key not in self.objects:
            return FakeResponse(404, [*common, ("Content-Type", "application/xml")], b"<Error><Code>NoSuchKey</Code>")
        body = self.objects[key]
        etag = etag_of(body)
        meta = [*common, ("ETag", etag), ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Accept-Ranges", "bytes")]
        if headers.get("x-amz-checksum-mode") == "ENABLED":
            meta.append(("x-amz-checksum-crc32", "AAAAAA=="))
        if (want := headers.get("if-none-match")) and replay.etag_matches(want, etag):
            return FakeResponse(304, meta, length=None)
        if (want := headers.get("if-match")) and not replay.etag_matches(want, etag):
            return FakeResponse(412, common, b"<Error><Code>PreconditionFailed</Code></Error>")
        status, sent = 200, body
        if "range" in headers:
            wanted = replay.parse_range(headers["range"])
            span = wanted.span(len(body)) if wanted else None
            if span is None:
                return FakeResponse(416, common, b"<Error><Code>InvalidRange</Code></Error>")
            status, sent = 206, body[span[0] : span[1] + 1]
            meta.append(("Content-Range", f"bytes {span[0]}-{span[1]}/{len(body)}"))
        meta.append(("Content-Type", "application/json"))
        if request.method == "HEAD":
            return FakeResponse(status, meta, length=len(sent))
        return FakeResponse(status, meta, sent)


@dataclasses.dataclass
class Client:
    """Signed requests to the accelerator under test (sigv4 as botocore computes it)."""

    session: aiohttp.ClientSession
    host: str

    async def send(
        self, method: str, target: str, body: bytes = b"", *, signed: bool = True, **headers: str
    ) -> tuple[int, CIMultiDict[str], bytes]:
        path, _, query = target.partition("?")
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        if signed:
            pairs = [(k, v[0]) for k, v in parse_qs(query, keep_blank_values=True).items()]
            payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
            extra |= sign(method, path, pairs, self.host, AK, SECRET, payload_hash=payload)
        url = URL(f"http://{self.host}{target}", encoded=True)
        async with self.session.request(method, url, data=body or None, headers=extra) as response:
            return response.status, CIMultiDict(response.headers), await response.read()

    async def get(self, key: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
        return await self.send("GET", f"/{BUCKET}/{key}", **headers)


def config(tmp_path: Path, **overrides: Any) -> AcceleratorConfig:
    settings: dict[str, Any] = {
        "upstreams": ("http://minio.test",),
        "credentials": {AK: SECRET},
        "cache_dir": tmp_path / "cache",
        "disk_bytes": 0,
        "prefetch": False,
        "revalidate_after_s": 3600.0,
        **overrides,
    }
    return AcceleratorConfig(**settings)


@contextlib.asynccontextmanager
async def serving(accel: Accelerator) -> AsyncIterator[Client]:
    server = TestServer(accel.app())
    await server.start_server()
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            yield Client(session, f"127.0.0.1:{server.port}")
    finally:
        await server.close()


def scenario(
    tmp_path: Path, body: Callable[[Accelerator, FakeMinio, Client], Awaitable[None]], **overrides: Any
) -> None:
    """Run `body` against an accelerator in front of a FakeMinio holding b/k = b"v1"."""

    async def main() -> None:
        minio = FakeMinio()
        minio.objects[BUCKET, "k"] = b"v1"
        accel = Accelerator(config(tmp_path, **overrides), upstream=minio)
        async with serving(accel) as client:
            await body(accel, minio, client)

    asyncio.run(main())


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


def test_a_hit_asks_minio_nothing(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        status, headers, data = await client.get("k")
        assert (status, headers["X-Robolake-Cache"], data) == (200, "miss", b"v1")
        copy, _ = accel.cache.lookup((BUCKET, "k"))
        assert copy is not None and copy.etag == etag_of(b"v1")
        assert not {n.lower() for n, _ in copy.headers} & {"connection", "x-amz-request-id", "content-length"}
        for _ in range(3):
            status, headers, data = await client.get("k")
            assert (status, headers["X-Robolake-Cache"], data) == (200, "hit-memory", b"v1")
            assert headers["X-Amz-Request-Id"] != "FAKE"  # one per answer, never MinIO's old one
        assert minio.gets("/b/k") == 1
        assert accel.metrics.counters["requests_hit_memory"] == 3

    scenario(tmp_path, body)


def test_if_none_match_is_a_304_from_cache_and_if_match_other_is_minios_412(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        await client.get("k")
        status, headers, data = await client.get("k", If_None_Match=etag_of(b"v1"))
        assert (status, headers["X-Robolake-Cache"], data) == (304, "hit-memory", b"")
        assert headers["ETag"] == etag_of(b"v1") and "Content-Type" not in headers  # MinIO's 304 header set
        assert minio.gets("/b/k") == 1
        status, headers, _ = await client.get("k", If_Match='"other"')
        assert status == 412 and "X-Robolake-Cache" not in headers
        assert minio.gets("/b/k") == 2  # MinIO wrote the error

    scenario(tmp_path, body)


def test_ranges_past_the_end_and_odd_ones_are_minios_416(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        await client.get("k")
        status, headers, data = await client.get("k", Range="bytes=1-")
        assert (status, headers["Content-Range"], data, headers["X-Robolake-Cache"]) == (
            206,
            "bytes 1-1/2",
            b"1",
            "hit-memory",
        )
        status, _, _ = await client.get("k", Range="bytes=5-")
        assert status == 416 and minio.gets("/b/k") == 2
        status, _, _ = await client.get("k", Range="bytes=1-0")  # reversed: MinIO's at once, no lookup
        assert status == 416 and minio.gets("/b/k") == 3
        assert accel.metrics.counters["requests_passthrough_conditional"] == 1

    scenario(tmp_path, body)


def test_a_fill_that_raced_a_write_is_not_stored(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        held = minio.hold("GET", "/b/k")
        read = asyncio.create_task(client.get("k"))
        await held.arrived.wait()  # MinIO has read v1; the answer is on its way
        assert (await client.send("PUT", "/b/k", b"v2"))[0] == 200
        held.release.set()
        assert (await read)[2] == b"v1"  # it raced the write: old bytes once, to that reader
        status, headers, data = await client.get("k")
        assert (status, headers["X-Robolake-Cache"], data) == (200, "miss", b"v2")
        assert accel.metrics.counters["fill_dropped_after_invalidation"] == 1
        assert (await client.get("k"))[1]["X-Robolake-Cache"] == "hit-memory"

    scenario(tmp_path, body)


def test_a_revalidation_that_raced_a_write_does_not_bring_the_old_copy_back(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        await client.get("k")
        check = minio.hold("GET", "/b?")
        assert (await client.get("k"))[1]["X-Robolake-Cache"] == "hit-memory"  # old: checked in the background
        await check.arrived.wait()  # MinIO listed v1's ETag, still in flight
        await client.send("PUT", "/b/k", b"v2")
        assert (await client.get("k"))[2] == b"v2"  # refilled with v2
        check.release.set()
        await until(lambda: accel.metrics.counters["revalidated_unchanged"] >= 1)
        _, headers, data = await client.get("k")
        assert (data, headers["X-Robolake-Cache"]) == (b"v2", "hit-memory")

    scenario(tmp_path, body, revalidate_after_s=0.0)


def test_a_revalidation_that_finds_a_change_drops_the_copy(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        await client.get("k")
        minio.objects[BUCKET, "k"] = b"v2"  # behind the accelerator's back, no notification
        assert (await client.get("k"))[2] == b"v1"  # answered at once, checked in the background
        await until(lambda: accel.metrics.counters["revalidated_changed"] == 1)
        _, headers, data = await client.get("k")
        assert (data, headers["X-Robolake-Cache"]) == (b"v2", "miss")
        assert accel.metrics.counters["invalidation_revalidation"] == 1

    scenario(tmp_path, body, revalidate_after_s=0.0)


def test_multi_delete_invalidates_each_listed_key_and_no_other(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        minio.objects[BUCKET, "a&b"] = b"x"
        minio.objects[BUCKET, "keep"] = b"y"
        for key in ("k", "a%26b", "keep"):
            await client.get(key)
        xml = b"<Delete><Object><Key>k</Key></Object><Object><Key>a&amp;b</Key></Object></Delete>"
        assert (await client.send("POST", "/b?delete", xml))[0] == 200
        assert (await client.get("k"))[0] == 404
        assert (await client.get("a%26b"))[0] == 404
        assert (await client.get("keep"))[1]["X-Robolake-Cache"] == "hit-memory"
        assert accel.metrics.counters["invalidation_write"] == 2  # two keys, once MinIO has answered

    scenario(tmp_path, body)


def test_a_bucket_level_write_drops_the_whole_bucket(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        await client.get("k")
        await client.send("PUT", "/b?policy", b"{}")
        assert (await client.get("k"))[1]["X-Robolake-Cache"] == "miss"
        assert accel.metrics.counters["invalidation_bucket_write"] == 1

    scenario(tmp_path, body)


def test_a_write_minio_refuses_invalidates_nothing(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        await client.get("k")
        assert (await client.get("k"))[1]["X-Robolake-Cache"] == "hit-memory"
        for method, target, sent in (("DELETE", "/b/k", b""), ("PUT", "/b/k", b"v2"), ("DELETE", "/b", b"")):
            assert (await client.send(method, target, sent, signed=False))[0] == 403
        xml = b"<Delete><Object><Key>k</Key></Object></Delete>"
        assert (await client.send("POST", "/b?delete", xml, signed=False))[0] == 403
        assert (await client.get("k"))[1]["X-Robolake-Cache"] == "hit-memory"
        assert not any(name.startswith("invalidation") for name in accel.metrics.counters)
        assert accel.cache.epochs.tracked() == (0, 0)

    scenario(tmp_path, body)


def test_unsigned_reads_are_minios_to_answer_and_never_cached(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        await client.get("k")  # cached
        for _ in range(2):
            status, headers, _ = await client.send("GET", "/b/k", signed=False)
            assert status == 200 and "X-Robolake-Cache" not in headers
        assert minio.gets("/b/k") == 3 and accel.metrics.counters["unverified_passthrough"] == 2

    scenario(tmp_path, body)


def test_no_healthy_node_is_an_s3_503(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        minio.failing = True
        status, _, data = await client.get("k")
        assert status == 503 and b"<Code>ServiceUnavailable</Code>" in data and b"tried 1 of 1" in data
        assert accel.metrics.counters["upstream_unavailable"] == 1

    scenario(tmp_path, body)


def test_batch_get_fills_through_the_same_path(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        doc = json.dumps({"bucket": BUCKET, "keys": ["k", "missing"]}).encode()
        status, _, data = await client.send("POST", "/_robolake/batch", doc)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = [(m.name, m.pax_headers.get("robolake.error", "")) for m in tar]
        assert status == 200 and members == [("k", ""), ("missing", "NoSuchKey")]
        assert [c.headers["x-amz-checksum-mode"] for c in minio.calls] == ["ENABLED", "ENABLED"]
        status, headers, _ = await client.get("k", x_amz_checksum_mode="ENABLED")
        assert headers["X-Robolake-Cache"] == "hit-memory" and headers["x-amz-checksum-crc32"] == "AAAAAA=="

    scenario(tmp_path, body)


def test_prefetch_fills_the_siblings_of_a_read(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        for sensor in ("pose", "gripper"):
            for episode in range(3):
                minio.objects[BUCKET, f"{sensor}/episode_{episode:05d}.json"] = f"{sensor}{episode}".encode()
        await client.get("pose/episode_00000.json")
        await client.get("gripper/episode_00000.json")
        assert accel.prefetcher is not None
        await until(lambda: accel.prefetcher is not None and accel.prefetcher.state()["inflight"] == 0)
        _, headers, data = await client.get("pose/episode_00001.json")
        assert (data, headers["X-Robolake-Cache"]) == (b"pose1", "hit-memory")
        assert accel.metrics.counters["prefetch_used"] == 1

    scenario(tmp_path, body, prefetch=True)


def test_old_copies_are_checked_by_a_listing_per_folder_not_a_request_per_key(tmp_path: Path) -> None:
    keys = [f"f/{n:04d}" for n in range(1200)] + ["g/x", "g/y", "top"]  # f/ takes two pages

    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        for key in keys:
            minio.objects[BUCKET, key] = key.encode()
            await client.get(key)  # cached
        minio.objects[BUCKET, "f/0005"] = b"changed"  # behind the accelerator's back, no notification
        del minio.objects[BUCKET, "f/1100"]
        minio.objects[BUCKET, "g/y"] = b"changed too"
        minio.calls.clear()
        for key in keys:  # every copy old: answered from the cache, checked in the background
            assert (await client.get(key))[1]["X-Robolake-Cache"] == "hit-memory"
        counters = accel.metrics.counters
        await until(lambda: counters["revalidated_changed"] + counters["revalidated_unchanged"] == len(keys))
        assert counters["revalidated_changed"] == 3 and counters["revalidation_failed"] == 0
        listings = [c for c in minio.calls if "list-type=2" in c.target]
        assert len(listings) <= len(keys) // 20 and len(minio.calls) == len(listings)  # no per-key request at all
        assert (await client.get("f/0005"))[2] == b"changed" and (await client.get("g/y"))[2] == b"changed too"
        assert (await client.get("f/1100"))[0] == 404
        assert (await client.get("f/0006"))[1]["X-Robolake-Cache"] == "hit-memory"  # refreshed, not dropped

    scenario(tmp_path, body, revalidate_after_s=0.0)


def test_a_folders_listing_refreshes_every_copy_it_lists_unchanged_so_the_folder_is_listed_once(
    tmp_path: Path,
) -> None:
    # Random reads over a large folder of old copies gathered a few keys at a time, and each group
    # had MinIO list the folder again (a fresh walk of it per page): the bulk of MinIO's CPU in a
    # warm benchmark. A page now refreshes every copy it lists with its own ETag.
    keys = [f"f/{n:04d}" for n in range(300)]

    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        for key in keys:
            minio.objects[BUCKET, key] = key.encode()
            await client.get(key)
        minio.objects[BUCKET, "f/0100"] = b"changed"  # behind the accelerator's back, no notification
        await asyncio.sleep(1.6)  # every copy old
        minio.calls.clear()
        await client.get("f/0000")
        counters = accel.metrics.counters
        await until(lambda: counters["revalidated_unchanged"] == 1)
        assert counters["revalidated_listed"] == len(keys) - 2  # all but f/0000 (gathered) and f/0100
        for key in keys:
            await client.get(key)  # fresh again, but for f/0100: its own check drops it
        await until(lambda: counters["revalidated_changed"] == 1)
        assert len([c for c in minio.calls if "list-type=2" in c.target]) == 2
        assert (await client.get("f/0100"))[2] == b"changed"

    scenario(tmp_path, body, revalidate_after_s=1.5)


def test_a_copy_read_while_its_folder_is_listed_is_judged_by_the_page_that_covered_it(tmp_path: Path) -> None:
    # 16 clients reading a working set of old copies keep gathering keys while the pages are
    # listed; relisting the pages behind for them went back and forth for as long as the reads went on.
    keys = [f"f/{n:04d}" for n in range(1200)]  # two pages

    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        for key in keys:
            minio.objects[BUCKET, key] = key.encode()
            await client.get(key)
        minio.calls.clear()
        first = minio.hold("GET", f"/{BUCKET}?")
        await client.get("f/0000")  # old: its folder is listed, one key on each page
        await client.get("f/1100")
        await first.arrived.wait()
        second = minio.hold("GET", f"/{BUCKET}?")
        first.release.set()
        await second.arrived.wait()  # page 1 judged; page 2 in flight
        minio.objects[BUCKET, "f/0010"] = b"changed after page 1 was listed"
        await client.get("f/0010")  # gathered now, behind the page in flight
        second.release.set()
        counters = accel.metrics.counters
        await until(lambda: counters["revalidated_unchanged"] + counters["revalidated_changed"] == 3)
        assert len([c for c in minio.calls if "list-type=2" in c.target]) == 2  # not a third time from f/0010
        assert counters["revalidated_unchanged"] == 3  # f/0010 as page 1 saw it; its notification drops it

    scenario(tmp_path, body, revalidate_after_s=0.0)


def test_shutdown_cancels_and_awaits_background_work_before_closing_minio(tmp_path: Path) -> None:
    async def main() -> None:
        minio = FakeMinio()
        minio.objects[BUCKET, "k"] = b"v1"
        accel = Accelerator(config(tmp_path, prefetch=True, revalidate_after_s=0.0), upstream=minio)
        async with serving(accel) as client:
            await client.get("k")
            check = minio.hold("GET", "/b?")
            await client.get("k")
            await check.arrived.wait()  # a revalidation in flight, two idle prefetch workers
        assert [e.partition("?")[0] for e in minio.events] == ["started", "cancelled /b", "closed"]
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    asyncio.run(main())


def test_stats_and_metrics_keep_their_shape(tmp_path: Path) -> None:
    async def body(accel: Accelerator, minio: FakeMinio, client: Client) -> None:
        await client.get("k")
        await client.get("k")
        doc = accel.stats()
        shape = {
            "uptime_s",
            "hit_ratio",
            "tiers",
            "memory",
            "disk",
            "events",
            "prefetch",
            "nodes",
            "latency",
            "config",
            "epochs",
            "users",  # the team users file in force (None without one)
        }
        assert set(doc) == shape
        assert doc["hit_ratio"] == 0.5 and doc["prefetch"] is None and set(doc["tiers"]) == {"memory"}
        disk = {"objects": 0, "used_bytes": 0, "max_bytes": 0, "dir": str(tmp_path / "cache"), "restored_at_start": 0}
        assert doc["disk"] == disk

    scenario(tmp_path, body)


def test_an_unusable_cache_dir_is_a_config_error_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigError, match="--cache-dir"):
        Accelerator(config(tmp_path, cache_dir=tmp_path / "file", disk_bytes=1 << 20), upstream=FakeMinio())


def test_no_healthy_node_error_is_in_the_error_tree_and_keeps_its_cause() -> None:
    async def main() -> None:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        pool = UpstreamPool([f"http://127.0.0.1:{port}"])
        await pool.start()
        try:
            with pytest.raises(NoHealthyNodeError) as info:
                await pool.request(UpstreamRequest("GET", "/b/k", {}), retry=True)
        finally:
            await pool.close()
        assert isinstance(info.value, ServiceUnavailableError)
        assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)

    asyncio.run(main())
