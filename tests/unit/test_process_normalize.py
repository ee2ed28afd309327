"""The normalizer's math (robolake.ml.normalizer) from stats.json as `process stats` writes it."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from robolake.errors import ConfigError
from robolake.ingest.lerobot_write import feature_stats
from robolake.ml.normalizer import Normalizer, fit_map

RNG = np.random.default_rng(3)


def _stats(**arrays: np.ndarray) -> dict[str, Any]:
    """What `process stats` writes: LeRobot-style stats as JSON lists."""
    return {k: {n: v.tolist() for n, v in feature_stats(a).items()} for k, a in arrays.items()}


def test_limits_maps_min_and_max_of_every_dimension_onto_minus_one_and_one() -> None:
    x = RNG.normal([0.3, -2.0, 50.0], [0.01, 1.0, 20.0], size=(500, 3))
    norm = Normalizer.from_stats(_stats(pos=x), "limits")
    y = norm.normalize("pos", x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.min(axis=0), -1.0, atol=1e-6)
    np.testing.assert_allclose(y.max(axis=0), 1.0, atol=1e-6)
    expected = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0)) * 2 - 1  # the textbook min/max map
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_allclose(norm.unnormalize("pos", y), x, rtol=1e-6, atol=1e-6)


def test_limits_into_another_range() -> None:
    x = RNG.uniform(-5, 5, size=(100, 2))
    y = Normalizer.from_stats(_stats(a=x), "limits", output_range=(0.0, 1.0)).normalize("a", x)
    np.testing.assert_allclose([y.min(), y.max()], [0.0, 1.0], atol=1e-6)


def test_a_constant_dimension_is_shifted_to_the_middle_not_stretched() -> None:
    x = np.column_stack([np.full(50, 0.085), RNG.uniform(0, 1, 50)])  # a gripper that never moved
    m = fit_map(feature_stats(x), "limits")
    assert m.scale[0] == 1.0 and m.offset[0] == pytest.approx(-0.085)
    y = m.forward(x)
    np.testing.assert_allclose(y[:, 0], 0.0, atol=1e-7)


def test_gaussian_gives_zero_mean_and_unit_std() -> None:
    x = RNG.normal([1.0, -3.0], [0.2, 4.0], size=(2000, 2))
    norm = Normalizer.from_stats(_stats(v=x), "gaussian")
    y = norm.normalize("v", x).astype(np.float64)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(y.std(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(y, (x - x.mean(axis=0)) / x.std(axis=0), atol=1e-5)
    flat = fit_map(feature_stats(np.full((10, 1), 2.0)), "gaussian")
    assert flat.scale[0] == 1.0 and flat.forward(np.array([[2.0]]))[0, 0] == 0.0


def test_the_action_uses_the_maps_of_the_arrays_it_is_made_of() -> None:
    pos, rot, width = RNG.normal(size=(80, 3)), RNG.normal(size=(80, 3)), RNG.uniform(0, 0.1, size=(80, 1))
    sources = ["robot0_eef_pos", "robot0_eef_rot_axis_angle", "robot0_gripper_width"]
    stats = _stats(robot0_eef_pos=pos, robot0_eef_rot_axis_angle=rot, robot0_gripper_width=width)
    norm = Normalizer.from_stats(stats, "limits", action_sources=sources)
    action = np.concatenate([pos, rot, width], axis=1)
    parts = np.concatenate([norm.normalize(s, a) for s, a in zip(sources, (pos, rot, width), strict=True)], axis=1)
    np.testing.assert_array_equal(norm.normalize("action", action), parts)
    window = {"robot0_eef_pos": pos[:2], "camera0_rgb": np.zeros((2, 4, 4, 3), np.uint8), "action": action[:16]}
    out = norm.apply(window, ["robot0_eef_pos", "action"])
    assert out["camera0_rgb"] is window["camera0_rgb"] and out["action"].dtype == np.float32
    again = pickle.loads(pickle.dumps(norm))
    np.testing.assert_array_equal(again.normalize("action", action), norm.normalize("action", action))


def test_missing_statistics_are_named() -> None:
    stats = _stats(robot0_eef_pos=RNG.normal(size=(5, 3)))
    with pytest.raises(ConfigError, match=r"no statistics of \['robot0_gripper_width'\]"):
        Normalizer.from_stats(stats, "limits", action_sources=["robot0_eef_pos", "robot0_gripper_width"])
    with pytest.raises(ConfigError, match="has no statistics of 'robot0_x'"):
        Normalizer.from_stats(stats, "gaussian").normalize("robot0_x", np.zeros((1, 3)))
    with pytest.raises(ConfigError, match="has no mean and std"):
        Normalizer.from_stats({"a": {"min": [0], "max": [1]}}, "gaussian")
    with pytest.raises(ConfigError, match="normalize mode 'zscore'"):
        Normalizer.from_stats(stats, "zscore")  # type: ignore[arg-type]
