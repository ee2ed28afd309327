"""Run minio/warp (the pinned build) and read its summary.

warp costs little CPU per request, so on a 2-core machine it measures the server, where a Python
client would mostly measure itself. Its printed latencies are rounded to milliseconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import subprocess
import tempfile
from pathlib import Path

from robolake.bench.core import Series
from robolake.errors import RobolakeError

_AVG = re.compile(r"\* Average: ([\d.]+) ([KMG]i?B)/s, ([\d.]+) obj/s")
_REQS = re.compile(r"\* Reqs: Avg: ([\d.]+)(\w+), 50%: ([\d.]+)(\w+), 90%: ([\d.]+)(\w+), 99%: ([\d.]+)(\w+)")
_TTFB = re.compile(r"\* TTFB: Avg: ([\d.]+)(\w+),(.*)")
_TTFB_AT = {
    "p50": re.compile(r"Median: ([\d.]+)(\w+)"),
    "p90": re.compile(r"90th: ([\d.]+)(\w+)"),
    "p99": re.compile(r"99th: ([\d.]+)(\w+)"),
}
_ERRORS = re.compile(r"^Errors: (\d+)", re.M)  # warp's count of failed requests, per operation
_FLAGS = ("--noclear", "--no-color", "--autoterm=false", "--lookup", "path")  # never clear; path-style requests
_UNIT_MS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}
_UNIT_MIB = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}


@dataclasses.dataclass(frozen=True)
class WarpResult:
    op: str
    host: str
    concurrency: int
    objects_per_s: float
    mib_per_s: float
    latency_ms: dict[str, float]
    ttfb_avg_ms: float | None
    command: str
    ttfb_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS.get(unit, 1.0)


def parse_summary(text: str, op: str) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """objects/s, MiB/s, latency percentiles (ms) and TTFB mean/percentiles (ms) from warp's report for `op`."""
    section = text.split(f"Report: {op.upper()}.", 1)
    if len(section) != 2:
        raise RobolakeError(f"warp printed no {op.upper()} report; its output ends with:\n{text[-1500:]}")
    body = section[1]
    failed = sum(int(n) for n in _ERRORS.findall(text))
    if failed:  # a failing path is a broken benchmark, not a figure (a short body still "moves" bytes)
        raise RobolakeError(f"warp counted {failed} failed {op.upper()} requests; its report:\n{body[:1500]}")
    avg = _AVG.search(body)
    if avg is None:
        raise RobolakeError(f"cannot read warp's average throughput from:\n{body[:800]}")
    mib = float(avg[1]) * _UNIT_MIB.get(avg[2], 1.0)
    lat: dict[str, float] = {}
    reqs = _REQS.search(body)
    if reqs:
        lat = {
            "mean": _ms(reqs[1], reqs[2]),
            "p50": _ms(reqs[3], reqs[4]),
            "p90": _ms(reqs[5], reqs[6]),
            "p99": _ms(reqs[7], reqs[8]),
        }
    ttfb: dict[str, float] = {}
    line = _TTFB.search(body)
    if line:
        ttfb["mean"] = _ms(line[1], line[2])
        for name, pattern in _TTFB_AT.items():
            found = pattern.search(line[3])
            if found:
                ttfb[name] = _ms(found[1], found[2])
    return float(avg[3]), mib, lat, ttfb


def run_warp(
    binary: Path,
    op: str,
    *,
    host: str,
    access_key: str,
    secret_key: str,
    bucket: str,
    obj_size: str,
    concurrency: int,
    duration_s: float,
    objects: int | None = None,
    list_existing: bool = False,
    prefix: str | None = None,
    extra: tuple[str, ...] = (),
    prepare_only: bool = False,
) -> WarpResult | None:
    """One warp run; never clears the bucket. `prepare_only`: just leave the objects behind."""
    with tempfile.TemporaryDirectory(prefix="robolake-warp-") as tmp:
        options = {
            "--host": host,
            "--access-key": access_key,
            "--secret-key": secret_key,
            "--bucket": bucket,
            "--obj.size": obj_size,
            "--concurrent": str(concurrency),
            "--duration": f"{duration_s:g}s",
        }
        cmd = [str(binary), op, *itertools.chain.from_iterable(options.items()), *_FLAGS, "--benchdata", f"{tmp}/bench"]
        if objects is not None:
            cmd += ["--objects", str(objects)]
        if list_existing:
            cmd += ["--list-existing"]
        if prefix is not None:
            cmd += ["--prefix", prefix, "--noprefix"]
        cmd += list(extra)
        shown = " ".join(c if c != secret_key else "***" for c in cmd)
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=duration_s + 600, check=False)
    if proc.returncode != 0:
        raise RobolakeError(
            f"warp {op} against {host} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-1500:]}"
        )
    if prepare_only:
        return None
    ops, mib, lat, ttfb = parse_summary(proc.stdout, op)
    return WarpResult(op, host, concurrency, ops, mib, lat, ttfb.get("mean"), shown, ttfb)


def to_series(result: WarpResult, *, path: str = "warp", op: str | None = None) -> Series:
    """A warp run as a report series: warp's own (millisecond-rounded) figures, no raw samples."""
    series = Series(path, op or result.op.upper(), result.concurrency)
    series.reported = {
        "per_s": round(result.objects_per_s, 3),
        "mib_per_s": round(result.mib_per_s, 3),
        "latency_ms": result.latency_ms,
        "ttfb_ms": result.ttfb_ms,
        "command": result.command,
        "measured_by": "warp",
    }
    return series
