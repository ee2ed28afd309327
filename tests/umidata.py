"""Synthetic low-dimensional UMI episodes for replay-buffer tests (random, not physical)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def random_lowdim(
    lengths: Sequence[int], *, robots: int = 1, poses: bool = True, seed: int = 0
) -> list[dict[str, np.ndarray[Any, Any]]]:
    """One dict of robot{r}_* arrays per episode, with UMI's dtypes and widths."""
    rng = np.random.default_rng(seed)
    episodes = []
    for t in lengths:
        ep: dict[str, np.ndarray[Any, Any]] = {}
        for r in range(robots):
            ep[f"robot{r}_eef_pos"] = rng.normal(size=(t, 3)).astype(np.float32)
            ep[f"robot{r}_eef_rot_axis_angle"] = rng.normal(size=(t, 3)).astype(np.float32)
            ep[f"robot{r}_gripper_width"] = rng.uniform(0, 0.08, (t, 1)).astype(np.float32)
            if poses:
                ep[f"robot{r}_demo_start_pose"] = np.tile(rng.normal(size=6), (t, 1))
                ep[f"robot{r}_demo_end_pose"] = np.tile(rng.normal(size=6), (t, 1))
        episodes.append(ep)
    return episodes
