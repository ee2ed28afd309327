"""The campaign's figures: one record per fault, per hostile case and for the load, and the table.

Everything here is pure (no network): the runner fills these records, `summary` adds them up,
`render_markdown` and `as_json` write what `robolake reliability` stores and prints.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile:
    """How big a campaign is. `lock_faults`: the MinIO nodes killed while PUTs go through the
    accelerator to them (each costs MinIO's 1-2 min lock expiry on the keys in flight); the
    other nodes are killed while the upload goes to a surviving node, so no lock of theirs is held."""

    name: str
    objects: int  # small objects uploaded during each fault
    dataset_files: int  # files of the lakeFS commit in flight during each fault
    lock_faults: tuple[str, ...]
    stop_s: float  # how long a node stays SIGSTOPped
    down_s: float  # how long a killed component stays down before `stack up`
    generated_cases: int  # generated hostile requests, beyond the listed ones
    load_s: float  # seconds of mixed load with slow clients
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objects < 10 or self.dataset_files < 1 or self.stop_s <= 0 or self.down_s < 0:
            raise ValueError(f"profile {self.name!r} has a size out of range: {self!r}")


PROFILES: dict[str, Profile] = {
    # Under 5 minutes on a 2-core machine: one node killed under accelerator PUTs (the lock wait,
    # measured once), the others under uploads to a surviving node; a short freeze.
    "small": Profile(
        name="small",
        objects=400,
        dataset_files=40,
        lock_faults=("minio-2",),
        stop_s=8.0,
        down_s=2.0,
        generated_cases=60,
        load_s=20.0,
    ),
    # The sizes: >=2,000 objects per fault, every node killed under accelerator PUTs, a
    # freeze longer than the uploader's read timeout (120 s).
    "full": Profile(
        name="full",
        objects=2000,
        dataset_files=200,
        lock_faults=("minio-1", "minio-2", "minio-3"),
        stop_s=130.0,
        down_s=5.0,
        generated_cases=400,
        load_s=120.0,
    ),
}


@dataclasses.dataclass(kw_only=True)
class FaultOutcome:
    """One fault: what was injected, what the clients were told, what was found after recovery."""

    fault: str
    path: str  # where the upload went: "accelerator" or a MinIO node
    objects: int
    injected_at: int = 0  # objects acknowledged when the fault hit
    acknowledged: int = 0  # writes the uploader and lakeFS confirmed (objects + committed files)
    lost: int = 0  # acknowledged writes missing or different after recovery
    reads: int = 0
    read_errors: int = 0  # reads refused during the fault (allowed)
    reads_wrong: int = 0  # reads that returned other bytes (never allowed)
    upload_interrupted: bool = False
    upload_resumed: bool = False  # a rerun finished the upload (or none was needed)
    commit: str = ""  # "whole" (committed during the fault), "retried" (rerun committed), or why not
    half_commit: bool = False
    seconds: float = 0.0
    recovery_s: float = 0.0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def survived(self) -> bool:
        return not self.problems and self.lost == 0 and self.reads_wrong == 0 and not self.half_commit


@dataclasses.dataclass(frozen=True, kw_only=True)
class CaseOutcome:
    """One hostile request: the accelerator's answer, MinIO's for the same bytes, the verdict."""

    group: str
    case: str
    accelerator: str  # "403", "closed", "timeout", "crash", ...
    minio: str = ""  # "" when no direct comparison applies
    mishandled: bool = False
    why: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MemoryFigures:
    """The accelerator's resident memory, sampled during the whole run, against its budget."""

    samples: int
    peak_mib: float
    budget_mib: float  # the cache's memory tier plus what it may buffer and the interpreter

    @property
    def within(self) -> bool:
        return self.samples > 0 and self.peak_mib <= self.budget_mib


@dataclasses.dataclass(kw_only=True)
class LoadFigures:
    """Sustained mixed load through the accelerator with slow clients holding connections."""

    threads: int  # the measured capacity: the probe's thread count with the most ops/s
    probes: list[tuple[int, float]]  # (threads, ops/s) of each capacity probe
    seconds: float
    ops: int
    ops_per_s: float
    p99_ms: float
    errors: int
    wrong: int
    slow_clients: int
    slow_closed_by_server: int
    fds_before: int
    fds_after: int
    left_open: int = 0  # connections of clients that are gone, still open in the accelerator
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(kw_only=True)
class Report:
    run_id: str
    profile: str
    seconds: float = 0.0
    faults: list[FaultOutcome] = dataclasses.field(default_factory=list)
    cases: list[CaseOutcome] = dataclasses.field(default_factory=list)
    memory: MemoryFigures | None = None
    load: LoadFigures | None = None
    lock_wait_s: float | None = None  # MinIO's wait on a killed node's locks, measured once
    not_covered: list[str] = dataclasses.field(default_factory=list)


def summary(report: Report) -> dict[str, Any]:
    """The headline figures the issue asks for."""
    mishandled = [c for c in report.cases if c.mishandled]
    return {
        "faults_injected": len(report.faults),
        "faults_survived": sum(1 for f in report.faults if f.survived),
        "acknowledged_writes": sum(f.acknowledged for f in report.faults),
        "lost_writes": sum(f.lost for f in report.faults),
        "bad_inputs_tried": len(report.cases),
        "bad_inputs_mishandled": len(mishandled),
        "memory_peak_mib": report.memory.peak_mib if report.memory else None,
        "memory_budget_mib": report.memory.budget_mib if report.memory else None,
        "load_ops_per_s": round(report.load.ops_per_s, 1) if report.load else None,
        "load_p99_ms": round(report.load.p99_ms, 1) if report.load else None,
        "load_problems": list(report.load.problems) if report.load else [],
    }


def as_json(report: Report) -> bytes:
    doc = {"summary": summary(report), **dataclasses.asdict(report)}
    for fault, record in zip(report.faults, doc["faults"], strict=True):
        record["survived"] = fault.survived
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


def _memory_cell(memory: MemoryFigures | None) -> str:
    if memory is None or memory.samples == 0:
        return "not sampled"
    return f"{memory.peak_mib:.0f} / {memory.budget_mib:.0f} MiB" + ("" if memory.within else " (over)")


def _load_cell(load: LoadFigures | None) -> str:
    if load is None:
        return "not run"
    held = f"{load.ops_per_s:.0f} ops/s at {load.threads} threads (capacity), p99 {load.p99_ms:.0f} ms"
    return held + ("" if not load.problems else " (problems)")


def _load_section(lo: LoadFigures | None) -> list[str]:
    if lo is None:
        return []
    verdict = "yes" if not lo.problems else "NO: " + "; ".join(lo.problems)
    return [
        "",
        "## Load",
        "",
        "Capacity probes (threads: ops/s): "
        + ", ".join(f"{t}: {ops:.0f}" for t, ops in lo.probes)
        + f"; held at {lo.threads} threads.",
        "",
        *_table(
            [
                "threads",
                "seconds",
                "ops",
                "errors",
                "wrong",
                "slow clients / closed by it",
                "fds before / after",
                "left open",
                "ok",
            ],
            [
                [
                    lo.threads,
                    f"{lo.seconds:.0f}",
                    lo.ops,
                    lo.errors,
                    lo.wrong,
                    f"{lo.slow_clients} / {lo.slow_closed_by_server}",
                    f"{lo.fds_before} / {lo.fds_after}",
                    lo.left_open,
                    verdict,
                ]
            ],
        ),
    ]


def render_markdown(report: Report) -> str:
    s = summary(report)
    lines = [f"# Reliability run {report.run_id} (profile {report.profile}, {report.seconds:.0f} s)", ""]
    lines += _table(
        [
            "faults injected / survived",
            "acknowledged writes / lost",
            "bad inputs tried / mishandled",
            "load (ops/s, p99)",
            "accelerator memory peak / budget",
        ],
        [
            [
                f"{s['faults_injected']} / {s['faults_survived']}",
                f"{s['acknowledged_writes']} / {s['lost_writes']}",
                f"{s['bad_inputs_tried']} / {s['bad_inputs_mishandled']}",
                _load_cell(report.load),
                _memory_cell(report.memory),
            ]
        ],
    )
    if report.lock_wait_s is not None:
        lines += ["", f"MinIO's wait on a killed node's PUT locks, measured once: {report.lock_wait_s:.0f} s."]
    lines += ["", "## Faults", ""]
    lines += _table(
        ["fault", "upload via", "objects", "hit at", "acked", "lost", "reads / refused / wrong", "commit", "ok"],
        [
            [
                f.fault,
                f.path,
                f.objects,
                f.injected_at,
                f.acknowledged,
                f.lost,
                f"{f.reads} / {f.read_errors} / {f.reads_wrong}",
                f.commit + (" HALF" if f.half_commit else ""),
                "yes" if f.survived else "NO: " + "; ".join(f.problems),
            ]
            for f in report.faults
        ],
    )
    lines += _load_section(report.load)
    groups: dict[str, list[CaseOutcome]] = {}
    for case in report.cases:
        groups.setdefault(case.group, []).append(case)
    lines += ["", "## Hostile input to the accelerator", ""]
    lines += _table(
        ["group", "tried", "mishandled"],
        [[g, len(cs), sum(c.mishandled for c in cs)] for g, cs in groups.items()],
    )
    bad = [c for c in report.cases if c.mishandled]
    if bad:
        lines += ["", "### Mishandled", ""]
        lines += _table(
            ["group", "case", "accelerator", "MinIO", "why"],
            [[c.group, c.case, c.accelerator, c.minio, c.why] for c in bad],
        )
    if report.not_covered:
        lines += ["", "## Not covered by this run", "", *(f"- {item}" for item in report.not_covered)]
    return "\n".join(lines) + "\n"
