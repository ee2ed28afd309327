"""The dataloader benchmark's pure parts: parameters, episode order, bodies and decoding, the summary;
for the training path: parameters, the workers' shares, the sample check, UMI's loader, the memory sampler."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robolake.bench import core, dataloader, loaders, memory, training
from robolake.errors import ConfigError, RobolakeError
from robolake.ml import EpochOrder, SamplerConfig
from robolake.umi import generate_dataset
from tests.unit.test_ml_reference import BUFFER, local_dataset


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"episodes": 0}, "--episodes 0"),
        ({"frames": 0}, "--frames 0"),
        ({"frames": dataloader.MAX_FRAMES + 1}, "1 MB cache limit"),
        ({"episodes": 8, "batch_episodes": 9}, "--batch-episodes 9"),
        ({"paths": ("direct", "s3fs")}, "'s3fs'"),
        ({"paths": ("direct", "direct")}, "at most once"),
        ({"paths": ()}, "--paths"),
    ],
)
def test_bad_params_name_the_value(kwargs: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("(", r"\(")):
        dataloader.LoaderParams(**kwargs)  # type: ignore[arg-type]


def test_epoch_order_is_a_seeded_shuffle_per_epoch() -> None:
    order = dataloader.EpochOrder(10, seed=3)
    epochs = [[order.episode(e * 10 + i) for i in range(10)] for e in range(3)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(10))
    again = dataloader.EpochOrder(10, seed=3)
    assert [again.episode(p) for p in range(30)] == [x for epoch in epochs for x in epoch]
    assert [dataloader.EpochOrder(10, seed=4).episode(p) for p in range(10)] != epochs[0]


def test_bodies_are_deterministic_and_decode_to_frames_by_seven() -> None:
    bodies = dataloader.episode_bodies(seed=1, episodes=3, frames=25)
    assert bodies == dataloader.episode_bodies(seed=1, episodes=3, frames=25)
    assert bodies != dataloader.episode_bodies(seed=2, episodes=3, frames=25)
    pose, gripper = bodies[2]
    assert json.loads(pose)["episode_index"] == 2 and json.loads(gripper)["frame_count"] == 25
    sample = dataloader.decode_episode(pose, gripper)
    assert sample.shape == (25, 7) and sample.dtype == np.float32
    assert sample[:, 6] == pytest.approx(np.asarray(json.loads(gripper)["width_m"], dtype=np.float32))


def test_decoding_refuses_files_that_disagree_on_frames() -> None:
    ((pose, _),) = dataloader.episode_bodies(seed=0, episodes=1, frames=10)
    ((_, gripper),) = dataloader.episode_bodies(seed=0, episodes=1, frames=11)
    with pytest.raises(ValueError, match="frame count"):
        dataloader.decode_episode(pose, gripper)


def test_keys_follow_the_lake_layout_under_the_run_prefix() -> None:
    assert dataloader.episode_keys("run", 2)[1] == ("run/pose/episode_00001.json", "run/gripper/episode_00001.json")


def test_samples_series_and_summary() -> None:
    series = []
    for path, rate in (("direct", 100), ("accelerator", 250), ("accelerator batch", 800)):
        cell = core.Series(path, "load", 4, unit="episodes", seconds=1.0)
        for _ in range(rate):
            dataloader._record(cell, 1, 60, 1000, 0.002)
        series += [cell, dataloader.samples_series(cell)]
    assert series[1].unit == "samples" and series[1].count == 6000 and series[1].requests == 100
    summary = dataloader._summary(series, 4, {"pose": 10, "gripper": 2})
    assert summary["paths"]["accelerator"] == {
        "episodes_per_s": 250.0,
        "samples_per_s": 15000.0,
        "latency_p50_ms": 2.0,
        "latency_p99_ms": 2.0,
        "errors": 0,
    }
    assert summary["accelerator_vs_direct"] == 2.5 and summary["batch_vs_direct"] == 8.0


# ---- the training path (bench/training.py, loaders.py, memory.py) -------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"episodes": 1}, "--episodes 1 must be between 2 and 1000"),
        ({"workers": 0}, "--workers 0"),
        ({"epochs": 0}, "--epochs 0"),
        ({"batch_size": 0}, "--batch-size 0"),
        ({"profile": "huge"}, "--profile 'huge' is unknown"),
        ({"block_bytes": 1000}, "--block-size 1000"),
        ({"loaders": ("robolake", "naive")}, "give umi (the baseline)"),
        ({"loaders": ("umi", "s3fs")}, "unknown: 's3fs'"),
        ({"loaders": ("umi", "umi")}, "each once"),
    ],
)
def test_bad_training_params_name_the_value(kwargs: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("(", r"\(").replace(")", r"\)")):
        training.TrainingParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "workers", "batch"), [(47, 2, 4), (100, 3, 16), (5, 4, 2), (16, 1, 16)])
def test_workers_share_each_epoch_round_robin_like_a_dataloader(n: int, workers: int, batch: int) -> None:
    plan = loaders.Plan(workers=workers, batch_size=batch, seed=7)
    for epoch in (0, 1):
        order = [int(i) for i in EpochOrder(n, seed=7).permutation(epoch)]
        cut = [order[b : b + batch] for b in range(0, n, batch)]
        shares = [loaders.my_batches(n, plan, epoch, w) for w in range(workers)]
        assert [shares[b % workers][b // workers] for b in range(len(cut))] == cut
    assert loaders.my_batches(n, plan, 0, 0) != loaders.my_batches(n, plan, 1, 0) or n <= batch


def _result(sums: dict[int, int], split: int = 2) -> dict[str, object]:
    items = sorted(sums.items())
    return {"workers": [{"checksums": dict(items[w::split])} for w in range(split)]}


def test_check_samples_wants_every_sample_once_and_equal_to_umis() -> None:
    good = {i: i * 7 for i in range(10)}
    ok = {"umi": [[_result(good), _result(good)]], "robolake": [[_result(good)], [_result(good)]]}
    training.check_samples(ok, 10)  # type: ignore[arg-type]
    cases = [
        ({"robolake": [[_result(good)], [_result({**good, 3: 0})]]}, r"robolake, epoch 2: 1 samples differ .*sample 3"),
        (
            {"naive": [[_result({i: good[i] for i in range(9)})]]},
            "naive, epoch 1: read 9 distinct samples, expected 10",
        ),
        ({"umi": [[_result(good), _result({**good, 9: 1})]]}, "umi, epoch 1: 1 samples differ"),  # its second run
    ]
    for runs, message in cases:
        with pytest.raises(RobolakeError, match=message):
            training.check_samples({"umi": [[_result(good)]], **runs}, 10)  # type: ignore[dict-item]
    twice = {"workers": [{"checksums": {0: 0, 1: 7}}, {"checksums": {1: 7}}]}
    with pytest.raises(RobolakeError, match="umi, epoch 1: sample 1 was read twice"):
        training.check_samples({"umi": [[twice]]}, 2)


def test_umis_loader_runs_right_before_and_after_robolakes_epoch() -> None:
    assert training.turns(("umi", "robolake", "naive")) == ["umi", "robolake", "umi", "naive"]
    assert training.turns(("umi", "naive", "robolake-nocache")) == ["umi", "naive", "robolake-nocache"]


def test_umis_loader_and_robolakes_give_the_same_windows(tmp_path: Path) -> None:
    generate_dataset(tmp_path, profile="tiny", episodes=3, seed=11)
    config = SamplerConfig.umi()
    umi = loaders.UmiMemoryLoader(tmp_path / BUFFER, config)
    ours = local_dataset(tmp_path / BUFFER, config)
    assert len(umi) == len(ours) > 0
    assert [loaders.checksum(umi[i]) for i in range(len(umi))] == [
        loaders.checksum(s) for s in ours.__getitems__(list(range(len(ours))))
    ]
    changed = {**umi[3], "action": umi[3]["action"] + 1}
    assert loaders.checksum(changed) != loaders.checksum(umi[3])


def _sleep_then_exit() -> None:
    time.sleep(5)


def test_tree_memory_sums_a_process_and_its_children() -> None:
    child = multiprocessing.get_context("fork").Process(target=_sleep_then_exit, daemon=True)
    child.start()
    try:
        assert child.pid in memory.descendants(os.getpid())
        now = memory.tree_memory(os.getpid())
        assert now["processes"] >= 2 and now["rss_bytes"] >= now["pss_bytes"] > 0
        with memory.TreeMemory({"me": os.getpid()}, interval_s=0.01) as sampler:
            time.sleep(0.1)
        assert sampler.samples >= 2 and sampler.peaks["me"]["rss_bytes"] >= now["rss_bytes"] // 2
    finally:
        child.terminate()
        child.join(5)


def test_options_of_the_other_mode_are_refused() -> None:
    robolake = str(Path(sys.executable).parent / "robolake")
    env = {**os.environ, "ROBOLAKE_ENV_FILE": "/nonexistent/.env"}
    for args, message in (
        (["--workers", "2"], "--workers only apply to --mode training"),
        (
            ["--mode", "training", "--paths", "direct", "--duration", "3"],
            "--duration, --paths only apply to --mode json",
        ),
        (["--mode", "training", "--block-size", "lots"], "--block-size 'lots' is not like 4096"),
    ):
        result = subprocess.run(
            [robolake, "bench", "dataloader", *args], check=False, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
