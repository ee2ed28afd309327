"""The training-path benchmark's three loaders, and the processes that drive them as DataLoader workers.

  umi       UMI's own loader: the ``*.zarr.zip`` on local disk copied into a zarr MemoryStore as
            ``ReplayBuffer.copy_from_path`` does (chunks stay compressed), frames decoded through
            zarr with the JPEG XL codec registered, low-dim arrays in numpy, the windows of
            ``SequenceSampler.sample_sequence``; sample by sample, as UmiDataset's __getitem__.
  robolake  ``LakeDataset`` at the commit through the accelerator, with a block cache in a fresh
            directory; each worker calls ``schedule`` with its epoch's samples, then
            ``__getitems__`` per batch (what robolake's torch adapter does).
  naive     the same commit and endpoint, one boto3 ranged GET per frame chunk (its local header
            and data), no cache, no coalescing; sample by sample.
  robolake-nocache  (not run by default) LakeDataset without a cache directory: ranged GETs of
            each batch's frames, neighbours coalesced, fetched ahead by ``schedule`` into memory.

All three take their indices from ``robolake.ml.windows`` (UMI's SequenceSampler logic), so the
same index is the same window; the benchmark checks that every sample's checksum agrees.

Processes. Each loader runs in a *training process* of its own (forked from the benchmark, so its
memory is its own): it builds the dataset, then forks `workers` worker processes that inherit it,
as a DataLoader with the fork start method does. For epoch e, worker w takes batches w, w +
workers, ... of ``EpochOrder(n, seed).permutation(e)`` cut into batches, reads them, and reports
the samples' CRC-32s, its per-batch latencies and its GETs. The training process times the epoch
from its "go" to the last worker's report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import struct
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robolake.config import Settings
from robolake.errors import RobolakeError
from robolake.ml import EpochOrder, LakeDataset, SamplerConfig
from robolake.ml.windows import action_steps, build_indices, lowdim_steps, rgb_steps
from robolake.storage.boto import boto3_client, boto_errors
from robolake.umi.errors import DatasetFormatError

LOADERS = ("umi", "robolake", "naive")
OPTIONAL_LOADERS = ("robolake-nocache",)
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")
_HEADER_SLACK = 512  # bytes past the name for the local extra field: one GET per frame


@dataclasses.dataclass(frozen=True, kw_only=True)
class Source:
    """The one replay buffer every loader reads: on local disk (umi) and at a lakeFS commit (the others)."""

    settings: Settings
    local_zip: Path
    repo: str
    commit_id: str
    path: str
    config: SamplerConfig
    cache_dir: Path
    block_bytes: int


class UmiMemoryLoader:
    """UMI's loader: the zip copied into a zarr MemoryStore, windows as SequenceSampler.sample_sequence."""

    def __init__(self, path: Path, config: SamplerConfig) -> None:
        import zarr  # type: ignore[import-untyped]
        from imagecodecs.numcodecs import register_codecs

        register_codecs(verbose=False)  # UMI's register_codecs(): imagecodecs_jpegxl decodes through zarr
        with zarr.ZipStore(str(path), mode="r") as src:
            root = zarr.group(store=zarr.MemoryStore())
            zarr.copy_store(src, root.store, source_path="/meta", dest_path="/meta")
            root.create_group("data")
            for key in zarr.group(src)["data"]:  # copy_from_store: the chunks as stored, still compressed
                zarr.copy_store(src, root.store, source_path=f"/data/{key}", dest_path=f"/data/{key}")
        self.config = config
        ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
        self.indices = build_indices(ends, config)
        data = root["data"]
        self.rgb = {key: data[key] for key in config.rgb}
        self.lowdim = {key: np.asarray(data[key][:]) for key in {*config.lowdim, *config.action_sources()}}
        self.action = np.concatenate([self.lowdim[k] for k in config.action_sources()], axis=-1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        current, start, end = (int(x) for x in self.indices[index])
        out: dict[str, Any] = {}
        for key, w in self.config.rgb.items():
            valid = min(w.horizon, (current - start) // w.down_sample_steps + 1)
            frames = self.rgb[key][current - (valid - 1) * w.down_sample_steps : current + 1 : w.down_sample_steps]
            if frames.shape[0] < w.horizon:  # front padding with the earliest frame, as UMI pads
                frames = np.concatenate([np.repeat(frames[:1], w.horizon - frames.shape[0], axis=0), frames])
            out[key] = frames
        for key, w in self.config.lowdim.items():
            out[key] = self.lowdim[key][lowdim_steps(current, start, end, w)]
        out["action"] = self.action[action_steps(current, end, self.config.action, self.config.action_padding)]
        return out


class NaiveLoader:
    """One boto3 ranged GET per frame chunk at the commit's physical address: no cache, no coalescing."""

    def __init__(self, dataset: LakeDataset) -> None:
        self.ds, self.config = dataset, dataset.config
        source = dataset.zip.source
        self.target, self.bucket, self.key = source.target, source.bucket, source.key
        self.requests = self.bytes_read = 0
        self._client: Any = None
        self._pid = 0

    def __len__(self) -> int:
        return len(self.ds)

    def _frame(self, name: str) -> Any:
        import imagecodecs

        if self._pid != os.getpid():  # each worker its own connections
            self._client, self._pid = boto3_client(self.target, max_pool_connections=2), os.getpid()
        info = self.ds.zip.infos[name]
        start = info.header_offset
        end = start + _LOCAL_HEADER.size + len(name) + _HEADER_SLACK + info.file_size
        with boto_errors("GET", self.bucket, self.key, self.target):
            answer = self._client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end - 1}")
            blob: bytes = answer["Body"].read()
        self.requests += 1
        self.bytes_read += len(blob)
        name_len, extra_len = _LOCAL_HEADER.unpack(blob[: _LOCAL_HEADER.size])[-2:]
        at = _LOCAL_HEADER.size + name_len + extra_len
        data = blob[at : at + info.file_size]
        if zlib.crc32(data) != info.CRC:
            raise DatasetFormatError(self.ds.found.where, f"entry {name!r} fails its CRC-32", "read it again")
        return np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        current, start, end = (int(x) for x in self.ds.indices[index])
        out: dict[str, Any] = {
            key: np.stack([self._frame(f"data/{key}/{int(s)}.0.0.0") for s in rgb_steps(current, start, w)])
            for key, w in self.config.rgb.items()
        }
        for key, w in self.config.lowdim.items():
            out[key] = self.ds.lowdim[key][lowdim_steps(current, start, end, w)]
        out["action"] = self.ds.action_array[action_steps(current, end, self.config.action, self.config.action_padding)]
        return out


def build(kind: str, source: Source) -> Any:
    """The dataset a loader's training process holds (what its workers inherit)."""
    if kind == "umi":
        return UmiMemoryLoader(source.local_zip, source.config)
    cache = source.cache_dir if kind == "robolake" else None
    ds = LakeDataset.open(
        source.settings,
        source.commit_id,
        source.path,
        source.config,
        repo=source.repo,
        cache_dir=cache,
        block_bytes=source.block_bytes,
    )
    return NaiveLoader(ds) if kind == "naive" else ds


def checksum(sample: dict[str, Any]) -> int:
    """CRC-32 over every array of a sample, keys in order (cheap next to a decode: ~0.1 ms)."""
    crc = 0
    for key in sorted(sample):
        crc = zlib.crc32(np.ascontiguousarray(sample[key]).data, zlib.crc32(key.encode(), crc))
    return crc


def transfers(dataset: Any) -> tuple[int, int]:
    """(GETs, bytes) this process's copy of the dataset has made so far."""
    if isinstance(dataset, LakeDataset):
        return dataset.zip.source.requests, dataset.zip.source.bytes_read
    if isinstance(dataset, NaiveLoader):
        return dataset.requests, dataset.bytes_read
    return 0, 0


# ---- the processes -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """How the loader's workers share an epoch."""

    workers: int
    batch_size: int
    seed: int


def my_batches(n: int, plan: Plan, epoch: int, worker: int) -> list[list[int]]:
    """Worker `worker`'s batches of `epoch`, in the order a DataLoader hands them out (round robin)."""
    order = EpochOrder(n, seed=plan.seed).permutation(epoch)
    cut = [order[b : b + plan.batch_size] for b in range(0, n, plan.batch_size)]
    return [[int(i) for i in batch] for batch in cut[worker :: plan.workers]]


def run_epoch(dataset: Any, plan: Plan, epoch: int, worker: int) -> dict[str, Any]:
    batches = my_batches(len(dataset), plan, epoch, worker)
    schedule: Callable[[Sequence[int]], None] | None = getattr(dataset, "schedule", None)
    getitems: Callable[[list[int]], list[dict[str, Any]]] | None = getattr(dataset, "__getitems__", None)
    gets, nbytes = transfers(dataset)
    began, cpu = time.perf_counter(), time.process_time()  # this worker's CPU, its prefetch threads included
    if schedule is not None:
        schedule([i for batch in batches for i in batch])
    latencies, sums = [], {}
    for batch in batches:
        at = time.perf_counter()
        samples = getitems(batch) if getitems is not None else [dataset[i] for i in batch]
        latencies.append(time.perf_counter() - at)
        sums.update({i: checksum(s) for i, s in zip(batch, samples, strict=True)})
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    gets_now, bytes_now = transfers(dataset)
    return {
        "samples": sum(len(b) for b in batches),
        "seconds": seconds,
        "cpu_s": cpu,
        "latencies_s": latencies,
        "checksums": sums,
        "gets": gets_now - gets,
        "bytes": bytes_now - nbytes,
    }


def worker_main(dataset: Any, plan: Plan, worker: int, conn: Any) -> None:
    while True:
        command = conn.recv()
        if command[0] == "stop":
            return
        try:
            conn.send(("done", run_epoch(dataset, plan, command[1], worker)))
        except Exception as exc:  # reported to the benchmark, which names the loader and stops
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"))
            return


def training_main(kind: str, source: Source, plan: Plan, conn: Any) -> None:
    """One loader's training process: build its dataset, fork its workers, run the epochs it is told to."""
    try:
        began = time.perf_counter()
        dataset = build(kind, source)
        ready = {"setup_s": time.perf_counter() - began, "samples": len(dataset), "gets": transfers(dataset)[0]}
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    ctx = multiprocessing.get_context("fork")
    pipes = [ctx.Pipe() for _ in range(plan.workers)]
    workers = [
        ctx.Process(target=worker_main, args=(dataset, plan, w, child), daemon=True, name=f"{kind}-worker-{w}")
        for w, (_, child) in enumerate(pipes)
    ]
    for process in workers:
        process.start()
    conn.send(("ready", ready))
    try:
        while (command := conn.recv())[0] == "epoch":
            conn.send(_epoch(pipes, command[1]))
    finally:
        for parent, _ in pipes:
            parent.send(("stop",))
        for process in workers:
            process.join(10)


def _epoch(pipes: list[Any], epoch: int) -> tuple[str, Any]:
    began = time.perf_counter()
    for parent, _ in pipes:
        parent.send(("epoch", epoch))
    reports = []
    for parent, _ in pipes:
        try:
            kind, body = parent.recv()
        except EOFError:
            return "error", "a worker process died (no report)"
        if kind == "error":
            return "error", body
        reports.append(body)
    return "epoch", {"seconds": time.perf_counter() - began, "workers": reports}


class TrainingProcess:
    """The benchmark's handle on one loader's training process."""

    def __init__(self, kind: str, source: Source, plan: Plan) -> None:
        self.kind = kind
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=training_main, args=(kind, source, plan, child), name=f"{kind}-training")
        self.process.start()

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def _answer(self, timeout_s: float) -> Any:
        if not self.conn.poll(timeout_s):
            raise RobolakeError(f"the {self.kind} loader did not answer within {timeout_s:.0f} s; see its workers")
        try:
            kind, body = self.conn.recv()
        except EOFError:
            raise RobolakeError(f"the {self.kind} loader's process died (exit code {self.process.exitcode})") from None
        if kind == "error":
            raise RobolakeError(f"the {self.kind} loader failed: {body}")
        return body

    def ready(self, timeout_s: float = 600.0) -> dict[str, Any]:
        body: dict[str, Any] = self._answer(timeout_s)
        return body

    def epoch(self, epoch: int, timeout_s: float = 1800.0) -> dict[str, Any]:
        self.conn.send(("epoch", epoch))
        body: dict[str, Any] = self._answer(timeout_s)
        return body

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conn.send(("stop",))
            self.process.join(15)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
