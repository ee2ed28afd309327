"""What each S3 client costs: requests/s and client CPU per request, boto3 vs AsyncS3 vs ObjectReader.

The measurement behind the client choice in the storage package docstring (and the signer's in
robolake.sigv4's). Against one MinIO node, the same objects for every client:

  small GET    `objects` objects of `small_bytes`, read in turn by `concurrency` workers;
  small PUT    the same objects overwritten in turn (boto3 and AsyncS3; ObjectReader sends no bodies);
  large GET    one object of `large_bytes`, streamed and discarded (boto3 ``iter_chunks`` of 1 MiB,
               ObjectReader's sink; AsyncS3 reads a body whole, as its callers do), at
               `large_concurrency`;
  signer       ObjectReader small GETs signed by robolake.sigv4.sign, then by botocore's S3SigV4Auth.

boto3 runs in a thread pool (its way to concurrency), the others on one uvloop event loop. CPU is
the process's own (`time.process_time`, all threads), so per request it is what the client takes
from a machine it shares with the servers; the rates are the server's when it is the bottleneck.
Reproduce against a running stack (the stack's settings, MinIO node 1):

    .venv/bin/python -m robolake.bench.clients [--duration 5] [--concurrency 1,16]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from unittest import mock

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from robolake.bench import core, results
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.sigv4 import EMPTY_SHA256
from robolake.storage import reader as reader_module
from robolake.storage.aio import run_async
from robolake.storage.boto import boto3_client
from robolake.storage.integrity import content_md5, md5_of
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target

BENCH_BUCKET = "robolake-bench-clients"
OPS = ("small GET", "small PUT", "large GET", "signer")
Work = Callable[[int], Awaitable[int]]  # one request by index -> body bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientParams:
    objects: int = 300
    small_bytes: int = 4096
    large_bytes: int = 64 << 20
    duration_s: float = 5.0
    concurrency: tuple[int, ...] = (1, 16)
    large_concurrency: tuple[int, ...] = (1, 2)  # AsyncS3 holds each large body whole in memory
    ops: tuple[str, ...] = OPS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ops) - set(OPS))
        if unknown:
            raise ConfigError(f"--ops: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(OPS)}")
        if self.objects < 1 or self.small_bytes < 1 or self.large_bytes < 1 or self.duration_s <= 0:
            raise ConfigError(
                f"objects {self.objects}, sizes {self.small_bytes} and {self.large_bytes} bytes and "
                f"--duration {self.duration_s:g} must all be positive"
            )


@dataclasses.dataclass(frozen=True)
class Cell:
    """One client x operation x concurrency: requests, wall time, client CPU, bytes."""

    client: str
    op: str
    concurrency: int
    requests: int
    seconds: float
    cpu_s: float
    nbytes: int

    def as_dict(self) -> dict[str, Any]:
        gib = self.nbytes / 2**30
        per_request = round(1000 * self.cpu_s / self.requests, 3) if self.requests else None
        return {
            "client": self.client,
            "op": self.op,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "per_s": round(self.requests / self.seconds, 1),
            "cpu_ms_per_request": per_request,
            "cpu_s_per_gib": round(self.cpu_s / gib, 3) if self.op == "large GET" and gib else None,
            "mib_per_s": round(self.nbytes / 2**20 / self.seconds, 1),
        }


def _timed(client: str, op: str, concurrency: int, loop: Callable[[], tuple[int, int]]) -> Cell:
    cpu, wall = time.process_time(), time.perf_counter()
    requests, nbytes = loop()
    return Cell(client, op, concurrency, requests, time.perf_counter() - wall, time.process_time() - cpu, nbytes)


def _threads(work: Callable[[int], int], concurrency: int, duration_s: float) -> tuple[int, int]:
    """`concurrency` threads calling `work(index)` back to back for `duration_s`: (requests, bytes)."""
    deadline = time.perf_counter() + duration_s
    totals, lock = [0, 0], threading.Lock()

    def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            got = work(index)
            with lock:
                totals[0] += 1
                totals[1] += got
            index += concurrency

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return totals[0], totals[1]


async def _tasks(work: Work, concurrency: int, duration_s: float) -> tuple[int, int]:
    """The same with `concurrency` tasks on the running event loop."""
    deadline = time.perf_counter() + duration_s
    totals = [0, 0]

    async def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            got = await work(index)
            totals[0] += 1
            totals[1] += got
            index += concurrency

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return totals[0], totals[1]


def botocore_sign(
    method: str, url_path: str, query: list[tuple[str, str]], host: str, *keys: str, **options: Any
) -> dict[str, str]:
    """robolake.sigv4.sign's job (same arguments) done by botocore's S3SigV4Auth, for the signer comparison."""
    access_key, secret = keys
    headers = {
        "x-amz-content-sha256": options.get("payload_hash", EMPTY_SHA256),
        **(options.get("extra_headers") or {}),
    }
    request = AWSRequest(method=method, url=f"http://{host}{url_path}", headers=headers)
    S3SigV4Auth(Credentials(access_key, secret), "s3", options.get("region", "us-east-1")).add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


class _Bench:
    """The objects of one run and the loops that read and write them, against one MinIO node."""

    def __init__(self, target: S3Target, params: ClientParams, prefix: str) -> None:
        self.target, self.params, self.prefix = target, params, prefix
        self.keys = [f"{prefix}/small/obj_{i:05d}" for i in range(params.objects)]
        self.bodies = [os.urandom(params.small_bytes) for _ in range(params.objects)]
        self.md5s = [content_md5(md5_of(b)) for b in self.bodies]
        self.large_key = f"{prefix}/large/obj"

    async def prepare(self) -> None:
        async with AsyncS3(self.target, connections=16) as s3:
            await s3.create_bucket(BENCH_BUCKET)
            for key, body, md5 in zip(self.keys, self.bodies, self.md5s, strict=True):
                await s3.put_object(BENCH_BUCKET, key, body, content_md5=md5)
            if "large GET" in self.params.ops:
                big = os.urandom(self.params.large_bytes)
                await s3.put_object(BENCH_BUCKET, self.large_key, big, content_md5=content_md5(md5_of(big)))

    async def cleanup(self) -> None:
        async with AsyncS3(self.target, connections=4) as s3:
            await s3.delete_prefix(BENCH_BUCKET, self.prefix + "/")

    def boto3(self, op: str, concurrency: int) -> Cell:
        client = boto3_client(self.target, max_pool_connections=max(10, concurrency))
        client.head_bucket(Bucket=BENCH_BUCKET)  # connected before the clock starts
        n = len(self.keys)

        def work(i: int) -> int:
            if op == "small PUT":
                client.put_object(Bucket=BENCH_BUCKET, Key=self.keys[i % n], Body=self.bodies[i % n])
                return 0
            if op == "large GET":
                body = client.get_object(Bucket=BENCH_BUCKET, Key=self.large_key)["Body"]
                return sum(len(chunk) for chunk in body.iter_chunks(1 << 20))
            return len(client.get_object(Bucket=BENCH_BUCKET, Key=self.keys[i % n])["Body"].read())

        return _timed("boto3", op, concurrency, lambda: _threads(work, concurrency, self.params.duration_s))

    def async_s3(self, op: str, concurrency: int) -> Cell:
        n = len(self.keys)

        async def run() -> tuple[int, int]:
            async with AsyncS3(self.target, connections=concurrency) as s3:
                await s3.head_object(BENCH_BUCKET, self.keys[0])

                async def work(i: int) -> int:
                    if op == "small PUT":
                        await s3.put_object(
                            BENCH_BUCKET, self.keys[i % n], self.bodies[i % n], content_md5=self.md5s[i % n]
                        )
                        return 0
                    key = self.large_key if op == "large GET" else self.keys[i % n]
                    return len(await s3.get_object(BENCH_BUCKET, key))

                return await _tasks(work, concurrency, self.params.duration_s)

        return _timed("AsyncS3", op, concurrency, lambda: run_async(run()))

    def object_reader(self, op: str, concurrency: int, label: str = "ObjectReader") -> Cell:
        n = len(self.keys)

        def discard(_: memoryview) -> None:
            return None

        async def run() -> tuple[int, int]:
            async with ObjectReader(self.target, connections=concurrency) as reader:
                await reader.get(BENCH_BUCKET, self.keys[0])

                async def work(i: int) -> int:
                    if op == "large GET":
                        return (await reader.get(BENCH_BUCKET, self.large_key, sink=discard)).size
                    return len((await reader.get(BENCH_BUCKET, self.keys[i % n])).body)

                return await _tasks(work, concurrency, self.params.duration_s)

        return _timed(label, op, concurrency, lambda: run_async(run()))

    def cells(self, op: str, concurrency: int) -> list[Cell]:
        if op == "signer":
            ours = self.object_reader("small GET", concurrency, "ObjectReader, robolake.sigv4.sign")
            with mock.patch.object(reader_module, "sign", botocore_sign):
                theirs = self.object_reader("small GET", concurrency, "ObjectReader, botocore S3SigV4Auth")
            return [dataclasses.replace(c, op="signer") for c in (ours, theirs)]
        cells = [self.boto3(op, concurrency), self.async_s3(op, concurrency)]
        return cells if op == "small PUT" else [*cells, self.object_reader(op, concurrency)]


def run(settings: Settings, params: ClientParams, report: core.Reporter = print) -> dict[str, Any]:
    """Every operation at every concurrency with every client; the results document."""
    target = S3Target.from_settings(settings, settings.minio_endpoints[0])
    run_id = results.new_run_id("clients")
    bench = _Bench(target, params, run_id)
    report(
        f"prepare: {params.objects} objects of {params.small_bytes} bytes and one of {params.large_bytes} "
        f"in s3://{BENCH_BUCKET}/{run_id}/ at {target.endpoint}"
    )
    run_async(bench.prepare())
    rows: list[dict[str, Any]] = []
    try:
        for op in params.ops:
            for level in params.large_concurrency if op == "large GET" else params.concurrency:
                report(f"{op}, {level} concurrent, {params.duration_s:g} s per client")
                rows += [cell.as_dict() for cell in bench.cells(op, level)]
    finally:
        run_async(bench.cleanup())
    return {
        "benchmark": "clients",
        "run_id": run_id,
        "started": core.now(),
        "endpoint": target.endpoint,
        "machine": core.machine(),
        "params": dataclasses.asdict(params),
        "rows": rows,
    }


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"# S3 clients against {doc['endpoint']}",
        "",
        f"{m['cpus']} CPUs, load {m['loadavg_1m']} at start, {doc['params']['duration_s']:g} s per cell.",
        "",
        "| op | concurrency | client | requests/s | client CPU ms/request | client CPU s/GiB | MiB/s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['op']} | {r['concurrency']} | {r['client']} | {r['per_s']:,.1f} | "
            f"{r['cpu_ms_per_request']} | {r['cpu_s_per_gib'] or ''} | {r['mib_per_s']:,.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robolake.bench.clients", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default: 5)")
    parser.add_argument("--concurrency", default="1,16", help="concurrency levels (default: 1,16)")
    parser.add_argument("--ops", default=",".join(OPS), help=f"operations (default: {','.join(OPS)})")
    args = parser.parse_args(argv)
    try:
        ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
        params = ClientParams(duration_s=args.duration, concurrency=core.parse_levels(args.concurrency), ops=ops)
        print(markdown(run(Settings.load(), params)))
    except RobolakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
