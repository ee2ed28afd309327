"""Fetch what will be read next in background threads, so that fetching overlaps decoding.

    ahead = Prefetcher(fetch, group=16, ahead=64)
    ahead.schedule([7, 3, 9, ...])     # these keys will be read next, in this order
    held = ahead.take([7, 3])          # what the threads fetched for them (waits for keys in flight)

``fetch(keys)`` is called by a background thread with up to `group` keys at a time, in plan
order. It returns what the consumer should be handed for each key (bytes kept in memory) or
None when its effect is elsewhere (blocks written to a disk cache). Memory is bounded: at most
`ahead` keys' results are held for the current plan (a thread waits while the window is full
and wakes when the consumer takes some), plus at most `ahead` left over from an earlier plan.

``schedule`` replaces the part of the plan not fetched yet: call it once per epoch with all of a
worker's indices, or again and again with overlapping windows; a key fetched under an earlier
plan is not fetched again while it is held. A key the consumer takes before the threads reach it
is struck from the plan (the consumer reads it itself), so nothing is read twice.

Safe after ``fork``: the state belongs to the process that made it. A forked child (a DataLoader
worker) starts with an empty plan and no threads, and starts its own threads at its first
``schedule``; a prefetcher never crosses ``pickle`` (the owner leaves it out of its state).
Threads end when the plan is empty and are daemons, so they never keep a process alive.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
Fetch = Callable[[list[K]], Mapping[K, Any] | None]


class Prefetcher(Generic[K]):
    """Background fetches of planned keys, `group` at a time, by up to `threads` threads."""

    def __init__(self, fetch: Fetch[K], *, group: int = 16, ahead: int = 64, threads: int = 2) -> None:
        if group < 1 or ahead < group or threads < 1:
            raise ValueError(f"Prefetcher needs 1 <= group <= ahead and threads >= 1, got {group}, {ahead}, {threads}")
        self.fetch, self.group, self.ahead, self.n_threads = fetch, group, ahead, threads
        self.fetched_groups = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._reset()

    def __repr__(self) -> str:
        return (
            f"Prefetcher(planned={len(self._plan)}, held={len(self._held)}, in_flight={len(self._flight)}, "
            f"groups={self.fetched_groups}, errors={self.errors})"
        )

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._plan: collections.deque[K] = collections.deque()
        self._pending: collections.Counter[K] = collections.Counter()  # keys in the plan, by count
        self._skip: collections.Counter[K] = collections.Counter()  # of those, the consumer took first
        self._held: dict[K, Any] = {}
        self._stale: dict[K, Any] = {}
        self._flight: set[K] = set()
        self._threads: list[threading.Thread] = []

    def _own(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's lock, plan and threads are not ours
            self._reset()

    # ---- the consumer's side -------------------------------------------------------------

    def schedule(self, keys: Sequence[K]) -> None:
        """Plan `keys` (in this order) in place of whatever was planned and not fetched yet."""
        self._own()
        with self._lock:
            wanted = set(keys)
            for key in [k for k in self._held if k not in wanted]:
                self._stale[key] = self._held.pop(key)
            for key in [k for k in self._stale if k in wanted]:
                self._held[key] = self._stale.pop(key)
            while len(self._stale) > self.ahead:  # the oldest leftovers go first
                del self._stale[next(iter(self._stale))]
            self._plan = collections.deque(k for k in keys if k not in self._held)
            self._pending = collections.Counter(self._plan)
            self._skip.clear()
            self._changed.notify_all()
            self._threads = [t for t in self._threads if t.is_alive()]
            for _ in range(min(self.n_threads, -(-len(self._plan) // self.group)) - len(self._threads)):
                thread = threading.Thread(target=self._run, name="robolake-prefetch", daemon=True)
                self._threads.append(thread)
                thread.start()

    def take(self, keys: Sequence[K]) -> dict[K, Any]:
        """The results held for `keys` (handed over once); keys in flight are waited for, planned ones struck."""
        self._own()
        with self._lock:
            for key in keys:
                unfetched = key not in self._held and key not in self._flight and key not in self._stale
                if unfetched and self._pending[key] > self._skip[key]:
                    self._skip[key] += 1  # the threads pass over it: the consumer reads it now
            while any(k in self._flight for k in keys):
                self._changed.wait()
            out = {}
            for key in keys:
                if key in self._held:
                    out[key] = self._held.pop(key)
                elif key in self._stale:
                    out[key] = self._stale.pop(key)
            self._changed.notify_all()
            return out

    def idle(self) -> bool:
        """True once nothing is planned or in flight (tests and benchmarks wait for it)."""
        self._own()
        with self._lock:
            return not self._plan and not self._flight

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        self._own()
        with self._lock:
            return self._changed.wait_for(lambda: not self._plan and not self._flight, timeout=timeout_s)

    # ---- the threads' side ---------------------------------------------------------------

    def _next_group(self) -> list[K] | None:
        """Up to `group` planned keys to fetch now (None: the plan is done); called holding the lock."""
        while True:
            if self._pid != os.getpid():
                return None
            window_full = len(self._held) + len(self._flight) >= self.ahead
            if self._plan and not window_full:
                break
            if not self._plan:
                return None
            self._changed.wait()
        keys: list[K] = []
        while self._plan and len(keys) < self.group:
            key = self._plan.popleft()
            self._pending[key] -= 1
            if self._skip[key] > 0:
                self._skip[key] -= 1
            elif key not in self._held and key not in self._flight and key not in keys:
                keys.append(key)
        self._flight.update(keys)
        return keys

    def _run(self) -> None:
        while True:
            with self._lock:
                keys = self._next_group()
                if keys is None:
                    return
            result: Mapping[K, Any] | None = None
            error: BaseException | None = None
            try:
                result = self.fetch(keys) if keys else None
            except Exception as exc:  # a failed prefetch is not fatal: the consumer's own read reports it
                error = exc
            finally:  # whatever happened, the keys are no longer in flight: nobody waits for them forever
                with self._lock:
                    if error is not None:
                        self.errors += 1
                        self.last_error = error
                    self._flight.difference_update(keys)
                    self.fetched_groups += 1 if keys else 0
                    for key, value in (result or {}).items():
                        self._held[key] = value
                    self._changed.notify_all()
