"""asyncio helpers of the storage layer: a fresh event loop per call, a byte budget, TaskGroup errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh event loop (uvloop when installed)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("called from a running event loop; await the *_async variant instead")
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # optional: plain asyncio works, just slower per request
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


class ByteBudget:
    """At most `limit` bytes of file data in memory; one item larger than the limit may run alone."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: self._used == 0 or self._used + n <= self._limit)
            self._used += n
        try:
            yield
        finally:
            async with self._cond:
                self._used -= n
                self._cond.notify_all()


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error in a TaskGroup's group (the others are usually its cancellations)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
