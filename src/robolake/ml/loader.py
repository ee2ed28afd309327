"""The PyTorch adapter: a LakeDataset read by DataLoader workers, seeded, prefetching, resumable mid-epoch.

    from robolake.ml import make_loader                      # pip install 'robolake[torch]'
    loader = make_loader(ds, batch_size=64, num_workers=8, seed=7)
    for batch in loader:            # collated torch tensors; batch["index"]: the samples in it
        ...
        checkpoint["loader"] = loader.state_dict()            # {"epoch": 0, "batches": k, ...}
    loader.load_state_dict(checkpoint["loader"])              # next: batch k of epoch 0

torch is imported on first use; without it, make_loader raises MissingExtraError naming the extra.

The order. An epoch's batches are BatchOrder's (robolake.ml.order): EpochOrder's permutation for
(seed, epoch) cut into ``batch_size`` pieces, so the sequence of batches depends on the seed and
never on ``num_workers``. The loader is a torch IterableDataset whose worker ``w`` of ``W`` makes
batches ``start + w``, ``start + w + W``, ...: a DataLoader asks its workers in turn, beginning
with worker 0, and hands their batches out in that order, so training receives batch 0, 1, 2, ...
whatever ``W`` is. Each worker knows its whole share in advance: it gives it to
``dataset.schedule`` (a prefetch hint, where the dataset has one) and fetches each batch with
``dataset.__getitems__`` (where it has one; else sample by sample), so the reads of coming batches
overlap the decoding of this one, while ``prefetch_factor`` keeps each worker that many batches
ahead of the training loop.

Resuming. The main process counts the batches it has handed out; ``state_dict()`` is that count
(and what it must be resumed with: dataset size and commit, seed, batch size, shuffle, drop_last).
Batches that workers had made beyond it are dropped and made again after a resume, so a state
taken after ``k`` batches resumes at exactly batch ``k``. A state for another dataset or loader is
one ConfigError naming each difference. Iterating to the end of an epoch moves to the next, as
EpochOrder does; ``set_epoch(e)`` jumps to the start of epoch ``e``.

Connections. A forked worker inherits the parent's objects, open sockets included, and two
processes reading one pooled HTTP connection corrupt each other's responses (seen with a shared
boto3 client: truncated frames, ``IncompleteRead``). A LakeDataset guards itself: in a new
process it opens its own connections and prefetch threads, and the loader leaves it as it is
(rebuilding it would copy its zip directory, seconds per worker at UMI's scale: 600k entries
pickle to ~80 MB). Any other dataset is rebuilt from its pickle as a forked worker starts, its
numpy arrays passed by reference, so the parent's copy-on-write pages stay shared. Under spawn
or forkserver every worker's dataset arrives pickled anyway. Workers are started per epoch (one
DataLoader per epoch): persistent workers could not learn the next epoch's order.

Errors and seeds. A RobolakeError raised in a worker reaches the caller as itself, one line,
not as torch's re-raised traceback text. Workers' torch, numpy and ``random`` seeds derive from
(seed, epoch), and the caller's global torch generator is left alone.
"""

from __future__ import annotations

import functools
import importlib
import io
import pickle
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from robolake.errors import ConfigError, RobolakeError
from robolake.ml.dataset import LakeDataset
from robolake.ml.order import BatchOrder

INSTALL_HINT = "pip install 'robolake[torch]'"
_CONTEXTS = (None, "fork", "spawn", "forkserver")


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency (an extra of robolake's package) is not installed."""


class MapDataset(Protocol):
    """What the loader needs of a dataset: a length and samples by index (a LakeDataset has more)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


def _torch() -> ModuleType:
    try:
        torch = importlib.import_module("torch")
        importlib.import_module("torch.utils.data")
    except ImportError as exc:
        raise MissingExtraError(
            f"the PyTorch loader needs torch, which is not installed here ({exc}); install it with {INSTALL_HINT}"
        ) from exc
    return torch


def make_loader(
    dataset: MapDataset,
    *,
    batch_size: int,
    seed: int = 0,
    num_workers: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    prefetch_factor: int = 2,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
    multiprocessing_context: str | None = None,
) -> LakeLoader:
    """A resumable loader of `dataset`'s samples in batches, seeded by `seed`, made by `num_workers` processes.

    Batches are ``collate_fn(samples)`` (torch's ``default_collate``: tensors stacked per key);
    dict samples get ``"index"``, their sample numbers. ``prefetch_factor`` batches per worker are
    made ahead. ``multiprocessing_context`` is torch's (None: the platform's default).
    """
    _torch()
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
        raise ConfigError(f"num_workers {num_workers!r} is not a whole number >= 0 (0: load in this process)")
    if not isinstance(prefetch_factor, int) or isinstance(prefetch_factor, bool) or prefetch_factor < 1:
        raise ConfigError(f"prefetch_factor {prefetch_factor!r} is not a whole number >= 1 (batches per worker)")
    if multiprocessing_context not in _CONTEXTS:
        raise ConfigError(f"multiprocessing_context {multiprocessing_context!r} is not one of {_CONTEXTS[1:]!r}")
    order = BatchOrder(n=len(dataset), batch_size=batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last)
    return LakeLoader(
        dataset,
        order,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        multiprocessing_context=multiprocessing_context,
    )


class LakeLoader:
    """Batches of a dataset, epoch after epoch, in BatchOrder's sequence; build it with :func:`make_loader`."""

    def __init__(
        self,
        dataset: MapDataset,
        order: BatchOrder,
        *,
        num_workers: int,
        prefetch_factor: int,
        collate_fn: Callable[[list[Any]], Any] | None,
        pin_memory: bool,
        multiprocessing_context: str | None,
    ) -> None:
        self.dataset, self.order, self.num_workers = dataset, order, num_workers
        self.prefetch_factor, self.collate_fn, self.pin_memory = prefetch_factor, collate_fn, pin_memory
        self.multiprocessing_context = multiprocessing_context
        self.commit_id: str | None = getattr(dataset, "commit_id", None)
        self.epoch = 0
        self.batches = 0  # of this epoch, handed out
        self._running: Generator[Any, None, None] | None = None

    def __repr__(self) -> str:
        o = self.order
        return (
            f"LakeLoader(samples={o.n}, batch_size={o.batch_size}, seed={o.seed}, shuffle={o.shuffle}, "
            f"num_workers={self.num_workers}, epoch={self.epoch}, batches={self.batches}/{len(o)})"
        )

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.order)

    def __iter__(self) -> Iterator[Any]:
        """The rest of the current epoch (all of it unless resumed or broken off); one iteration at a time:
        a new one ends the one before."""
        self._stop()
        self._running = self._run()
        return self._running

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its first batch on the next iteration (no change if it is the current one)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ConfigError(f"epoch {epoch!r} is not a whole number >= 0")
        if epoch != self.epoch:
            self._stop()
            self.epoch, self.batches = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is: `batches` of `epoch` handed out, and what it must be resumed with (JSON-safe)."""
        return self.order.state(epoch=self.epoch, batches=self.batches, commit_id=self.commit_id)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at `state`; ConfigError if it was saved for another dataset, seed or batch layout."""
        epoch, batches = self.order.position(state, commit_id=self.commit_id)
        self._stop()
        self.epoch, self.batches = epoch, batches

    # ---- the epoch, as the main process sees it -----------------------------------------

    def _stop(self) -> None:
        """End an iteration still running (its workers exit), so that it cannot move the position any more."""
        running, self._running = self._running, None
        if running is not None:
            running.close()

    def _run(self) -> Generator[Any, None, None]:
        if self.batches >= len(self.order):  # a state saved after an epoch's last batch
            self.epoch, self.batches = self.epoch + 1, 0
        epoch, expected = self.epoch, self.batches
        for number, batch in self._dataloader(_Plan(self.dataset, self.order, epoch, expected, self.collate_fn)):
            if isinstance(batch, _Failure):
                raise batch.error()
            if number != expected:  # DataLoader keeps its workers' order (in_order); this would be a bug here
                raise RuntimeError(f"batch {number} of epoch {epoch} arrived where batch {expected} was due")
            expected += 1
            self.batches = expected  # counted before it is handed out: a state saved now excludes it
            yield batch
        self.epoch, self.batches = epoch + 1, 0

    def _dataloader(self, plan: _Plan) -> Any:
        torch = _torch()
        generator = torch.Generator()
        generator.manual_seed(int(np.random.SeedSequence([int(self.order.seed), plan.epoch]).generate_state(1)[0]))
        workers: dict[str, Any] = {}
        if self.num_workers:
            workers = {
                "prefetch_factor": self.prefetch_factor,
                "worker_init_fn": _worker_init,
                "multiprocessing_context": self.multiprocessing_context,
            }
        return torch.utils.data.DataLoader(
            _stream(plan),
            batch_size=None,  # the stream yields whole batches
            num_workers=self.num_workers,
            collate_fn=_as_is,
            pin_memory=self.pin_memory,
            generator=generator,
            **workers,
        )


# ---- the epoch, as a worker sees it ------------------------------------------------------


class _Plan:
    """Batches ``start..`` of `epoch`; in a worker, only that worker's share of them."""

    def __init__(
        self,
        dataset: MapDataset,
        order: BatchOrder,
        epoch: int,
        start: int,
        collate_fn: Callable[[list[Any]], Any] | None,
    ) -> None:
        self.dataset, self.order, self.epoch, self.start, self.collate_fn = dataset, order, epoch, start, collate_fn
        self.rebuild = not isinstance(dataset, LakeDataset)  # in a forked worker; see the module docstring

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "rebuild": False}  # a plan that arrives pickled holds a fresh dataset already

    def run(self) -> Iterator[tuple[int, Any]]:
        data = _torch().utils.data
        info = data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        mine = self.order.share(self.epoch, start=self.start, worker=worker, workers=workers)
        collate = self.collate_fn or data.default_collate
        schedule: Callable[[Sequence[int]], None] | None = getattr(self.dataset, "schedule", None)
        getitems: Callable[[list[int]], Sequence[Any]] | None = getattr(self.dataset, "__getitems__", None)
        try:
            if schedule is not None and mine:
                schedule([int(i) for _, batch in mine for i in batch])  # all this worker will read, in order
            for number, batch in mine:
                indices = [int(i) for i in batch]
                samples = list(getitems(indices)) if getitems is not None else [self.dataset[i] for i in indices]
                yield number, collate(_with_index(samples, indices))
        except RobolakeError as exc:
            yield -1, _Failure(exc)


def _with_index(samples: list[Any], indices: list[int]) -> list[Any]:
    out = []
    for sample, index in zip(samples, indices, strict=True):
        if isinstance(sample, Mapping):
            if "index" in sample:
                raise ConfigError(f"sample {index} already has a key 'index', which the loader adds: rename it")
            sample = {**sample, "index": index}
        out.append(sample)
    return out


class _Failure:
    """A RobolakeError from a worker, carried back as class and message and raised again as itself."""

    def __init__(self, exc: RobolakeError) -> None:
        self.cls, self.message = type(exc), str(exc)

    def error(self) -> RobolakeError:
        err = self.cls.__new__(self.cls)  # its own __init__ may want other arguments than the message
        err.args = (self.message,)
        return err


def _as_is(batch: Any) -> Any:
    return batch


@functools.cache
def _stream_class() -> type:
    """A torch IterableDataset running a _Plan (made on first use: torch is imported lazily)."""
    data = _torch().utils.data
    return type(
        "LakeBatchStream",
        (data.IterableDataset,),
        {
            "__module__": __name__,
            "__iter__": lambda self: self.plan.run(),
            "__reduce__": lambda self: (_stream, (self.plan,)),  # picklable for spawn and forkserver
        },
    )


def _stream(plan: _Plan) -> Any:
    stream = _stream_class()()
    stream.plan = plan
    return stream


def _worker_init(worker_id: int) -> None:
    """In each new worker: a dataset with connections of its own (see the module docstring)."""
    plan: _Plan = _torch().utils.data.get_worker_info().dataset.plan
    if plan.rebuild:
        plan.dataset, plan.rebuild = _rebuilt(plan.dataset), False


def _rebuilt(dataset: Any) -> Any:
    """`dataset` rebuilt from its pickle, numpy arrays shared with the original rather than copied."""
    kept: list[Any] = []

    class Sharing(pickle.Pickler):
        def persistent_id(self, obj: Any) -> int | None:
            if isinstance(obj, np.ndarray):
                kept.append(obj)
                return len(kept) - 1
            return None

    class Restoring(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return kept[pid]

    buffer = io.BytesIO()
    Sharing(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(dataset)
    buffer.seek(0)
    return Restoring(buffer).load()
