"""Low-dim features mapped linearly by a dataset's statistics: to [-1, 1] by min/max, or to zero mean and unit std.

    norm = Normalizer.from_stats(json.loads(stats_json), mode="limits")     # stats.json of `process stats`
    norm.normalize("robot0_eef_pos", x)        # x * scale + offset, per feature dimension, float32
    norm.unnormalize("action", y)              # the inverse: what a policy's output means in metres
    LakeDataset.open(settings, "v1.0", "replay_buffer/dataset.zarr.zip", normalize="limits")

Every feature dimension ``d`` gets ``y = x * scale[d] + offset[d]``, the same affine map as
diffusion_policy's ``LinearNormalizer`` (``_fit`` with ``fit_offset=True``), computed from the
statistics ``robolake process stats`` wrote rather than from the data:

- ``limits``: ``scale = (hi - lo) / (max - min)``, ``offset = lo - scale * min``, so ``[min, max]``
  maps onto ``[lo, hi]`` (default ``[-1, 1]``). A dimension whose range is below ``range_eps``
  (1e-4, a constant such as a fixed gripper) is not stretched: ``scale = 1`` and it is shifted so
  that ``min`` lands on the middle of the output range.
- ``gaussian``: ``scale = 1 / std``, ``offset = -mean / std``; a dimension with ``std < range_eps``
  keeps ``scale = 1`` (only centred).

The action (UMI's: eef_pos, eef_rot_axis_angle and gripper_width concatenated per robot) is mapped
with the maps of the arrays it is made of, concatenated the same way. Images are not touched (the
policy's encoder has its own normalisation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from robolake.errors import ConfigError

Mode = Literal["limits", "gaussian"]
MODES = ("limits", "gaussian")
RANGE_EPS = 1e-4


@dataclasses.dataclass(frozen=True)
class AffineMap:
    """``y = x * scale + offset`` along the last axis."""

    scale: npt.NDArray[np.float64]
    offset: npt.NDArray[np.float64]

    def forward(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        return (np.asarray(x, dtype=np.float64) * self.scale + self.offset).astype(np.float32)

    def inverse(self, y: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return (np.asarray(y, dtype=np.float64) - self.offset) / self.scale


def fit_map(
    stats: Mapping[str, Sequence[float]],
    mode: Mode,
    output_range: tuple[float, float] = (-1.0, 1.0),
    range_eps: float = RANGE_EPS,
) -> AffineMap:
    """The map of one feature from its ``min``/``max`` (limits) or ``mean``/``std`` (gaussian)."""
    lo, hi = output_range
    if not hi > lo:
        raise ConfigError(f"output range {output_range!r} must go from low to high")
    if mode == "limits":
        low, high = np.asarray(stats["min"], dtype=np.float64), np.asarray(stats["max"], dtype=np.float64)
        span = high - low
        flat = span < range_eps
        scale = np.where(flat, 1.0, (hi - lo) / np.where(flat, 1.0, span))
        offset = np.where(flat, (hi + lo) / 2 - low, lo - scale * low)
        return AffineMap(scale, offset)
    if mode == "gaussian":
        mean, std = np.asarray(stats["mean"], dtype=np.float64), np.asarray(stats["std"], dtype=np.float64)
        scale = 1.0 / np.where(std < range_eps, 1.0, std)
        return AffineMap(scale, -mean * scale)
    raise ConfigError(f"normalize mode {mode!r} is not one of {list(MODES)}")


class Normalizer:
    """Affine maps per feature name (and one for ``action``); pickles with the dataset."""

    def __init__(self, maps: Mapping[str, AffineMap], mode: Mode, source: str = "") -> None:
        self.maps, self.mode, self.source = dict(maps), mode, source

    @classmethod
    def from_stats(
        cls,
        stats: Mapping[str, Any],
        mode: Mode = "limits",
        *,
        action_sources: Sequence[str] = (),
        output_range: tuple[float, float] = (-1.0, 1.0),
        source: str = "stats.json",
    ) -> Normalizer:
        """Maps for every feature of a LeRobot-style stats document; ``action`` from `action_sources` when given."""
        if mode not in MODES:
            raise ConfigError(f"normalize mode {mode!r} is not one of {list(MODES)}")
        maps = {}
        for name, values in stats.items():
            needed = ("min", "max") if mode == "limits" else ("mean", "std")
            if not isinstance(values, Mapping) or any(k not in values for k in needed):
                raise ConfigError(
                    f"{source}: feature {name!r} has no {' and '.join(needed)}; write the file with `process stats`"
                )
            maps[name] = fit_map(values, mode, output_range)
        missing = [s for s in action_sources if s not in maps]
        if missing:
            raise ConfigError(
                f"{source} has no statistics of {missing}, which the action is made of; it has {sorted(maps)}"
            )
        if action_sources:
            parts = [maps[s] for s in action_sources]
            scale, offset = (np.concatenate([getattr(p, a) for p in parts]) for a in ("scale", "offset"))
            maps["action"] = AffineMap(scale, offset)
        return cls(maps, mode, source)

    def __repr__(self) -> str:
        return f"Normalizer({self.mode!r}, {sorted(self.maps)}, from {self.source!r})"

    def _map(self, key: str) -> AffineMap:
        try:
            return self.maps[key]
        except KeyError:
            raise ConfigError(f"{self.source} has no statistics of {key!r}; it has {sorted(self.maps)}") from None

    def normalize(self, key: str, x: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        return self._map(key).forward(x)

    def unnormalize(self, key: str, y: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return self._map(key).inverse(y)

    def require(self, keys: Sequence[str]) -> None:
        """ConfigError naming every key of `keys` this normalizer has no map for."""
        missing = [k for k in keys if k not in self.maps]
        if missing:
            raise ConfigError(f"{self.source} has no statistics of {missing}; it has {sorted(self.maps)}")

    def apply(self, window: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
        """`window` with each of `keys` normalized (float32); other entries as they were."""
        return {k: (self.normalize(k, v) if k in keys else v) for k, v in window.items()}

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "source": self.source, "features": sorted(self.maps)}
