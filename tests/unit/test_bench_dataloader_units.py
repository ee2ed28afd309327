"""The dataloader benchmark's pure parts: parameters, episode order, bodies and decoding, the summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robolake.bench import core, dataloader
from robolake.errors import ConfigError


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
