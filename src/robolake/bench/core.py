"""What every benchmark run shares: run conventions, the closed-loop driver, series and their documents.

Conventions (`RunSpec`): a seed (object bodies, key order and the mix are drawn from it), a
warm-up (run and thrown away before each measured cell), a duration or an operation count per
cell, and a concurrency sweep. A *series* is one path x operation x concurrency cell: it keeps
every latency sample, and its document carries throughput, raw latency percentiles and a CDF.

Every results document has the same outer shape, which `bench compare` and the plots rely on::

    {"benchmark": name, "run_id": ..., "started": ..., "machine": {...}, "versions": {...},
     "params": {...}, "series": [Series.as_dict(), ...], "summary": {...}}
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import os
import platform
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.storage.errors import S3Error
from robolake.storage.reader import ObjectReader

Reporter = Callable[[str], None]
CDF_POINTS = 50  # quantiles kept per series for the latency CDF plot


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSpec:
    """How long and how hard: the same knobs for every workload."""

    seed: int = 0
    warmup_s: float = 1.0
    duration_s: float = 10.0
    operations: int | None = None  # when set, a cell ends after this many operations instead
    concurrency: tuple[int, ...] = (1, 4, 16)

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.duration_s <= 0:
            raise ConfigError(f"--warmup {self.warmup_s:g} must be >= 0 and --duration {self.duration_s:g} > 0")
        if self.operations is not None and self.operations < 1:
            raise ConfigError(f"--operations {self.operations} must be at least 1")
        if not self.concurrency or min(self.concurrency) < 1 or max(self.concurrency) > 1024:
            raise ConfigError(f"--concurrency {','.join(map(str, self.concurrency))}: every level must be 1..1024")

    def describe(self) -> str:
        amount = f"{self.operations} ops" if self.operations else f"{self.duration_s:g} s"
        return (
            f"seed {self.seed}, warm-up {self.warmup_s:g} s, {amount} per cell, concurrency "
            f"{','.join(map(str, self.concurrency))}"
        )


_SIZE = re.compile(r"(\d+)(B|KiB|MiB|GiB)?")
_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, None: 1}


def parse_size(text: str, what: str = "object size") -> int:
    """`4096`, `4KiB`, `64MiB`, `1GiB` -> bytes, in warp's binary units; ConfigError naming `what` otherwise."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{what} {text!r} is not like 4096, 4KiB, 64MiB or 1GiB (binary units, as warp reads them)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def format_size(n: int) -> str:
    """The shortest exact form: 1073741824 -> `1GiB`, 1536 -> `1536B`."""
    for unit in ("GiB", "MiB", "KiB"):
        scale = _SIZE_UNITS[unit]
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


def spec_dict(spec: RunSpec) -> dict[str, Any]:
    """The spec as stored in a results document's params (with its one-line description)."""
    return {**dataclasses.asdict(spec), "describe": spec.describe()}


def parse_levels(text: str) -> tuple[int, ...]:
    """`1,4,16` → (1, 4, 16), with a clear error for anything else."""
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--concurrency {text!r} is not a comma-separated list of integers, e.g. 1,4,16") from None
    if not levels or min(levels) < 1 or max(levels) > 1024:
        raise ConfigError(f"--concurrency {text!r}: give 1 to 1024 per level, e.g. 1,4,16")
    return levels


@dataclasses.dataclass
class Series:
    """One measured cell: `path` (direct, accelerator, warp ...) x `op` x `concurrency`."""

    path: str
    op: str
    concurrency: int
    unit: str = "objects"  # what `count` counts: objects, episodes, keys ...
    count: int = 0
    requests: int = 0
    bytes: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = dataclasses.field(default_factory=list, repr=False)
    ttfb_s: list[float] = dataclasses.field(default_factory=list, repr=False)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    # set for series measured by warp: its own rounded figures instead of raw samples
    reported: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.path} {self.op}"

    def ok(self, count: int = 1, nbytes: int = 0, latency_s: float | None = None, ttfb_s: float | None = None) -> None:
        self.count += count
        self.requests += 1
        self.bytes += nbytes
        if latency_s is not None:
            self.latencies_s.append(latency_s)
        if ttfb_s is not None:
            self.ttfb_s.append(ttfb_s)

    def as_dict(self) -> dict[str, Any]:
        per_s = (lambda v: round(v / self.seconds, 3)) if self.seconds else (lambda v: 0.0)
        doc: dict[str, Any] = {
            "path": self.path,
            "op": self.op,
            "concurrency": self.concurrency,
            "unit": self.unit,
            "count": self.count,
            "requests": self.requests,
            "bytes": self.bytes,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "per_s": per_s(self.count),
            "requests_per_s": per_s(self.requests),
            "mib_per_s": round(self.bytes / 2**20 / self.seconds, 3) if self.seconds else 0.0,
            "latency_ms": percentiles_ms(self.latencies_s),
            "latency_cdf_ms": cdf_ms(self.latencies_s),
            "ttfb_ms": percentiles_ms(self.ttfb_s),
            **self.extra,
        }
        if self.reported is not None:
            doc.update(self.reported)
        return doc


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9, mean, min and max in milliseconds; {} without samples."""
    if not samples:
        return {}
    ms = np.asarray(samples) * 1000.0
    p50, p90, p99, p999 = np.percentile(ms, [50, 90, 99, 99.9])
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "p99.9": round(float(p999), 3),
        "mean": round(float(ms.mean()), 3),
        "min": round(float(ms.min()), 3),
        "max": round(float(ms.max()), 3),
        "samples": len(samples),
    }


def cdf_ms(samples: list[float]) -> list[list[float]]:
    """[[latency_ms, fraction], ...] at CDF_POINTS evenly spaced quantiles (plus the tail)."""
    if not samples:
        return []
    quantiles = [*np.linspace(0, 100, CDF_POINTS), 99.5, 99.9]
    values = np.percentile(np.asarray(samples) * 1000.0, sorted(set(quantiles)))
    return [[round(float(v), 4), round(q / 100, 4)] for v, q in zip(values, sorted(set(quantiles)), strict=True)]


class Steps:
    """Numbered progress lines, ``[3/18] text``, for a run of `total` announced steps."""

    def __init__(self, say: Reporter, total: int) -> None:
        self.say, self.total, self.done = say, total, 0

    def __call__(self, text: str) -> None:
        self.done += 1
        self.say(f"[{self.done}/{self.total}] {text}")


# ---- the closed-loop driver --------------------------------------------------------------------

Operation = Callable[[int, Series], Awaitable[None]]


async def closed_loop(
    op: Operation, series: Series, concurrency: int, *, duration_s: float, operations: int | None = None, start: int = 0
) -> Series:
    """`concurrency` workers call `op(index, series)` back to back until the time or the count is up.

    `op` records its own success with `series.ok(...)`; an S3Error counts as an error (and the
    run goes on: errors are reported, never retried away).
    """
    counter = itertools.count(start)
    deadline = time.perf_counter() + duration_s if operations is None else float("inf")
    budget = operations if operations is not None else -1

    async def worker() -> None:
        nonlocal budget
        clock = time.perf_counter
        while clock() < deadline:
            if operations is not None:
                if budget <= 0:
                    return
                budget -= 1
            index = next(counter)
            try:
                await op(index, series)
            except S3Error:
                series.errors += 1
                series.requests += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    series.seconds += time.perf_counter() - began
    return series


def get_op(reader: ObjectReader, bucket: str, keys: list[str], size: int | None = None) -> Operation:
    """Whole-object GETs of `keys` in turn, body discarded; `size`: every object must be that long."""

    def discard(_: memoryview) -> None:
        return None

    async def one(index: int, series: Series) -> None:
        key = keys[index % len(keys)]
        got = await reader.get(bucket, key, sink=discard)
        if size is not None and got.size != size:
            raise RobolakeError(f"{key}: read {got.size} bytes, expected {size}")
        series.ok(1, got.size, got.seconds, got.ttfb_s)

    return one


async def measured(op: Operation, series: Series, spec: RunSpec, *, start: int = 0, warmup: bool = True) -> Series:
    """Warm-up (thrown away), then the measured cell, per the spec."""
    if warmup and spec.warmup_s > 0:
        await closed_loop(
            op,
            Series(series.path, series.op, series.concurrency),
            series.concurrency,
            duration_s=spec.warmup_s,
            start=start,
        )
    return await closed_loop(
        op, series, series.concurrency, duration_s=spec.duration_s, operations=spec.operations, start=start
    )


# ---- the document --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem_gib = 0.0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count() or 0,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def versions(settings: Settings) -> dict[str, str]:
    from importlib.metadata import version

    from robolake.binaries import BinaryBuilder

    builder = BinaryBuilder(settings.cache_dir)
    found = {"robolake": version("robolake")}
    for tool in ("minio", "warp", "lakefs"):
        try:
            found[tool] = builder.version_of(tool)
        except Exception:  # an unknown tool name is a programming error caught by tests; keep reports going
            found[tool] = "?"
    return found


def document(
    name: str,
    run_id: str,
    settings: Settings,
    params: dict[str, Any],
    series: list[Series],
    summary: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "benchmark": name,
        "run_id": run_id,
        "started": extra.pop("started", None) or now(),
        "machine": machine(),
        "versions": versions(settings),
        "params": params,
        "series": [s.as_dict() for s in series],
        "summary": summary,
        **extra,
    }


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None
