"""The accelerator's parts on their own: tiered cache, epochs, the header rule, metrics, background tasks."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from robolake.accelerator.answer import answer_from_copy
from robolake.accelerator.cache import CachedObject, TieredCache
from robolake.accelerator.headers import forwarded, relayed, replayable
from robolake.accelerator.invalidation import Epochs, write_targets
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.tasks import BackgroundTasks
from robolake.accelerator.tiers import DiskTier, MemoryTier


def copy(body: bytes = b"payload", etag: str = '"e"') -> CachedObject:
    return CachedObject(body, (("ETag", etag), ("Content-Type", "application/json")), etag, 1.0, ())


def test_a_fill_lands_in_memory_an_eviction_on_disk_and_invalidation_reaches_every_tier(tmp_path: Path) -> None:
    memory, disk = MemoryTier(1 << 20), DiskTier(tmp_path, 1 << 20)
    cache = TieredCache([memory, disk], Metrics())
    key = ("b", "k")
    assert cache.store(key, copy(), cache.epoch(key))
    assert key in memory and key not in disk  # no disk write while memory holds it
    memory.discard(key)  # a discard is not an eviction: nothing moves down
    assert key not in cache
    assert cache.store(key, copy(), cache.epoch(key))
    for n in range(400):  # fill memory until the key is evicted: it moves to disk
        cache.store(("b", f"other{n}"), copy(b"x" * 4096), cache.epoch(("b", f"other{n}")))
    assert key not in memory and key in disk and memory.stats.evictions > 0
    assert cache.lookup(key) == (copy(), "disk")
    assert key in memory and cache.lookup(key) == (copy(), "memory")
    cache.invalidate([key], "write")
    assert key not in cache and cache.lookup(key) == (None, "miss")
    assert cache.metrics.counters["invalidation_write"] == 1


def test_a_store_after_an_invalidation_is_refused_and_a_bucket_write_drops_the_bucket(tmp_path: Path) -> None:
    cache = TieredCache([MemoryTier(1 << 20)], Metrics())
    epoch = cache.epoch(("b", "k"))
    cache.invalidate([("b", "k")], "notification")
    assert not cache.store(("b", "k"), copy(), epoch)
    assert cache.metrics.counters["fill_dropped_after_invalidation"] == 1
    for key in ("x", "y"):
        cache.store(("b", key), copy(), cache.epoch(("b", key)))
    cache.store(("other", "x"), copy(), cache.epoch(("other", "x")))
    epoch = cache.epoch(("b", "z"))
    cache.invalidate(write_targets("DELETE", "b", "", {}), "write")
    assert [k in cache for k in (("b", "x"), ("b", "y"), ("other", "x"))] == [False, False, True]
    assert not cache.store(("b", "z"), copy(), epoch)  # a fill of that bucket in flight meanwhile


def test_epochs_forget_old_keys_without_ever_letting_a_stale_fill_in() -> None:
    rng = random.Random(7)
    epochs = Epochs(limit=8)
    keys = [("b", str(i)) for i in range(40)]
    for _ in range(2000):
        key = rng.choice(keys)
        captured = epochs.current(key)
        for other in rng.sample(keys, rng.randint(0, 12)):
            epochs.bump(other)
        if rng.random() < 0.3:
            epochs.bump(key)
            assert epochs.current(key) != captured, "a fill that raced this invalidation would be stored"


def test_one_header_rule_for_both_directions() -> None:
    sent = [
        ("ETag", '"e"'),
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Authenticate", "Basic"),
        ("Trailer", "x"),
        ("Upgrade", "h2c"),
        ("TE", "trailers"),
        ("Date", "d"),
        ("X-Amz-Request-Id", "r"),
        ("Content-Length", "3"),
        ("Access-Control-Allow-Origin", "*"),
        ("Vary", "Origin"),
    ]
    assert relayed(sent) == [
        ("ETag", '"e"'),
        ("Date", "d"),
        ("X-Amz-Request-Id", "r"),
        ("Access-Control-Allow-Origin", "*"),
        ("Vary", "Origin"),
    ]
    assert replayable(sent) == [("ETag", '"e"'), ("Vary", "Origin")]
    assert forwarded([("Authorization", "a"), ("Connection", "close"), ("Content-Length", "3")]) == [
        ("Authorization", "a"),
        ("Content-Length", "3"),
    ]
    # a second spelling of a name takes the first's: aiohttp's client would let it replace the first value
    assert forwarded([("x-amz-date", "A"), ("Vary", "v"), ("X-Amz-Date", ""), ("X-AMZ-DATE", "B")]) == [
        ("x-amz-date", "A"),
        ("Vary", "v"),
        ("x-amz-date", ""),
        ("x-amz-date", "B"),
    ]
    cached = CachedObject.from_response(b"abc", sent, checksums_asked=False, validated_at=0.0)
    assert cached.headers == (("ETag", '"e"'), ("Vary", "Origin"))


def test_answers_from_a_copy() -> None:
    obj = copy(b"0123456789")
    head = answer_from_copy("HEAD", {"range": "bytes=2-4"}, obj)
    assert head is not None and (head.status, head.body, head.length) == (206, b"", 3)
    assert ("Content-Range", "bytes 2-4/10") in head.headers
    unknown = CachedObject(b"x", (("ETag", '"e"'),), '"e"', 1.0, None)
    assert answer_from_copy("GET", {"x-amz-checksum-mode": "ENABLED"}, unknown) is None  # MinIO knows them
    assert answer_from_copy("GET", {"range": "bytes=10-"}, obj) is None  # MinIO's 416
    assert answer_from_copy("GET", {"if-match": '"x"'}, obj) is None  # MinIO's 412
    not_modified = answer_from_copy("GET", {"if-none-match": '"e"', "range": "bytes=99-"}, obj)
    assert not_modified is not None and (not_modified.status, not_modified.headers) == (304, [("ETag", '"e"')])


def test_the_exposition_is_prometheus_text_with_the_old_names() -> None:
    metrics = Metrics()
    metrics.inc("requests_get", 2)
    metrics.client_latency["hit_memory"].observe(0.0003)
    metrics.upstream_latency["get"].observe(20.0)
    tiers = {"memory": {"hits": 1, "misses": 2, "evictions": 0, "corrupt": 0, "bytes_served": 5}}
    text = metrics.render({"hit_ratio": 0.5}, tiers, {'http://n"1': 3}).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    prefix = "robolake_accelerator_"
    assert set(families) == {
        prefix + name
        for name in (
            "cache_requests",
            "cache_evictions",
            "cache_bytes_served",
            "events",
            "upstream_errors",
            "hit_ratio",
            "client_latency_seconds",
            "upstream_latency_seconds",
        )
    }
    assert 'robolake_accelerator_events_total{kind="requests_get"} 2.0' in text
    assert 'robolake_accelerator_upstream_errors_total{node="http://n\\"1"} 3.0' in text  # escaped by the library
    buckets = [s for s in families[prefix + "upstream_latency_seconds"].samples if s.name.endswith("_bucket")]
    assert [s.value for s in buckets][-2:] == [0.0, 1.0] and buckets[-1].labels["le"] == "+Inf"
    assert metrics.latency_summary()["client.hit_memory"]["p50_ms_le"] == 0.5


def test_background_tasks_are_cancelled_and_awaited() -> None:
    async def main() -> None:
        tasks = BackgroundTasks("test")
        stopped: list[str] = []

        async def forever(name: str) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)  # cleanup that itself awaits: close() must wait for it
                stopped.append(name)

        for name in ("a", "b"):
            tasks.spawn(forever(name))
        await asyncio.sleep(0)
        await tasks.close()
        assert sorted(stopped) == ["a", "b"] and len(tasks) == 0
        with pytest.raises(RuntimeError, match="after close"):
            tasks.spawn(forever("late"))

    asyncio.run(main())
