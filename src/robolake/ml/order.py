"""Seeded, resumable orders over a map-style dataset's indices: per sample, and per batch.

    order = EpochOrder(len(dataset), seed=7)
    for i in order: ...                      # epoch 0, a fixed permutation of range(n)
    saved = order.state_dict()               # {"n": .., "seed": .., "epoch": .., "position": k}
    resumed = EpochOrder(len(dataset), seed=7); resumed.load_state_dict(saved)
    list(resumed)                            # exactly the indices epoch 0 had not yielded yet

The permutation of epoch e is ``np.random.default_rng([seed, e]).permutation(n)``: it depends on
nothing but (seed, epoch, n), so a resumed process rebuilds it without storing it. Iterating to
the end moves to the next epoch (position 0), as a training loop's next ``for`` expects.

    batches = BatchOrder(n=len(dataset), batch_size=16, seed=7)
    batches.batch(epoch=0, number=3)          # the samples of epoch 0's fourth batch
    batches.share(0, start=3, worker=1, workers=2)   # batches 4, 6, 8, ... as (number, samples)

BatchOrder cuts the same permutation into batches (EpochOrder's, so a numpy loop and the torch
loader with one seed see the samples in one order). It is what ``robolake.ml.loader`` runs on,
kept here free of torch: the sequence of batches depends on (seed, epoch, n, batch_size), never
on how many workers produce it, and a loader state names a batch of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from robolake.errors import ConfigError


class EpochOrder:
    """The indices ``0..n-1`` in a seeded order per epoch; ``state_dict`` names the position within it."""

    def __init__(self, n: int, *, seed: int, epoch: int = 0) -> None:
        if n < 0 or epoch < 0:
            raise ConfigError(f"EpochOrder needs n >= 0 and epoch >= 0, got n={n}, epoch={epoch}")
        check_seed(seed)
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


def check_seed(seed: object) -> None:
    """ConfigError unless `seed` is a whole number >= 0 (what numpy's seed sequences accept)."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed {seed!r} is not a whole number >= 0; give one such as 0 or 7")


# What a loader state holds besides its position; each must match the loader it is loaded into.
_FIXED = ("n", "seed", "batch_size", "shuffle", "drop_last", "commit_id")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchOrder:
    """Epoch ``e``'s samples (EpochOrder's permutation, or ``0..n-1`` unshuffled) cut into batches."""

    n: int
    batch_size: int
    seed: int
    shuffle: bool = True
    drop_last: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 0:
            raise ConfigError(f"the dataset has {self.n!r} samples; a loader needs a length >= 0")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size!r} is not a whole number >= 1")
        check_seed(self.seed)

    def __len__(self) -> int:
        """Batches per epoch (a last, short batch counts unless ``drop_last``)."""
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def samples(self, epoch: int) -> npt.NDArray[np.int64]:
        """Every sample of `epoch`, in the order its batches take them."""
        if not self.shuffle:
            return np.arange(self.n, dtype=np.int64)
        return EpochOrder(self.n, seed=self.seed).permutation(epoch)

    def batch(self, epoch: int, number: int) -> npt.NDArray[np.int64]:
        """The samples of batch `number` of `epoch`."""
        if not 0 <= number < len(self):
            raise IndexError(f"batch {number} out of range: an epoch has {len(self)}")
        return self.samples(epoch)[number * self.batch_size : (number + 1) * self.batch_size]

    def share(
        self, epoch: int, *, start: int = 0, worker: int = 0, workers: int = 1
    ) -> list[tuple[int, npt.NDArray[np.int64]]]:
        """Worker `worker`'s batches of `epoch` from batch `start` on: ``start + worker``, then every `workers`-th.

        Counted from `start`, not from 0, because a DataLoader asks its workers in turn beginning
        with worker 0 on every new iteration, also on one resumed mid-epoch.
        """
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} of {workers}")
        order = self.samples(epoch)
        size = self.batch_size
        return [(b, order[b * size : (b + 1) * size]) for b in range(start + worker, len(self), workers)]

    def state(self, *, epoch: int, batches: int, commit_id: str | None) -> dict[str, Any]:
        """A loader state: `batches` of `epoch` consumed (JSON-safe, for a checkpoint)."""
        return {
            "n": self.n,
            "seed": int(self.seed),
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "commit_id": commit_id,
            "epoch": epoch,
            "batches": batches,
        }

    def position(self, state: Mapping[str, Any], *, commit_id: str | None) -> tuple[int, int]:
        """(epoch, batches consumed) of `state`; ConfigError if it was saved for another dataset or loader."""
        keys = (*_FIXED, "epoch", "batches")
        missing = [k for k in keys if k not in state] if isinstance(state, Mapping) else list(keys)
        if missing:
            raise ConfigError(
                f"not a loader state: {_short(state)} lacks {', '.join(missing)}; "
                "give what the loader's state_dict() returned"
            )
        ours = self.state(epoch=0, batches=0, commit_id=commit_id)
        differ = [f"{k} {state[k]!r} (this loader: {ours[k]!r})" for k in _FIXED if state[k] != ours[k]]
        if differ:
            raise ConfigError(
                f"the loader state was saved for another dataset or loader: {'; '.join(differ)}; resume with "
                "the same dataset (commit, sampler settings), seed, batch_size, shuffle and drop_last"
            )
        epoch, batches = state["epoch"], state["batches"]
        if (
            not all(isinstance(v, int) and not isinstance(v, bool) for v in (epoch, batches))
            or epoch < 0
            or not (0 <= batches <= len(self))
        ):
            raise ConfigError(
                f"the loader state has epoch {epoch!r}, batches {batches!r}: expected epoch >= 0 and "
                f"0 <= batches <= {len(self)} (the batches of an epoch)"
            )
        return epoch, batches


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
