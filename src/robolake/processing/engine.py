"""Where tasks run: Dask distributed (an embedded LocalCluster, or a running scheduler), or inline.

    with open_engine(EngineOptions(workers=2)) as engine:        # LocalCluster on 127.0.0.1
    with open_engine(EngineOptions(scheduler="tcp://10.0.0.5:8786")) as engine:   # a cluster
        for item, result in engine.map(process_episode, tasks):   # as tasks finish
            ...

The embedded cluster is ``LocalCluster(processes=True, threads_per_worker=1, host="127.0.0.1")``:
every worker its own process (JPEG XL and H.264 hold the GIL for their whole call), every socket
on loopback, the dashboard on a free loopback port when bokeh is installed. ``inline`` runs the
same task functions one after another in this process, with no Dask at all: the single-process
baseline of ``robolake bench process``, and a way to run a job where Dask is not installed.

A worker that dies mid-task (OOM, kill -9) costs only that task: the scheduler gives it to
another worker (up to ``distributed.scheduler.allowed-failures``, 3), after which the job fails
with KilledWorker, reported as one line naming the task. Dask is imported only here, and only
when a job starts, so robolake without the ``dask`` extra still imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from robolake.errors import ConfigError, ServiceUnavailableError
from robolake.processing.errors import INSTALL_HINT, EngineMissingError, TaskFailedError

T = TypeVar("T")
R = TypeVar("R")
_ADDRESS_RE = re.compile(r"^(tcp|tls)://[^\s/:]+:\d{1,5}$")
WORKER_WAIT_S = 30.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """`scheduler`: a running scheduler's address (None: an embedded cluster of `workers`); `inline`: no Dask."""

    scheduler: str | None = None
    workers: int = 2
    inline: bool = False
    connect_timeout_s: float = 10.0

    def check(self) -> None:
        if self.inline and self.scheduler:
            raise ConfigError("--single-process and --scheduler exclude each other: run here, or on the cluster")
        if not 1 <= self.workers <= 256:
            raise ConfigError(f"--workers {self.workers!r} must be between 1 and 256")
        if self.scheduler is not None and not _ADDRESS_RE.match(self.scheduler):
            raise ConfigError(
                f"scheduler address {self.scheduler!r} is not tcp://HOST:PORT (or tls://HOST:PORT); "
                "e.g. tcp://127.0.0.1:8786, as `dask scheduler` prints it"
            )


def dask_versions() -> dict[str, str]:
    """The versions of dask and distributed here ({} when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("dask", "distributed"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def require_dask() -> None:
    try:
        importlib.import_module("dask")
        importlib.import_module("distributed")
    except ImportError:
        raise EngineMissingError(
            f"Dask is not installed, and `robolake process` runs its jobs on Dask distributed; install it "
            f"with {INSTALL_HINT} (or run with --single-process)"
        ) from None


class Engine:
    """Runs task functions: on a Dask client, or inline when `client` is None."""

    def __init__(self, client: Any, *, description: str, dashboard: str | None, workers: int) -> None:
        self.client = client
        self.description = description
        self.dashboard = dashboard
        self.workers = workers

    def map(self, func: Callable[[T], R], items: Sequence[T], name: Callable[[T], str]) -> Iterator[tuple[T, R]]:
        """(item, func(item)) for every item, as each finishes; the first failure stops the rest."""
        if self.client is None:
            for item in items:
                yield item, func(item)
            return
        futures = {self.client.submit(func, item, key=name(item), pure=False): item for item in items}
        try:
            for future in _distributed().as_completed(futures):
                item = futures[future]
                yield item, _result(future, name(item))
        finally:
            for future in futures:
                future.cancel()


def _distributed() -> Any:
    """The distributed module, untyped (it ships no type hints)."""
    return importlib.import_module("distributed")


def _result(future: Any, name: str) -> Any:
    killed_worker = _distributed().KilledWorker
    try:
        return future.result()
    except TaskFailedError:
        raise
    except killed_worker as exc:
        raise TaskFailedError(
            f"task {name!r} was running on workers that died ({exc}); a worker ran out of memory or was "
            "killed. Nothing was committed: run the job again (finished tasks are reused)"
        ) from None
    except ModuleNotFoundError as exc:
        raise TaskFailedError(
            f"task {name!r}: a Dask worker cannot import {exc.name!r}; install robolake (the same version) in "
            "the workers' environment"
        ) from None


@contextlib.contextmanager
def open_engine(options: EngineOptions) -> Iterator[Engine]:
    """An engine for one job; an embedded cluster is shut down when the block ends."""
    options.check()
    if options.inline:
        yield Engine(None, description="this process (single process, no Dask)", dashboard=None, workers=1)
        return
    require_dask()
    if options.scheduler is not None:
        with _connect(options) as engine:
            yield engine
        return
    with _local_cluster(options) as engine:
        yield engine


@contextlib.contextmanager
def _local_cluster(options: EngineOptions) -> Iterator[Engine]:
    dist = _distributed()
    dashboard = "127.0.0.1:0" if importlib.util.find_spec("bokeh") is not None else None
    cluster = dist.LocalCluster(
        n_workers=options.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=dashboard,
        silence_logs=logging.ERROR,
    )
    try:
        with dist.Client(cluster) as client:
            link = client.dashboard_link if dashboard else None
            where = cluster.scheduler_address
            yield Engine(
                client,
                description=f"an embedded Dask cluster ({options.workers} worker processes, scheduler {where})",
                dashboard=link,
                workers=options.workers,
            )
    finally:
        cluster.close()


@contextlib.contextmanager
def _connect(options: EngineOptions) -> Iterator[Engine]:
    address = options.scheduler or ""
    try:
        client = _distributed().Client(address, timeout=f"{options.connect_timeout_s}s")
    except (OSError, TimeoutError) as exc:
        raise ServiceUnavailableError(
            f"no Dask scheduler answers at {address!r} ({type(exc).__name__}); start one (`dask scheduler "
            "--host 127.0.0.1`, then `dask worker ADDRESS`), check DASK_SCHEDULER_ADDRESS, or leave "
            "--scheduler out to run on an embedded cluster"
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (OSError, TimeoutError):
            raise ServiceUnavailableError(
                f"the Dask scheduler at {address!r} has no workers after {WORKER_WAIT_S:.0f} s; start some "
                f"(`dask worker {address}`)"
            ) from None
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        link = client.dashboard_link if _has_dashboard(client) else None
        yield Engine(client, description=f"the Dask cluster at {address} ({n} workers)", dashboard=link, workers=n)
    finally:
        client.close()


def _has_dashboard(client: Any) -> bool:
    services = client.scheduler_info().get("services", {})
    return "dashboard" in services
