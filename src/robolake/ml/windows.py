"""Which steps one training sample takes, exactly as UMI's ``SequenceSampler`` takes them.

Written from ``diffusion_policy/common/sampler.py`` of real-stanford/universal_manipulation_interface
(``SequenceSampler.__init__``, ``sample_sequence`` and ``get_val_mask``), in our own words:

- A sample is a *current* step of an episode the mask keeps. Without action padding, a current
  step is kept only while the action window fits: ``end >= current + (H_action - 1) * ds_action + 1``.
- rgb keys: ``min(H, (current - start) // ds + 1)`` frames strided back from ``current`` by ``ds``,
  front-padded by repeating the earliest one. UMI asserts their latency is 0; so do we.
- low-dim keys: steps ``current - k * ds + latency`` for ``k = H-1 .. 0``, clipped to the episode.
  UMI evaluates ``interp1d`` (``Slerp`` for rotations) at those steps; with whole-step latencies
  they are the knots, so the values are the stored samples, which is what we return (a
  fractional latency would need the interpolation and is refused).
- action: steps ``current, current + ds, ...`` up to ``end`` (exclusive); with action padding the
  last one is repeated to the horizon. Its latency must be 0, as UMI asserts.
- ``val_mask``: UMI's ``get_val_mask`` (``round(n * ratio)`` episodes, at least one each side,
  chosen by ``np.random.default_rng(seed).choice``); the train split is its complement.

Not taken over: ``max_duration`` (UMI caps the episode *end index*, not its length),
``repeat_frame_prob`` (random frame repeats before the first grasp; 0 in ``task/umi.yaml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from robolake.errors import ConfigError

Split = Literal["train", "val", "all"]
IntArray = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeyWindow:
    """How one key is windowed: ``horizon`` steps, ``down_sample_steps`` apart, shifted by ``latency_steps``."""

    horizon: int
    latency_steps: int = 0
    down_sample_steps: int = 1

    def check(self, key: str) -> None:
        if self.horizon < 1 or self.down_sample_steps < 1:
            raise ConfigError(
                f"sampler key {key!r}: horizon {self.horizon} and down_sample_steps "
                f"{self.down_sample_steps} must both be at least 1"
            )
        if not isinstance(self.latency_steps, int) or isinstance(self.latency_steps, bool):
            raise ConfigError(
                f"sampler key {key!r}: latency_steps {self.latency_steps!r} is not a whole number of steps; "
                "UMI interpolates at fractional latencies, which this reader does not do yet"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """UMI's sampler settings: per-key windows, the action window, padding and the episode split."""

    rgb: Mapping[str, KeyWindow]
    lowdim: Mapping[str, KeyWindow]
    action: KeyWindow
    action_padding: bool = False
    val_ratio: float = 0.0
    split_seed: int = 42
    split: Split = "train"

    @classmethod
    def umi(cls, **changes: Any) -> SamplerConfig:
        """``task/umi.yaml``: obs down-sampled by 3, image and low-dim horizon 2, action horizon 16.

        Its latencies are ``(camera - robot latency) * dataset_frequeny`` with the frequency 0, so 0;
        its ``val_ratio`` is 0.05 with seed 42. The ``*_wrt_start`` key is a policy-side transform
        of ``demo_start_pose`` and is left out.
        """
        obs = KeyWindow(horizon=2, down_sample_steps=3)
        lowdim = {f"robot0_{k}": obs for k in ("eef_pos", "eef_rot_axis_angle", "gripper_width")}
        base = cls(
            rgb={"camera0_rgb": obs},
            lowdim=lowdim,
            action=KeyWindow(horizon=16, down_sample_steps=3),
            val_ratio=0.05,
        )
        return dataclasses.replace(base, **changes)

    def check(self) -> None:
        """Raise ConfigError for a setting UMI's sampler would refuse (or assert on)."""
        for key, window in (*self.rgb.items(), *self.lowdim.items(), ("action", self.action)):
            window.check(key)
        for key, window in (*self.rgb.items(), ("action", self.action)):
            if window.latency_steps != 0:
                raise ConfigError(
                    f"sampler key {key!r}: latency_steps must be 0 (UMI asserts it), got {window.latency_steps}"
                )
        if not self.rgb and not self.lowdim:
            raise ConfigError("sampler config has no observation keys; give at least one rgb or low-dim key")
        if not 0.0 <= self.val_ratio < 1.0:
            raise ConfigError(f"val_ratio {self.val_ratio!r} must be in [0, 1)")
        if self.split not in ("train", "val", "all"):
            raise ConfigError(f"split {self.split!r} is not one of 'train', 'val', 'all'")

    @property
    def robots(self) -> int:
        """UMI counts robots by the low-dim keys ending in ``eef_pos``; the action has 7 values per robot."""
        return max(1, sum(key.endswith("eef_pos") for key in self.lowdim))

    def action_sources(self) -> list[str]:
        """The arrays UMI's action is concatenated from, in order."""
        parts = ("eef_pos", "eef_rot_axis_angle", "gripper_width")
        return [f"robot{r}_{part}" for r in range(self.robots) for part in parts]

    def needed_arrays(self) -> list[str]:
        return sorted({*self.rgb, *self.lowdim, *self.action_sources()})

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for a run record."""
        return {
            "rgb": {k: dataclasses.asdict(v) for k, v in self.rgb.items()},
            "lowdim": {k: dataclasses.asdict(v) for k, v in self.lowdim.items()},
            "action": dataclasses.asdict(self.action),
            "action_padding": self.action_padding,
            "val_ratio": self.val_ratio,
            "split_seed": self.split_seed,
            "split": self.split,
        }


def val_mask(n_episodes: int, val_ratio: float, seed: int = 0) -> npt.NDArray[np.bool_]:
    """UMI's ``get_val_mask``: which episodes are held out for validation."""
    mask = np.zeros(n_episodes, dtype=bool)
    if val_ratio <= 0:
        return mask
    n_val = min(max(1, round(n_episodes * val_ratio)), n_episodes - 1)
    mask[np.random.default_rng(seed=seed).choice(n_episodes, size=n_val, replace=False)] = True
    return mask


def episode_mask(config: SamplerConfig, n_episodes: int) -> npt.NDArray[np.bool_]:
    held_out = val_mask(n_episodes, config.val_ratio, config.split_seed)
    if config.split == "all":
        return np.ones(n_episodes, dtype=bool)
    return held_out if config.split == "val" else ~held_out


def build_indices(episode_ends: IntArray, config: SamplerConfig) -> IntArray:
    """``(current, start, end)`` per sample, in UMI's order; shape (N, 3)."""
    mask = episode_mask(config, len(episode_ends))
    reach = (config.action.horizon - 1) * config.action.down_sample_steps + 1
    rows: list[IntArray] = []
    start = 0
    for keep, end in zip(mask, (int(e) for e in episode_ends), strict=True):
        last = end if config.action_padding else end - reach + 1  # exclusive bound of `current`
        if keep and last > start:
            current = np.arange(start, last, dtype=np.int64)
            rows.append(np.stack([current, np.full_like(current, start), np.full_like(current, end)], axis=1))
        start = end
    return np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)


def check_fits(episode_ends: IntArray, config: SamplerConfig, where: str) -> None:
    """ConfigError when no episode the split keeps is long enough for one action window."""
    if len(build_indices(episode_ends, config)):
        return
    lengths = np.diff(np.concatenate([[0], episode_ends]))
    kept = lengths[episode_mask(config, len(lengths))]
    reach = (config.action.horizon - 1) * config.action.down_sample_steps + 1
    longest = int(kept.max()) if kept.size else 0
    raise ConfigError(
        f"action horizon {config.action.horizon} with down_sample_steps {config.action.down_sample_steps} spans "
        f"{reach} steps, longer than every episode of split {config.split!r} in {where} (longest {longest} "
        "steps): no sample fits; shorten the horizon, or set action_padding"
    )


def rgb_steps(current: int, start: int, window: KeyWindow) -> IntArray:
    """The frames of one rgb window, oldest first, front-padded with the earliest."""
    valid = min(window.horizon, (current - start) // window.down_sample_steps + 1)
    first = current - (valid - 1) * window.down_sample_steps
    steps = np.arange(first, current + 1, window.down_sample_steps, dtype=np.int64)
    return np.concatenate([np.full(window.horizon - valid, first, dtype=np.int64), steps])


def lowdim_steps(current: int, start: int, end: int, window: KeyWindow) -> IntArray:
    """The steps of one low-dim window, oldest first, shifted by the latency, clipped to the episode."""
    back = np.arange(window.horizon - 1, -1, -1, dtype=np.int64) * window.down_sample_steps
    return np.clip(current - back + window.latency_steps, start, end - 1)


def action_steps(current: int, end: int, window: KeyWindow, padding: bool) -> IntArray:
    """The steps of the action window; with padding, the last one repeated up to the horizon."""
    stop = min(end, current + (window.horizon - 1) * window.down_sample_steps + 1)
    steps = np.arange(current, stop, window.down_sample_steps, dtype=np.int64)
    if padding and len(steps) < window.horizon:
        steps = np.concatenate([steps, np.full(window.horizon - len(steps), steps[-1], dtype=np.int64)])
    return steps
