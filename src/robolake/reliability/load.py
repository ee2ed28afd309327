"""Sustained mixed load through the accelerator while slow clients hold connections open.

First the machine's capacity is measured: short probes (PROBE_S each, no slow clients) at 2, 4,
8, ... worker threads until ops/s stops rising by CAPACITY_GAIN, or MAX_THREADS; the count that
gave the most ops/s is the capacity. Then that many boto3 workers read the seeded objects
(checking each body's sha256) and write new small ones, 4 reads to 1 write, for `duration_s`;
meanwhile `slow_clients` sockets send a
request head one header line a second (slowloris), reconnecting when the accelerator closes
them. Reported: ops/s, p99, errors, wrong bodies, the accelerator's open file descriptors
before and after (pooled upstream connections account for a rise), and the connections it
still holds open 2 s after every client is gone (CLOSE-WAIT): each of those is a leaked fd.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import random
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from robolake.config import Settings
from robolake.reliability.table import LoadFigures
from robolake.reliability.wire import host_port
from robolake.reliability.workload import BUCKET, s3

MAX_ERROR_SHARE = 0.01
PROBE_S, CAPACITY_GAIN, MAX_THREADS = 3.0, 1.1, 64
CLOSE_WAIT = "08"  # /proc/net/tcp's state code: the peer closed, this side has not


def close_wait_sockets(port: int) -> int:
    """Sockets on `port` (the accelerator's side) whose client has gone but which are still open: leaked fds."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == CLOSE_WAIT and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def open_fds(pid: int | None) -> int:
    if pid is None:
        return -1
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class SlowClients(threading.Thread):
    """`count` connections that each send a request head one header line per second, forever."""

    def __init__(self, endpoint: str, count: int) -> None:
        super().__init__(name="slowloris", daemon=True)
        self._address, self._count = host_port(endpoint), count
        self.stop = threading.Event()
        self.closed_by_server = 0

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self._address, timeout=2)
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: slow\r\n")
            return sock
        except OSError:
            return None

    def run(self) -> None:
        socks = [s for s in (self._open() for _ in range(self._count)) if s is not None]
        while not self.stop.wait(1.0):
            for index, sock in enumerate(socks):
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    self.closed_by_server += 1
                    sock.close()
                    socks[index] = self._open() or sock
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()


def _work(
    client: Any, objects: list[tuple[str, str]], prefix: str, end: float, seed: int
) -> tuple[list[float], int, int]:
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = wrong = 0
    while time.monotonic() < end:
        started = time.perf_counter()
        try:
            if rng.random() < 0.8:
                key, sha = rng.choice(objects)
                body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                wrong += hashlib.sha256(body).hexdigest() != sha
            else:
                client.put_object(Bucket=BUCKET, Key=f"{prefix}/{seed}-{len(latencies)}.bin", Body=rng.randbytes(2048))
        except (ClientError, BotoCoreError):
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    return latencies, errors, wrong


def _mixed(client: Any, items: list[tuple[str, str]], prefix: str, seconds: float, threads: int) -> list[Any]:
    """`threads` workers of mixed load for `seconds`: each one's (latencies, errors, wrong)."""
    end = time.monotonic() + seconds
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: _work(client, items, f"{prefix}/t{threads}", end, i), range(threads)))


def capacity(client: Any, items: list[tuple[str, str]], prefix: str) -> list[tuple[int, float]]:
    """(threads, ops/s) of each probe, doubling the threads until ops/s rises by less than CAPACITY_GAIN."""
    probes: list[tuple[int, float]] = []
    threads = 2
    while threads <= MAX_THREADS:
        done = _mixed(client, items, f"{prefix}/probe", PROBE_S, threads)
        probes.append((threads, sum(len(lat) for lat, _, _ in done) / PROBE_S))
        if len(probes) > 1 and probes[-1][1] < probes[-2][1] * CAPACITY_GAIN:
            break
        threads *= 2
    return probes


def run_load(
    settings: Settings,
    accelerator_pid: int | None,
    objects: Mapping[str, str],
    prefix: str,
    *,
    duration_s: float,
    slow_clients: int = 100,
) -> LoadFigures:
    items = list(objects.items())
    client = s3(settings, settings.accelerator_endpoint, attempts=1, timeout_s=10.0, pool=MAX_THREADS)
    probes = capacity(client, items, prefix)
    threads = max(probes, key=lambda p: p[1])[0]
    fds_before = open_fds(accelerator_pid)
    slow = SlowClients(settings.accelerator_endpoint, slow_clients)
    slow.start()
    done = _mixed(client, items, prefix, duration_s, threads)
    client.close()
    slow.stop.set()
    slow.join(timeout=10)
    time.sleep(2.0)  # the accelerator closes what the slow clients left
    latencies = sorted(x for lat, _, _ in done for x in lat)
    ops = len(latencies)
    p99 = latencies[min(ops - 1, int(ops * 0.99))] * 1000 if ops else 0.0
    figures = LoadFigures(
        threads=threads,
        probes=probes,
        seconds=duration_s,
        ops=ops,
        ops_per_s=ops / duration_s,
        p99_ms=p99,
        errors=sum(e for _, e, _ in done),
        wrong=sum(w for _, _, w in done),
        slow_clients=slow_clients,
        slow_closed_by_server=slow.closed_by_server,
        fds_before=fds_before,
        fds_after=open_fds(accelerator_pid),
        left_open=close_wait_sockets(settings.accelerator_port),
    )
    figures.problems.extend(_problems(figures))
    return figures


def _problems(f: LoadFigures) -> list[str]:
    found = []
    if f.wrong:
        found.append(f"{f.wrong} read(s) returned other bytes")
    if f.ops == 0 or f.errors > MAX_ERROR_SHARE * (f.ops + f.errors):
        found.append(f"{f.errors} of {f.ops + f.errors} operations failed under load with slow clients")
    if f.left_open:
        found.append(f"{f.left_open} connection(s) of gone clients still open (CLOSE-WAIT): leaked fds")
    return found
