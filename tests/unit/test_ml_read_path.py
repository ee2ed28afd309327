"""How robolake.ml reads bytes: blocks fetched once (also across processes), prefetch, batched reads.

The zip is read from a local file through a logging range source (tests/unit/test_ml_reference.py's
FileSource: the transport only); block cache, prefetcher and dataset are the real ones. Every
range the source served is logged, so "read once" is checked byte range by byte range.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import pickle
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robolake.ml import EpochOrder, LakeDataset, SamplerConfig
from robolake.ml.blocks import BlockCache
from robolake.ml.prefetch import Prefetcher
from robolake.umi import generate_dataset
from tests.unit.test_ml_reference import BUFFER, FileSource, assert_same, local_dataset

BLOCK = 256 * 1024


@pytest.fixture(scope="module")
def buffer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("umi")
    generate_dataset(out, profile="tiny", episodes=3, seed=11)
    return out / BUFFER


@pytest.fixture(scope="module")
def reference(buffer: Path) -> list[dict[str, Any]]:
    """Every sample, read one by one without cache or prefetch."""
    ds = local_dataset(buffer, SamplerConfig.umi())
    return [ds[i] for i in range(len(ds))]


def digest(sample: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for key in sorted(sample):
        h.update(key.encode() + str(sample[key].dtype).encode() + np.ascontiguousarray(sample[key]).tobytes())
    return h.hexdigest()


def source_of(ds: LakeDataset) -> FileSource:
    assert isinstance(ds.zip.source, FileSource)
    return ds.zip.source


def block_reads(ranges: list[tuple[int, int]], size: int) -> Counter[int]:
    """Block index -> times read, for the block-aligned ranges in `ranges` (the directory reads are not)."""
    return Counter(
        start // BLOCK for start, n in ranges if start % BLOCK == 0 and n == min(BLOCK, size - start) and n > 0
    )


def needed_blocks(ds: LakeDataset, rows: list[int]) -> set[int]:
    assert ds.zip.blocks is not None
    out: set[int] = set()
    for row in rows:
        for name in ds._frame_names(row):
            info = ds.zip.infos[name]
            out.update(ds.zip.blocks.blocks(info.header_offset, info.header_offset + 30 + len(name) + info.file_size))
    return out


def test_schedule_fetches_each_block_once_while_batches_are_read(
    buffer: Path, tmp_path: Path, reference: list[dict[str, Any]]
) -> None:
    ds = local_dataset(buffer, SamplerConfig.umi(), cache_dir=tmp_path)
    order = [int(i) for i in EpochOrder(len(ds), seed=3).permutation()]
    ds.schedule(order)
    for at in range(0, len(order), 4):  # read while the threads fetch ahead
        batch = order[at : at + 4]
        for i, sample in zip(batch, ds.__getitems__(batch), strict=True):
            assert_same(sample, reference[i])
    assert ds._ahead is not None and ds._ahead.wait_idle(30)
    reads = block_reads(source_of(ds).ranges, ds.zip.size)
    assert reads and max(reads.values()) == 1  # no block fetched twice, by threads or reader
    assert needed_blocks(ds, order) <= set(reads)
    made = source_of(ds).requests
    assert [digest(ds[i]) for i in order] == [digest(reference[i]) for i in order]
    assert source_of(ds).requests == made  # a second epoch reads local blocks only


def _worker(ds: LakeDataset, rows: list[int], out: Any) -> None:
    ds.schedule(rows)  # this process's own threads, started after the fork
    samples = [s for at in range(0, len(rows), 3) for s in ds.__getitems__(rows[at : at + 3])]
    out.send((source_of(ds).ranges, {i: digest(s) for i, s in zip(rows, samples, strict=True)}))


def test_forked_workers_share_the_block_cache_and_fetch_each_block_once(
    buffer: Path, tmp_path: Path, reference: list[dict[str, Any]]
) -> None:
    ds = local_dataset(buffer, SamplerConfig.umi(), cache_dir=tmp_path)
    ds.schedule([0, 1])  # the parent's threads and locks must not leak into the children
    assert ds._ahead is not None and ds._ahead.wait_idle(30)
    opened = list(source_of(ds).ranges)
    source_of(ds).ranges.clear()
    order = [int(i) for i in EpochOrder(len(ds), seed=5).permutation()]
    shares = [order[0::2], order[1::2]]
    ctx = multiprocessing.get_context("fork")
    pipes = [ctx.Pipe(duplex=False) for _ in shares]
    workers = [ctx.Process(target=_worker, args=(ds, rows, w)) for rows, (_, w) in zip(shares, pipes, strict=True)]
    for p in workers:
        p.start()
    got = [r.recv() if r.poll(60) else pytest.fail("a worker did not answer in 60 s") for r, _ in pipes]
    for p in workers:
        p.join(10)
        assert p.exitcode == 0
    digests = {i: d for _, part in got for i, d in part.items()}
    assert digests == {i: digest(reference[i]) for i in order}
    reads = block_reads(opened, ds.zip.size) + sum((block_reads(r, ds.zip.size) for r, _ in got), Counter())
    assert max(reads.values()) == 1  # one process fetched each block; the other read it from disk
    assert needed_blocks(ds, order) <= set(reads)


def _fetch_block(cache: BlockCache, path: Path, k: int, out: Any) -> None:
    cache.fetch(FileSource(path), k, wait=True)
    out.send(cache.has(k))


def test_a_worker_forked_while_a_block_is_being_fetched_waits_for_it_and_no_longer(
    buffer: Path, tmp_path: Path
) -> None:
    cache = BlockCache(tmp_path, "lakefs://r/c/x.zarr.zip", buffer.stat().st_size, block_bytes=BLOCK)
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)
    with cache._locked(3, wait=True) as held:  # this process is fetching block 3 ...
        assert held
        child = ctx.Process(target=_fetch_block, args=(cache, buffer, 3, writer))
        child.start()  # ... when a worker is forked: it must wait for the block, not inherit the lock
        assert not reader.poll(0.5)
        assert not cache.fetch(FileSource(buffer), 3, wait=False)  # busy, also for our other threads
    assert reader.poll(30), "the forked worker stayed blocked after the lock was released"
    assert reader.recv() is True
    child.join(10)
    assert child.exitcode == 0 and cache.fetched == 0  # the child fetched it, not us


def test_memory_prefetch_reads_each_scheduled_frame_once(
    buffer: Path, reference: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = local_dataset(buffer, SamplerConfig.umi())
    # samples whose frames are all different, so that "once" is exact per frame
    rows: list[int] = []
    seen: set[str] = set()
    for row in EpochOrder(len(ds), seed=1).permutation():
        names = set(ds._frame_names(int(row)))
        if not names & seen:
            rows.append(int(row))
            seen |= names
    delivered: Counter[str] = Counter()  # entries cut out of what the source returned, by name
    parse = ds.zip._parse_group

    def counting(group: Any, start: int, blob: bytes) -> dict[str, bytes]:
        out = parse(group, start, blob)
        delivered.update(out.keys())
        return out

    monkeypatch.setattr(ds.zip, "_parse_group", counting)
    before = source_of(ds).requests
    ds.schedule(rows)
    for at in range(0, len(rows), 3):
        batch = rows[at : at + 3]
        for i, sample in zip(batch, ds.__getitems__(batch), strict=True):
            assert_same(sample, reference[i])
    assert ds._ahead is not None and ds._ahead.wait_idle(30) and not ds._ahead._held
    assert delivered == Counter(seen)  # every frame read once, by the threads or by the reader
    assert source_of(ds).requests - before <= len(seen)


def test_getitems_equals_item_by_item_and_reads_the_batch_at_once(
    buffer: Path, reference: list[dict[str, Any]]
) -> None:
    ds = local_dataset(buffer, SamplerConfig.umi(), output="policy")
    window = local_dataset(buffer, SamplerConfig.umi())
    batch = [5, -1, 5, 17, 0, len(ds) - 3]
    before = source_of(ds).requests
    got = ds.__getitems__(batch)
    names = {n for i in batch for n in ds._frame_names(i % len(ds))}
    assert source_of(ds).requests - before == len(ds.zip._groups(names))  # one ranged read per run of neighbours
    for i, sample in zip(batch, got, strict=True):
        single = ds[i]
        np.testing.assert_array_equal(sample["action"], single["action"])
        for key, value in single["obs"].items():
            np.testing.assert_array_equal(sample["obs"][key], value)
    assert [digest(s) for s in window.__getitems__(batch)] == [digest(reference[i]) for i in batch]
    with pytest.raises(IndexError, match=f"sample {len(ds)} out of range"):
        ds.__getitems__([0, len(ds)])


def _read_after_fork(ds: LakeDataset, out: Any) -> None:
    ds.schedule([3, 4])
    out.send([digest(s) for s in ds.__getitems__([3, 4])])


def test_a_dataset_with_running_prefetch_pickles_and_forks(buffer: Path, reference: list[dict[str, Any]]) -> None:
    ds = local_dataset(buffer, SamplerConfig.umi())
    ds.schedule(list(range(len(ds))))
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._ahead is None
    assert_same(copy[7], reference[7])
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_read_after_fork, args=(ds, writer))
    child.start()
    assert reader.poll(60), "the forked reader hung"
    assert reader.recv() == [digest(reference[3]), digest(reference[4])]
    child.join(10)
    assert child.exitcode == 0


# ---------------------------------------------------------------- the prefetcher alone


class Gate:
    """A fetch function that records its calls and can be held shut."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.open = threading.Event()
        self.open.set()

    def __call__(self, keys: list[int]) -> dict[int, str]:
        self.open.wait(10)
        self.calls.append(list(keys))
        return {k: f"v{k}" for k in keys}


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_prefetcher_holds_at_most_its_window_and_a_new_plan_keeps_what_is_held() -> None:
    gate = Gate()
    ahead = Prefetcher(gate, group=2, ahead=4, threads=1)
    ahead.schedule(list(range(20)))
    wait_for(lambda: len(ahead._held) == 4)
    time.sleep(0.1)
    assert sorted(ahead._held) == [0, 1, 2, 3] and len(gate.calls) == 2  # the window is full: it waits
    assert ahead.take([0, 1]) == {0: "v0", 1: "v1"}
    wait_for(lambda: len(ahead._held) == 4 and 5 in ahead._held)
    ahead.schedule([3, 2, 9, 8])  # 2 and 3 are held already: not fetched again
    assert ahead.wait_idle(10)
    assert [k for call in gate.calls for k in call] == [0, 1, 2, 3, 4, 5, 9, 8]
    assert ahead.take([2, 3, 8, 9, 4]) == {2: "v2", 3: "v3", 8: "v8", 9: "v9", 4: "v4"}  # 4: left from the old plan
    assert ahead.take([1]) == {}  # handed over once


def test_a_key_taken_before_the_threads_reach_it_is_not_fetched() -> None:
    gate = Gate()
    gate.open.clear()
    ahead = Prefetcher(gate, group=1, ahead=8, threads=1)
    ahead.schedule([0, 1, 2, 3])
    assert ahead.take([2]) == {}  # the consumer reads 2 itself
    gate.open.set()
    assert ahead.wait_idle(10)
    assert [k for call in gate.calls for k in call] == [0, 1, 3]


def test_a_failed_prefetch_is_counted_and_leaves_the_key_to_the_reader() -> None:
    def fetch(keys: list[int]) -> dict[int, int]:
        if 1 in keys:
            raise OSError("connection reset")
        return {k: k for k in keys}

    ahead: Prefetcher[int] = Prefetcher(fetch, group=1, ahead=4, threads=2)
    ahead.schedule([0, 1, 2])
    assert ahead.wait_idle(10)
    assert ahead.errors == 1 and isinstance(ahead.last_error, OSError)
    assert ahead.take([0, 1, 2]) == {0: 0, 2: 2}
