"""What the accelerator costs where its cache cannot answer: cold small GETs, large GETs and PUTs.

Same run, same objects, same concurrency, warp as the load generator; each accelerator run is
bracketed by two direct runs against MinIO node 1 and compared with their mean:

  cold       `cold_objects` fresh objects of `obj_size` written straight to MinIO under a prefix of
             their own; warp GET of them (`concurrency`) direct, through the accelerator, direct.
             A first read through the accelerator is a miss; warp picks objects at random, so some
             are read twice: the accelerator's own hit/miss counters over that run give the share
             of misses, reported beside the ratio.
  large GET  `large_objects` objects of `large_size`, warp GET (`large_concurrency`).
  large PUT  warp PUT of `large_size` objects (`large_concurrency`); each run's objects deleted after it.

Objects over the cache threshold take the accelerator's raw path (robolake.accelerator.splice)
from their second read on; the warm-up reads each large object once through it first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from robolake.accelerator.admin import read_stats
from robolake.bench.warp import WarpResult, run_warp
from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import RobolakeError
from robolake.storage.aio import run_async
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import AsyncS3, S3Target

Reporter = Callable[[str], None]
COLD_PREFIX, LARGE_GET_PREFIX, LARGE_PUT_PREFIX = "cold", "large-get", "large-put"
PARTS = ("cold", "large")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PassthroughParams:
    bucket: str
    obj_size: str
    concurrency: int
    duration_s: float
    cold_objects: int = 20000
    large_size: str = "64MiB"
    large_objects: int = 16
    large_concurrency: int = 4
    parts: tuple[str, ...] = PARTS


@dataclasses.dataclass(frozen=True)
class Bracketed:
    """direct, accelerator, direct again: the ratio is the accelerator's over the directs' mean."""

    what: str
    direct_1: WarpResult
    accelerator: WarpResult
    direct_2: WarpResult
    miss_share: float | None = None  # cold runs: the accelerator's misses / (hits + misses)

    def ratio(self, field: str = "objects_per_s") -> float | None:
        base = (getattr(self.direct_1, field) + getattr(self.direct_2, field)) / 2
        return round(getattr(self.accelerator, field) / base, 3) if base else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "ratio_objects_per_s": self.ratio(),
            "ratio_mib_per_s": self.ratio("mib_per_s"),
            "miss_share": self.miss_share,
            **{name: dataclasses.asdict(getattr(self, name)) for name in ("direct_1", "accelerator", "direct_2")},
        }


def run(settings: Settings, params: PassthroughParams, report: Reporter) -> dict[str, Any]:
    """The chosen parts; a dict of Bracketed.as_dict() by name (cold, large_get, large_put)."""
    runner = _Runner(settings, params, report)
    out: dict[str, Any] = {}
    if "cold" in params.parts:
        out["cold"] = runner.cold().as_dict()
    if "large" in params.parts:
        out["large_get"] = runner.large_get().as_dict()
        out["large_put"] = runner.large_put().as_dict()
    return out


class _Runner:
    def __init__(self, settings: Settings, params: PassthroughParams, report: Reporter) -> None:
        self.settings, self.params, self.report = settings, params, report
        self.warp = BinaryBuilder(settings.cache_dir).ensure("warp")
        self.direct = S3Target.from_settings(settings, settings.minio_endpoints[0])
        self.accel = S3Target.from_settings(settings)

    def _warp(self, op: str, host: str, *, size: str, concurrency: int, prefix: str, **extra: Any) -> WarpResult | None:
        return run_warp(
            self.warp,
            op,
            host=host,
            access_key=self.settings.minio_root_user,
            secret_key=self.settings.minio_root_password,
            bucket=self.params.bucket,
            obj_size=size,
            concurrency=concurrency,
            duration_s=extra.pop("duration_s", self.params.duration_s),
            prefix=prefix,
            **extra,
        )

    def _measure(self, op: str, host: str, *, size: str, concurrency: int, prefix: str, **extra: Any) -> WarpResult:
        result = self._warp(op, host, size=size, concurrency=concurrency, prefix=prefix, **extra)
        if result is None:
            raise RobolakeError(f"warp printed no summary for {op} against {host}")
        return result

    def _bracket(self, what: str, run_one: Callable[[str], WarpResult], *, count_misses: bool = False) -> Bracketed:
        self.report(f"{what}: direct")
        first = run_one(self.direct.host)
        self.report(f"{what}: through the accelerator")
        before = _cache_counts(self.settings) if count_misses else None
        accel = run_one(self.accel.host)
        share = _miss_share(before, _cache_counts(self.settings)) if before is not None else None
        self.report(f"{what}: direct again (brackets drift)")
        return Bracketed(what, first, accel, run_one(self.direct.host), share)

    def cold(self) -> Bracketed:
        p = self.params
        self.report(f"prepare: {p.cold_objects} fresh objects of {p.obj_size} straight to MinIO (warp)")
        self._prepare(COLD_PREFIX, p.obj_size, p.cold_objects, p.concurrency)

        def get(host: str) -> WarpResult:
            return self._measure(
                "get",
                host,
                size=p.obj_size,
                concurrency=p.concurrency,
                prefix=COLD_PREFIX,
                list_existing=True,
                objects=p.cold_objects,  # warp uses at most --objects of those it lists (2,500 by default)
            )

        return self._bracket(f"cold GET of {p.obj_size}, {p.concurrency} concurrent", get, count_misses=True)

    def large_get(self) -> Bracketed:
        p = self.params
        self.report(f"prepare: {p.large_objects} objects of {p.large_size} (warp, direct to MinIO)")
        self._prepare(LARGE_GET_PREFIX, p.large_size, p.large_objects, p.large_concurrency)

        def get(host: str) -> WarpResult:
            size, conc = p.large_size, p.large_concurrency
            return self._measure("get", host, size=size, concurrency=conc, prefix=LARGE_GET_PREFIX, list_existing=True)

        self.report("warm-up: each large object read once through the accelerator (it learns they are large)")
        run_async(_read_each(self.direct, self.accel, p.bucket, LARGE_GET_PREFIX))
        return self._bracket(f"large GET of {p.large_size}, {p.large_concurrency} concurrent", get)

    def large_put(self) -> Bracketed:
        p = self.params

        def put(host: str) -> WarpResult:
            try:
                return self._measure(
                    "put", host, size=p.large_size, concurrency=p.large_concurrency, prefix=LARGE_PUT_PREFIX
                )
            finally:
                run_async(_delete(self.direct, p.bucket, LARGE_PUT_PREFIX))

        return self._bracket(f"large PUT of {p.large_size}, {p.large_concurrency} concurrent", put)

    def _prepare(self, prefix: str, size: str, objects: int, concurrency: int) -> None:
        run_async(_delete(self.direct, self.params.bucket, prefix))
        self._warp(
            "get",
            self.direct.host,
            size=size,
            concurrency=concurrency,
            prefix=prefix,
            objects=objects,
            prepare_only=True,
            duration_s=1,
        )


async def _delete(target: S3Target, bucket: str, prefix: str) -> None:
    async with AsyncS3(target, connections=8) as s3:
        await s3.create_bucket(bucket)
        await s3.delete_prefix(bucket, prefix + "/")


async def _read_each(direct: S3Target, accel: S3Target, bucket: str, prefix: str) -> None:
    async with AsyncS3(direct, connections=2) as s3:
        keys = [o.key for o in await s3.list_objects(bucket, prefix + "/", metadata=False)]

    def discard(_: memoryview) -> None:
        return None

    async with ObjectReader(accel, connections=2) as reader:
        for key in keys:
            await reader.get(bucket, key, sink=discard)


def _cache_counts(settings: Settings) -> tuple[int, int]:
    """(hits, misses) so far, from the accelerator's /stats."""
    events = read_stats(settings, timeout_s=10).get("events", {})
    hits = sum(v for k, v in events.items() if k.startswith("requests_hit_"))
    return hits, int(events.get("requests_miss", 0))


def _miss_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    hits, misses = after[0] - before[0], after[1] - before[1]
    return round(misses / (hits + misses), 3) if hits + misses else None


def markdown_rows(parts: dict[str, Any]) -> list[str]:
    """The table rows of the parts run (the accelerator benchmark's report appends them)."""
    if not parts:
        return []
    lines = ["", "| without the cache | direct | through :9000 | ratio | note |", "|---|---:|---:|---:|---|"]
    for doc in parts.values():
        unit, field = ("MiB/s", "mib_per_s") if "large" in doc["what"] else ("objects/s", "objects_per_s")
        base = (doc["direct_1"][field] + doc["direct_2"][field]) / 2
        note = f"{doc['miss_share']:.0%} of its reads were misses" if doc.get("miss_share") is not None else ""
        lines.append(
            f"| {doc['what']} | {base:.0f} {unit} | {doc['accelerator'][field]:.0f} {unit} | "
            f"{doc['ratio_mib_per_s' if field == 'mib_per_s' else 'ratio_objects_per_s']} | {note} |"
        )
    return lines
