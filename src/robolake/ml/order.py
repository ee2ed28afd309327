"""A seeded, resumable epoch order over a map-style dataset's indices.

    order = EpochOrder(len(dataset), seed=7)
    for i in order: ...                      # epoch 0, a fixed permutation of range(n)
    saved = order.state_dict()               # {"n": .., "seed": .., "epoch": .., "position": k}
    resumed = EpochOrder(len(dataset), seed=7); resumed.load_state_dict(saved)
    list(resumed)                            # exactly the indices epoch 0 had not yielded yet

The permutation of epoch e is ``np.random.default_rng([seed, e]).permutation(n)``: it depends on
nothing but (seed, epoch, n), so a resumed process rebuilds it without storing it. Iterating to
the end moves to the next epoch (position 0), as a training loop's next ``for`` expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from robolake.errors import ConfigError


class EpochOrder:
    """The indices ``0..n-1`` in a seeded order per epoch; ``state_dict`` names the position within it."""

    def __init__(self, n: int, *, seed: int, epoch: int = 0) -> None:
        if n < 0 or epoch < 0:
            raise ConfigError(f"EpochOrder needs n >= 0 and epoch >= 0, got n={n}, epoch={epoch}")
        self.n, self.seed, self.epoch = n, seed, epoch
        self.position = 0

    def __repr__(self) -> str:
        return f"EpochOrder(n={self.n}, seed={self.seed}, epoch={self.epoch}, position={self.position})"

    def __len__(self) -> int:
        return self.n

    def permutation(self, epoch: int | None = None) -> npt.NDArray[np.int64]:
        """The whole order of `epoch` (default: the current one)."""
        which = self.epoch if epoch is None else epoch
        return np.random.default_rng([self.seed, which]).permutation(self.n).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        order = self.permutation()
        while self.position < self.n:
            index = int(order[self.position])
            self.position += 1  # counted before yielding: a state saved after a sample excludes it
            yield index
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state``; ConfigError if it was saved for another dataset size or seed."""
        try:
            n, seed, epoch, position = (int(state[k]) for k in ("n", "seed", "epoch", "position"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not an EpochOrder state: {state!r} ({exc}); expected n, seed, epoch, position") from exc
        if (n, seed) != (self.n, self.seed):
            raise ConfigError(
                f"EpochOrder state is for n={n}, seed={seed}; this order has n={self.n}, seed={self.seed}: "
                "resume with the same dataset (commit, sampler settings) and seed"
            )
        if not 0 <= position <= n or epoch < 0:
            raise ConfigError(f"EpochOrder state has position {position} of {n}, epoch {epoch}: out of range")
        self.epoch, self.position = epoch, position
