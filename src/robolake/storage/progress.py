"""Progress of a transfer: a plain snapshot the library reports, and a rich bar that shows it."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


@dataclasses.dataclass(frozen=True)
class TransferProgress:
    """Where a transfer of many objects or files stands; one class for every layer that moves them.

    Skipped objects count as done (their bytes too). `path` names the object or file that was
    finished last, when the reporter tracks it ("" otherwise).
    """

    objects_done: int
    objects_total: int
    bytes_done: int
    bytes_total: int
    skipped: int = 0
    failed: int = 0
    path: str = ""


ProgressCallback = Callable[[TransferProgress], None]


@contextlib.contextmanager
def object_progress(
    description: str, *, console: Console | None = None, enabled: bool = True
) -> Iterator[ProgressCallback]:
    """A rich bar counting objects and bytes, on stderr; yields the callback to pass to the library.

    The bar appears with the first report, so phases before the transfer (or an error before it
    starts) leave no empty bar behind.
    """
    if not enabled:
        yield lambda _: None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[bytes]}"),
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    task = bar.add_task(description, total=None, bytes="", extra="", start=False)
    started = False

    def update(p: TransferProgress) -> None:
        nonlocal started
        if not started:
            bar.start()
            bar.start_task(task)
            started = True
        extra = ", ".join(
            part
            for part in (f"{p.skipped} unchanged" if p.skipped else "", f"{p.failed} failed" if p.failed else "")
            if part
        )
        bar.update(
            task,
            completed=p.objects_done,
            total=p.objects_total,
            bytes=f"{p.bytes_done / 1e6:,.1f}/{p.bytes_total / 1e6:,.1f} MB",
            extra=extra,
        )

    try:
        yield update
    finally:
        if started:
            bar.stop()


def byte_progress(
    description: str, *, console: Console | None = None, enabled: bool = True
) -> contextlib.AbstractContextManager[Callable[[int, int | None], None]]:
    """A rich download bar; yields `update(bytes_done, bytes_total_or_None)`."""
    return _done_of_total(description, (DownloadColumn(), TransferSpeedColumn()), console, enabled)


def counter_progress(
    description: str, *, console: Console | None = None, enabled: bool = True
) -> contextlib.AbstractContextManager[Callable[[int, int], None]]:
    """A rich bar for `progress(done, total)` callbacks (e.g. episodes generated)."""
    return _done_of_total(description, (MofNCompleteColumn(), TimeElapsedColumn()), console, enabled)


@contextlib.contextmanager
def _done_of_total(
    description: str, columns: tuple[ProgressColumn, ...], console: Console | None, enabled: bool
) -> Iterator[Callable[[int, int | None], None]]:
    """A bar with `columns` between the bar and the time left; yields `update(done, total_or_None)`."""
    if not enabled:
        yield lambda _done, _total: None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *columns,
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )
    task = bar.add_task(description, total=None)

    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update
