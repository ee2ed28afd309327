"""Background tasks with an owner: started through it, cancelled and awaited when the app stops.

Each long-lived part (prefetch workers, revalidation checks, the upstream prober) spawns its
tasks through one `BackgroundTasks`, and the app's `cleanup_ctx` closes it: every task is
cancelled, then awaited, so none outlives the session it uses or dies unobserved at exit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTasks:
    """A set of running tasks; `close()` cancels them all and waits until each has finished."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` in the background until it returns or `close()` cancels it."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self.owner}: no new background task after close()")
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.owner, exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel every task and wait for all of them (a task's own error is logged, not raised)."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
