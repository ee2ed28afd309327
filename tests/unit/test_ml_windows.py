"""robolake.ml's pure parts: UMI's index logic on many episode layouts, config checks, the epoch and batch orders."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from robolake.errors import ConfigError
from robolake.ml import BatchOrder, EpochOrder, KeyWindow, RunRecord, SamplerConfig, build_indices, val_mask
from robolake.ml.runs import record_key
from robolake.ml.windows import check_fits, lowdim_steps, rgb_steps
from tests.umi_training_loader import rgb_window, sampler_windows
from tests.unit.test_ml_reference import reference_indices, reference_val_mask


@pytest.mark.parametrize("seed", range(5))
def test_indices_equal_umis_on_random_layouts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ends = np.cumsum(rng.integers(20, 120, size=int(rng.integers(1, 9)))).astype(np.int64)
    assert [tuple(r) for r in build_indices(ends, SamplerConfig.umi(val_ratio=0.0)).tolist()] == sampler_windows(ends)
    for split, padding, ratio in itertools.product(("train", "val", "all"), (False, True), (0.0, 0.2, 0.5)):
        config = SamplerConfig.umi(split=split, action_padding=padding, val_ratio=ratio, split_seed=seed)
        assert [tuple(r) for r in build_indices(ends, config).tolist()] == reference_indices(ends, config)


@pytest.mark.parametrize(
    ("n", "ratio", "seed"), [(1, 0.5, 0), (3, 0.34, 3), (10, 0.05, 42), (100, 0.1, 7), (5, 0.0, 1)]
)
def test_val_mask_is_umis(n: int, ratio: float, seed: int) -> None:
    np.testing.assert_array_equal(val_mask(n, ratio, seed), reference_val_mask(n, ratio, seed))


def test_rgb_steps_are_umis_strided_front_padded_slice() -> None:
    frames = np.arange(100)
    for start, current, horizon, ds in itertools.product((0, 10), range(10, 40), (1, 2, 3), (1, 3)):
        window = KeyWindow(horizon=horizon, down_sample_steps=ds)
        expected = rgb_window(frames, current, start, horizon, ds)
        np.testing.assert_array_equal(frames[rgb_steps(current, start, window)], expected)


def test_lowdim_steps_shift_by_latency_and_clip_to_the_episode() -> None:
    window = KeyWindow(horizon=3, latency_steps=4, down_sample_steps=2)
    assert lowdim_steps(10, 10, 20, window).tolist() == [10, 12, 14]
    assert lowdim_steps(17, 10, 20, window).tolist() == [17, 19, 19]
    assert lowdim_steps(10, 10, 20, KeyWindow(horizon=3, down_sample_steps=2)).tolist() == [10, 10, 10]


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (SamplerConfig.umi(rgb={"camera0_rgb": KeyWindow(horizon=2, latency_steps=1)}), "'camera0_rgb': latency"),
        (SamplerConfig.umi(action=KeyWindow(horizon=0)), "'action': horizon 0"),
        (SamplerConfig.umi(lowdim={"robot0_eef_pos": KeyWindow(horizon=2, latency_steps=1.5)}), "1.5"),  # type: ignore[arg-type]
        (SamplerConfig.umi(val_ratio=1.0), "val_ratio 1.0"),
        (SamplerConfig.umi(split="test"), "split 'test'"),  # type: ignore[arg-type]
    ],
)
def test_bad_sampler_settings_are_one_clear_error(config: SamplerConfig, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        config.check()


def test_horizon_longer_than_every_episode_names_the_longest() -> None:
    ends = np.array([30, 70, 100], dtype=np.int64)
    with pytest.raises(ConfigError, match=r"spans 46 steps, longer than every episode .* \(longest 40 steps\)"):
        check_fits(ends, SamplerConfig.umi(val_ratio=0.0), "lakefs://r/c/p")
    check_fits(ends, SamplerConfig.umi(val_ratio=0.0, action_padding=True), "lakefs://r/c/p")


def test_epoch_order_is_seeded_and_resumes_with_exactly_the_rest() -> None:
    order = EpochOrder(50, seed=7)
    epoch0 = list(order)
    assert sorted(epoch0) == list(range(50)) and epoch0 == list(EpochOrder(50, seed=7))
    assert epoch0 != list(EpochOrder(50, seed=8))
    assert order.epoch == 1 and list(order) != epoch0  # the next epoch is a new permutation

    for k in (0, 1, 23, 49, 50):
        first = EpochOrder(50, seed=7)
        it = iter(first)
        taken = [next(it) for _ in range(k)]
        saved = json.loads(json.dumps(first.state_dict()))  # a checkpoint survives JSON
        resumed = EpochOrder(50, seed=7)
        resumed.load_state_dict(saved)
        assert taken + list(resumed) == epoch0
    with pytest.raises(ConfigError, match="n=50, seed=7"):
        EpochOrder(51, seed=7).load_state_dict(saved)


def round_robin(order: BatchOrder, epoch: int, start: int, workers: int) -> list[int]:
    """The batch numbers a DataLoader hands out: one from each worker in turn, skipping a worker that is done."""
    shares = [iter(order.share(epoch, start=start, worker=w, workers=workers)) for w in range(workers)]
    out: list[int] = []
    while shares:
        for share in list(shares):
            taken = next(share, None)
            if taken is None:
                shares.remove(share)
            else:
                out.append(taken[0])
                np.testing.assert_array_equal(taken[1], order.batch(epoch, taken[0]))
    return out


@pytest.mark.parametrize(("n", "size", "drop_last"), [(50, 8, False), (50, 8, True), (48, 8, False), (5, 8, False)])
def test_batch_order_cuts_the_epoch_order_and_shares_it_among_workers(n: int, size: int, drop_last: bool) -> None:
    order = BatchOrder(n=n, batch_size=size, seed=7, drop_last=drop_last)
    assert len(order) == (n // size if drop_last else -(-n // size))
    for epoch in (0, 3):
        samples = order.samples(epoch)
        np.testing.assert_array_equal(samples, EpochOrder(n, seed=7).permutation(epoch))  # one order for both
        batches = [order.batch(epoch, b) for b in range(len(order))]
        flat = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
        np.testing.assert_array_equal(flat, samples[: len(flat)])
        assert all(len(b) == size for b in batches[:-1]) and len(flat) == (n - n % size if drop_last else n)
        for workers, start in itertools.product((1, 2, 3, 5), (0, 1, len(order) // 2, len(order))):
            assert round_robin(order, epoch, start, workers) == list(range(start, len(order)))
    assert not np.array_equal(order.samples(0), order.samples(1))
    np.testing.assert_array_equal(BatchOrder(n=n, batch_size=size, seed=7, shuffle=False).samples(4), np.arange(n))
    with pytest.raises(IndexError, match=f"batch {len(order)} out of range"):
        order.batch(0, len(order))


def test_batch_order_state_resumes_only_the_loader_it_was_saved_for() -> None:
    order = BatchOrder(n=50, batch_size=8, seed=7)
    saved = json.loads(json.dumps(order.state(epoch=2, batches=3, commit_id="c0ffee")))
    assert order.position(saved, commit_id="c0ffee") == (2, 3)
    assert order.position({**saved, "batches": 7}, commit_id="c0ffee") == (2, 7)  # after the epoch's last batch
    others = [
        (BatchOrder(n=51, batch_size=8, seed=7), "c0ffee", r"n 50 \(this loader: 51\)"),
        (BatchOrder(n=50, batch_size=4, seed=7), "c0ffee", r"batch_size 8 \(this loader: 4\)"),
        (BatchOrder(n=50, batch_size=8, seed=8), "c0ffee", r"seed 7 \(this loader: 8\)"),
        (BatchOrder(n=50, batch_size=8, seed=7, shuffle=False), "c0ffee", r"shuffle True \(this loader: False\)"),
        (order, "beef", r"commit_id 'c0ffee' \(this loader: 'beef'\)"),
    ]
    for other, commit, named in others:
        with pytest.raises(ConfigError, match=rf"saved for another dataset or loader: {named}"):
            other.position(saved, commit_id=commit)
    with pytest.raises(ConfigError, match=r"n 50 \(this loader: 51\); batch_size 8 \(this loader: 4\)"):
        BatchOrder(n=51, batch_size=4, seed=7).position(saved, commit_id="c0ffee")
    for bad in ({**saved, "batches": 8}, {**saved, "batches": -1}, {**saved, "epoch": -1}, {**saved, "epoch": "1"}):
        with pytest.raises(ConfigError, match=r"expected epoch >= 0 and 0 <= batches <= 7"):
            order.position(bad, commit_id="c0ffee")
    with pytest.raises(ConfigError, match=r"lacks batch_size, shuffle, drop_last, commit_id, batches"):
        order.position(EpochOrder(50, seed=7).state_dict(), commit_id="c0ffee")
    with pytest.raises(ConfigError, match=r"not a loader state: \[1, 2\] lacks n, seed"):
        order.position([1, 2], commit_id="c0ffee")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"seed": -1}, "seed -1 is not"), ({"seed": 1.5}, "seed 1.5"), ({"batch_size": 0}, "batch_size 0")],
)
def test_bad_order_settings_are_one_clear_error(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        BatchOrder(**{"n": 10, "batch_size": 4, "seed": 0, **kwargs})  # type: ignore[arg-type]
    if "seed" in kwargs:
        with pytest.raises(ConfigError, match=named):
            EpochOrder(10, seed=kwargs["seed"])  # type: ignore[arg-type]


def test_run_record_round_trips_and_keys_are_one_segment() -> None:
    class Fake:
        def lineage(self) -> dict[str, object]:
            sampler = SamplerConfig.umi().as_dict()
            return {"repo": "r", "ref": "v1", "commit_id": "abc", "path": "p.zarr.zip", "sampler": sampler, "n": 3}

    record = RunRecord.for_dataset(Fake(), seed=5)
    assert RunRecord.from_json(record.to_json(), "x") == record
    assert record.key == f"results/{record.run_id}/run.json" and record.dataset == {"n": 3}
    assert record.sampler["action"] == {"horizon": 16, "latency_steps": 0, "down_sample_steps": 3}
    with pytest.raises(ConfigError, match="one non-empty path segment"):
        record_key("a/b")
