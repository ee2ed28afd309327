"""Peak memory of a process tree (a loader's training process and its workers), sampled from /proc;
and the CPU time the stack's servers spend (what a loader's GETs cost MinIO, the accelerator, lakeFS).

    with TreeMemory({"umi": pid_a, "robolake": pid_b}) as memory:
        ...
    memory.peaks["umi"]   # {"rss_bytes": ..., "pss_bytes": ..., "processes": ...}

RSS summed over the tree is what ``ps`` and most dashboards add up; it counts a page shared by a
forked worker and its parent (a MemoryStore copied before the fork) once per process. PSS
(proportional set size, ``/proc/<pid>/smaps_rollup``) divides each shared page among the
processes that map it, so its sum is the memory the tree really holds. Both are reported. Pages
of the kernel's file cache (local disk reads, robolake's block files) are in neither.
Linux only; elsewhere the figures are 0.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from robolake.config import Settings
from robolake.state import StateDir

PROC = Path("/proc")
SERVERS = ("minio-1", "minio-2", "minio-3", "accelerator", "lakefs")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (children of every thread), depth first."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = list((PROC / str(current) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    return out


def _kib(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def tree_memory(pid: int) -> dict[str, int]:
    """RSS and PSS (bytes) summed over `pid`'s tree, and how many processes it has."""
    pids = descendants(pid)
    return {
        "rss_bytes": sum(_kib(PROC / str(p) / "status", "VmRSS:") for p in pids),
        "pss_bytes": sum(_kib(PROC / str(p) / "smaps_rollup", "Pss:") for p in pids),
        "processes": len(pids),
    }


class TreeMemory:
    """A thread sampling each named tree every `interval_s`, keeping the peaks."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.1) -> None:
        self.pids, self.interval_s = pids, interval_s
        self.peaks: dict[str, dict[str, int]] = {
            name: {"rss_bytes": 0, "pss_bytes": 0, "processes": 0} for name in pids
        }
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="robolake-bench-memory", daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def sample(self) -> None:
        for name, pid in self.pids.items():
            now = tree_memory(pid)
            peak = self.peaks[name]
            for key, value in now.items():
                peak[key] = max(peak[key], value)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def as_dict(self) -> dict[str, Any]:
        return {name: dict(peak) for name, peak in self.peaks.items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 if it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def server_pids(settings: Settings) -> dict[str, int]:
    """The local stack's server processes (native runtime: their pid files); {} when there are none."""
    state, out = StateDir(settings.state_dir), {}
    for name in SERVERS:
        try:
            out[name] = int(json.loads(state.pid(name).read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return {name: pid for name, pid in out.items() if (PROC / str(pid)).exists()}


def servers_cpu(pids: dict[str, int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids.values())
