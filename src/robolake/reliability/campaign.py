"""`robolake reliability`: faults, then hostile input, one table; stored in umi-experiments.

    run(stack, profile) -> Report      the whole campaign, the stack brought back up at the end
    save(settings, report, out_dir)    JSON + Markdown to out_dir/<run-id>/ and
                                       s3://umi-experiments/results/reliability/<run-id>/

The accelerator's resident memory is sampled every 0.2 s through the whole run (its pid is
looked up again after each restart) and compared with its budget: the cache's memory tier, the
64 MiB it may hold in buffered request bodies, and an allowance for the interpreter.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from robolake.bench.results import RESULTS_BUCKET, new_run_id, results_target
from robolake.config import Settings
from robolake.reliability import faults, wire
from robolake.reliability.generated import generated_cases
from robolake.reliability.hostile import Case, Target, listed_cases
from robolake.reliability.hostile_files import GROUP as HOSTILE_FILES
from robolake.reliability.hostile_files import hostile_files
from robolake.reliability.load import run_load
from robolake.reliability.security import security_checks
from robolake.reliability.table import CaseOutcome, MemoryFigures, Profile, Report, as_json, render_markdown
from robolake.reliability.workload import BUCKET, delete_prefix, ensure_bucket, make_tree, s3
from robolake.stack.native import NativeStack
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.uploader import upload_tree
from robolake.versioning.client import LakeFSClient
from robolake.versioning.hooks import install_validation_hook, stack_hook_url

BUFFERED_BODIES_MIB = 64  # the accelerator's cap on verified request bodies held in memory
INTERPRETER_MIB = 160  # Python, aiohttp, uvloop and the accelerator's own tables, idle
READ_SET = 50
NOT_COVERED = [
    "a full drive (ENOSPC): the drive fault makes one drive read-only (EROFS); both fail every write to it",
    "lakeFS's /metrics and /_pprof/ answer anyone on loopback: lakeFS has no setting to protect them",
]
NO_MOUNT = "the read-only drive fault: it needs root (a bind mount); run the campaign as root to include it"
Say = Callable[[str], None]


class MemorySampler(threading.Thread):
    """The accelerator's VmRSS every `interval_s`, whatever its pid is now."""

    def __init__(self, stack: NativeStack, interval_s: float = 0.2) -> None:
        super().__init__(name="rss", daemon=True)
        self._stack, self._interval_s = stack, interval_s
        self.stop = threading.Event()
        self.samples, self.peak_kib = 0, 0

    def run(self) -> None:
        while not self.stop.wait(self._interval_s):
            pid = self._stack._process("accelerator").pid()
            if pid is None:
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.samples += 1
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))

    def figures(self, settings: Settings) -> MemoryFigures:
        budget = settings.accelerator_memory_mb + BUFFERED_BODIES_MIB + INTERPRETER_MIB
        return MemoryFigures(samples=self.samples, peak_mib=self.peak_kib / 1024, budget_mib=float(budget))


def accelerator_alive(settings: Settings) -> bool:
    try:
        return requests.get(f"{settings.accelerator_admin_endpoint}/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def run_case(case: Case, accelerator: Target, minio: Target, settings: Settings) -> CaseOutcome:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        theirs = (
            pool.submit(wire.exchange, minio.endpoint, case.build(minio), timeout_s=case.timeout_s)
            if case.compare
            else None
        )
        ours = wire.exchange(accelerator.endpoint, case.build(accelerator), timeout_s=case.timeout_s)
        direct = theirs.result() if theirs is not None else None
    why = wire.verdict(ours, direct, alive=accelerator_alive(settings), expect_refusal=case.expect_refusal)
    if not why and case.check is not None:
        why = case.check(ours)
    return CaseOutcome(
        group=case.group,
        case=case.name,
        accelerator=ours.label,
        minio=direct.label if direct else "",
        mishandled=bool(why),
        why=why,
    )


def hostile(settings: Settings, profile: Profile, run_id: str, work: Path, say: Say) -> list[CaseOutcome]:
    """Seed the objects the cases read (cached through the accelerator), then try every case."""
    prefix = f"{run_id}/hostile"
    hashes = make_tree(work / "hostile", 3, seed=profile.seed)
    upload_tree(settings, work / "hostile", BUCKET, prefix, endpoint=settings.minio_endpoints[0])
    via = s3(settings, settings.accelerator_endpoint)
    for rel in hashes:  # a, then its cached copy: a request the accelerator should refuse could hit it
        via.get_object(Bucket=BUCKET, Key=f"{prefix}/{rel}")["Body"].read()
    key = f"{prefix}/{next(iter(hashes))}"
    cases = [*listed_cases(BUCKET, key), *generated_cases(BUCKET, key, profile.generated_cases, profile.seed)]
    accelerator = Target.of(settings, settings.accelerator_endpoint)
    minio = Target.of(settings, settings.minio_endpoints[0])
    out = []
    for index, case in enumerate(cases):
        out.append(run_case(case, accelerator, minio, settings))
        if out[-1].mishandled:
            say(f"mishandled: {case.group} / {case.name}: {out[-1].why}")
        if index % 50 == 49:
            say(f"hostile input: {index + 1}/{len(cases)} cases")
    return out


@contextlib.contextmanager
def campaign(stack: NativeStack, profile: Profile, run_id: str, say: Say) -> Iterator[faults.Campaign]:
    """The bucket, a branch of the repository with the validation hook on it, the read set; all removed after."""
    settings = stack.settings
    lakefs = LakeFSClient.from_settings(settings)
    repo, branch = settings.lakefs_repo, f"reliability-{run_id.lower()}"[:60]
    work = Path(tempfile.mkdtemp(prefix="robolake-reliability-"))
    direct = s3(settings, settings.minio_endpoints[0], attempts=3)
    ensure_bucket(direct)
    lakefs.create_branch(repo, branch, "main")
    try:
        # The hook guards main only; put it on the campaign's branch so that commits there meet it.
        install_validation_hook(lakefs, repo, branch, stack_hook_url(settings))
        seeded = make_tree(work / "read-set", READ_SET, seed=profile.seed + 7)
        upload_tree(settings, work / "read-set", BUCKET, f"{run_id}/read-set", endpoint=settings.minio_endpoints[0])
        read_set = {f"{run_id}/read-set/{rel}": sha for rel, sha in seeded.items()}
        yield faults.Campaign(stack, lakefs, repo, branch, work, run_id, profile, read_set, say)
    finally:
        with contextlib.suppress(Exception):
            stack.up()
        with contextlib.suppress(Exception):
            lakefs.delete_branch(repo, branch)
        delete_prefix(direct, f"{run_id}/")
        shutil.rmtree(work, ignore_errors=True)


def lock_wait_s(report: Report) -> float | None:
    """How much longer the first node kill under accelerator PUTs took than the kills under direct PUTs."""
    node_kills = [f for f in report.faults if f.fault.startswith("kill -9 minio")]
    locked = [f.seconds for f in node_kills if f.path == "accelerator"]
    direct = [f.seconds for f in node_kills if f.path != "accelerator"]
    if not locked:
        return None
    return max(0.0, locked[0] - (sum(direct) / len(direct) if direct else 0.0))


def run(stack: NativeStack, profile: Profile, say: Say, *, run_id: str | None = None) -> Report:
    report = Report(run_id=run_id or new_run_id(f"reliability-{profile.name}"), profile=profile.name)
    began = time.monotonic()
    sampler = MemorySampler(stack)
    sampler.start()
    try:
        with campaign(stack, profile, report.run_id, say) as c:
            for fault in faults.plan(profile):
                say(f"fault: {fault.name} (upload via {fault.upload_via})")
                outcome = faults.run_fault(c, fault)
                report.faults.append(outcome)
                say(f"  {'survived' if outcome.survived else 'NOT survived: ' + '; '.join(outcome.problems)}")
            report.lock_wait_s = lock_wait_s(report)
            report.cases = hostile(stack.settings, profile, report.run_id, c.work, say)
            report.cases += security_checks(stack, say)
            say("hostile files: robolake ingest and the validation hook")
            report.cases += hostile_files(stack, c.lakefs, c.repo, c.branch, c.work)
            for case in (x for x in report.cases if x.group == HOSTILE_FILES and x.mishandled):
                say(f"mishandled: {case.case}: {case.why}")
            say(f"load: {profile.load_s:.0f} s of mixed reads and writes with slow clients")
            pid = stack._process("accelerator").pid()
            report.load = run_load(stack.settings, pid, c.read_set, f"{report.run_id}/load", duration_s=profile.load_s)
    finally:
        sampler.stop.set()
        sampler.join(timeout=2)
    report.memory = sampler.figures(stack.settings)
    report.not_covered = list(NOT_COVERED) + ([] if faults.can_mount() else [NO_MOUNT])
    report.seconds = time.monotonic() - began
    return report


def save(settings: Settings, report: Report, out_dir: Path) -> list[str]:
    """Write results.json and results.md locally and to umi-experiments/results/reliability/<run-id>/."""
    files = {"results.json": as_json(report), "results.md": render_markdown(report).encode()}
    local = out_dir / report.run_id
    local.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (local / name).write_bytes(data)
    target = results_target(settings)
    client = boto3_client(target)
    prefix = f"results/reliability/{report.run_id}/"
    hint = f"the results are saved in {str(local)!r}; start the stack (robolake stack up) to store them in the bucket"
    for name, data in files.items():
        with boto_errors("PUT", RESULTS_BUCKET, prefix + name, target, hint=hint):
            client.put_object(Bucket=RESULTS_BUCKET, Key=prefix + name, Body=data)
    return [str(local), f"s3://{RESULTS_BUCKET}/{prefix}"]
