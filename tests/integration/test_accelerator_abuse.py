"""200 anonymous abusive connections against the stack's accelerator, while a signed client reads.

The abusers (asyncio, in a thread of their own) keep 200 connections busy for ABUSE_S seconds:
uploads cut off mid-chunk, 64 MB bodies (a PUT, a batch GET, a GET with a body), and requests
whose headers never end. Meanwhile a signed boto3 client reads small objects (cached and not),
/health is polled and the accelerator's RSS sampled. Sized for a 2-core machine shared with
MinIO and lakeFS: the bodies are sent as fast as the accelerator takes them, nothing more.

The bound asserted: RSS stays below the memory tier's budget plus RSS_BOUND_MIB (the process as
it starts, about 50 MiB, plus the growth below), and it grows by less than GROWTH_BOUND_MIB while
the abuse lasts: 512 KiB per connection (aiohttp's read buffer, at most two 64 KiB reads held,
the upstream write buffer and the chunk in flight, each under 128 KiB). Anonymous bodies are
streamed, never held (the request-body budget is for verified writes only). Measured on 2 cores:
about 50 MiB at the start, 115 MiB at the peak; the code as it was reached 4 GiB and /health 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest
import requests

from robolake.stack.native import NativeStack
from tests.conftest import s3_client
from tests.integration.test_accelerator_hardening import accelerator_pid, rss_mib

pytestmark = pytest.mark.integration
BUCKET = "robolake-test-abuse"
CONNECTIONS = 200
ABUSE_S = 20.0
BIG = 64 << 20
GROWTH_BOUND_MIB = CONNECTIONS * 512 // 1024
RSS_BOUND_MIB = 64 + GROWTH_BOUND_MIB


async def _aborted_uploads(host: str, port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"PUT /{BUCKET}/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\nzzz".encode()
            )
            await asyncio.sleep(0.3)
            writer.transport.abort()


async def _big_bodies(host: str, port: int, stop: threading.Event, head: str) -> None:
    chunk = bytes(256 * 1024)
    while not stop.is_set():
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"{head}Host: x\r\nContent-Length: {BIG}\r\n\r\n".encode())
            answer = asyncio.ensure_future(reader.read(1))
            sent = 0
            while sent < BIG and not answer.done() and not stop.is_set():
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            answer.cancel()
            writer.transport.abort()
        await asyncio.sleep(0.05)


async def _partial_headers(host: str, port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET /{BUCKET}/k HTTP/1.1\r\nHost: x\r\n".encode())
            while not stop.is_set() and not reader.at_eof():
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1), 2.0)
            writer.transport.abort()


def abuse(endpoint: str, stop: threading.Event) -> None:
    """Run CONNECTIONS abusers until `stop` is set."""
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    heads = (
        f"PUT /{BUCKET}/big HTTP/1.1\r\n",
        "POST /_robolake/batch HTTP/1.1\r\n",
        f"GET /{BUCKET}/small HTTP/1.1\r\n",
    )
    kinds: list[Callable[[], Awaitable[None]]] = [
        lambda: _aborted_uploads(host, port, stop),
        lambda: _partial_headers(host, port, stop),
        *(lambda head=head: _big_bodies(host, port, stop, head) for head in heads),  # type: ignore[misc]
    ]

    async def main() -> None:
        await asyncio.gather(*(kinds[i % len(kinds)]() for i in range(CONNECTIONS)), return_exceptions=True)

    asyncio.run(main())


def wait_all_nodes_healthy(admin: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while requests.get(f"{admin}/health", timeout=5).json()["healthy_nodes"] != 3:
        assert time.monotonic() < deadline, "the stack's MinIO nodes are not all healthy"
        time.sleep(0.5)


def test_anonymous_abuse_does_not_degrade_signed_reads(stack: NativeStack) -> None:
    s = stack.settings
    pid = accelerator_pid(stack)
    wait_all_nodes_healthy(s.accelerator_admin_endpoint)  # an earlier test's node loss may still be on probation
    client = s3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password)
    direct = s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)
    if BUCKET not in {b["Name"] for b in direct.list_buckets()["Buckets"]}:
        client.create_bucket(
            Bucket=BUCKET
        )  # through the accelerator: subscribed to MinIO's notifications before it answers, so cached at once
    prefix = f"abuse-{uuid.uuid4().hex[:8]}"
    direct.put_object(Bucket=BUCKET, Key=f"{prefix}/hot.json", Body=b"hot")
    client.get_object(Bucket=BUCKET, Key=f"{prefix}/hot.json")["Body"].read()
    baseline = rss_mib(pid)

    stop = threading.Event()
    abusers = threading.Thread(target=abuse, args=(s.accelerator_endpoint, stop), daemon=True)
    abusers.start()
    latencies: list[float] = []
    failures: list[str] = []
    health: list[tuple[int, int]] = []
    peak = baseline
    started = time.monotonic()
    i = 0
    try:
        while time.monotonic() - started < ABUSE_S:
            i += 1
            for key in (f"{prefix}/hot.json", f"{prefix}/cold-{i}.json"):
                if key.endswith(f"cold-{i}.json"):
                    direct.put_object(Bucket=BUCKET, Key=key, Body=b"cold")
                t0 = time.monotonic()
                try:
                    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                    if body not in (b"hot", b"cold"):
                        failures.append(f"{key}: {body[:40]!r}")
                except Exception as exc:  # every failure counts, whatever botocore raises
                    failures.append(f"{key}: {exc}")
                latencies.append(time.monotonic() - t0)
            answer = requests.get(f"{s.accelerator_admin_endpoint}/health", timeout=5)
            health.append((answer.status_code, answer.json()["healthy_nodes"]))
            peak = max(peak, rss_mib(pid))
            time.sleep(0.1)
    finally:
        stop.set()
        abusers.join(timeout=30)

    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)]
    budget = s.accelerator_memory_mb
    print(
        f"\nsigned GETs: {len(latencies)}, p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
        f"RSS baseline {baseline:.0f} MiB, peak {peak:.0f} MiB (memory tier budget {budget} MiB)"
    )
    assert failures == []
    assert len(latencies) >= 20 and p95 < 2.0 and latencies[-1] < 10.0
    assert set(health) == {(200, 3)}, sorted(set(health))
    assert peak < budget + RSS_BOUND_MIB, f"RSS peaked at {peak:.0f} MiB"
    assert peak - baseline < GROWTH_BOUND_MIB, f"RSS grew {peak - baseline:.0f} MiB under abuse"
