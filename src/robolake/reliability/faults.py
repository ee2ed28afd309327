"""Faults on the running stack, each during an upload, a read sweep and a lakeFS commit.

For every fault: upload `profile.objects` small objects (robolake.storage.upload_tree) while a
read sweep reads seeded objects through the accelerator and `put_dataset` commits a folder to
the campaign's branch. The fault is injected from the upload's own progress callback once a
fifth of the objects are acknowledged (the hooks fault: from the put's callback once its last
file is sent, so it hits the commit itself), so it always lands mid-work. Then the component is
brought back (`stack.up()`, SIGCONT, or the drive made writable again) and the campaign checks,
straight on a MinIO node:

  - every write acknowledged before recovery is there, byte for byte (sha256 of each);
  - a rerun of an interrupted upload finishes it, and then every object is there and intact;
  - the branch holds no half commit: every dataset commit on it lists exactly the files its
    metadata counts, and a rerun of an interrupted put commits the whole folder.

Reads refused during the fault are allowed (counted); a read that returns other bytes is not.

The drive fault makes one drive directory of a running node read-only (a read-only bind mount of
the directory over itself: every write there fails with EROFS while MinIO keeps running, as when
a filesystem remounts itself read-only after an error), then unmounts it; MinIO heals the writes
that drive missed. Mounting needs root (CAP_SYS_ADMIN): without it the fault is not run and the
table says so.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import signal
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robolake.config import Settings
from robolake.reliability.table import FaultOutcome, Profile
from robolake.reliability.workload import BUCKET, ReadSweep, Worker, make_tree, missing_or_wrong, prefixed, s3
from robolake.stack.native import NativeStack
from robolake.storage import TransferProgress, upload_tree
from robolake.versioning.client import LakeFSClient
from robolake.versioning.dataset import put_dataset, read_dataset

JOIN_TIMEOUT_S = 420.0  # a PUT waiting on a dead node's lock takes up to about 2 minutes
INJECT_FRACTION = 0.2
Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Fault:
    component: str  # minio-1..3, accelerator, hooks, lakefs
    # "kill" (SIGKILL, then `stack up`), "stop" (SIGSTOP, then SIGCONT), "readonly" (the node's
    # first drive mounted read-only, then unmounted)
    how: str = "kill"
    upload_via: str = "accelerator"  # or the MinIO node the upload goes to directly

    @property
    def name(self) -> str:
        if self.how == "readonly":
            return f"read-only drive 1 of {self.component}"
        return f"{'kill -9' if self.how == 'kill' else 'SIGSTOP'} {self.component}"

    @property
    def slug(self) -> str:
        return f"{self.how}-{self.component}"


def plan(profile: Profile) -> list[Fault]:
    """The faults in run order: those that leave no PUT lock behind first, the lock waits last."""
    nodes = ("minio-1", "minio-2", "minio-3")
    quick = [Fault("hooks"), Fault("lakefs"), Fault("accelerator")]
    direct = [
        Fault(node, upload_via=next(n for n in nodes if n != node)) for node in nodes if node not in profile.lock_faults
    ]
    # A frozen node holds its locks too: freeze one whose PUTs do not come through the accelerator.
    frozen = Fault("minio-3", how="stop", upload_via="minio-1")
    locked = [Fault(node) for node in nodes if node in profile.lock_faults]
    drive = [Fault("minio-1", how="readonly")] if can_mount() else []
    return [*quick, *drive, *direct, frozen, *locked]


def can_mount() -> bool:
    """Whether this process may bind-mount a drive read-only (root, with the mount tool)."""
    return (
        os.geteuid() == 0 and subprocess.run(["mount", "--version"], capture_output=True, check=False).returncode == 0
    )


def _mount(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed: {done.stderr.strip()}")


def set_read_only(drive: Path, read_only: bool) -> None:
    """Make `drive` read-only (a read-only bind mount over itself) or writable again (unmount it)."""
    if read_only:
        _read_only_bind(drive)
    else:
        # Lazily (-l): detached at once even while MinIO reads a file through it (plain umount: EBUSY).
        while is_mount_point(drive):  # os.path.ismount misses a bind mount within one filesystem
            _mount(["umount", "-l", str(drive)])


# Linux's mount API (5.2+; the numbers are the same on every architecture): a bind mount is made
# read-only while detached, then attached, so no write can start through it in between. With
# `mount --bind` then `mount -o remount,bind,ro`, a file MinIO opens for writing through the new
# mount in between makes the kernel refuse the remount (EBUSY).
OPEN_TREE, MOVE_MOUNT, MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_EMPTY_PATH, MOVE_MOUNT_F_EMPTY_PATH, MOUNT_ATTR_RDONLY = 1, 0x1000, 0x4, 0x1
AT_FDCWD = -100


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def _read_only_bind(drive: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    where = os.fsencode(drive)

    def call(number: int, *args: object) -> int:
        result = int(libc.syscall(number, *args))
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"{os.strerror(code)} (Linux mount API, making {str(drive)!r} read-only)")
        return result

    tree = call(OPEN_TREE, AT_FDCWD, where, OPEN_TREE_CLONE | os.O_CLOEXEC)
    try:
        attr = _MountAttr(attr_set=MOUNT_ATTR_RDONLY)
        call(MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr))
        call(MOVE_MOUNT, tree, b"", AT_FDCWD, where, MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(tree)


def is_mount_point(path: Path) -> bool:
    """Whether `path` is a mount point of this process's mount namespace (/proc/self/mountinfo)."""
    want = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4]  # octal escapes for space, tab, newline and backslash
            if re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point) == want:
                return True
    return False


@dataclasses.dataclass
class Campaign:
    """What every fault shares: the stack, the branch the commits go to, the seeded read set."""

    stack: NativeStack
    lakefs: LakeFSClient
    repo: str
    branch: str
    work: Path
    run_id: str
    profile: Profile
    read_set: dict[str, str]  # {key: sha256} read by the sweep
    say: Say

    @property
    def settings(self) -> Settings:
        return self.stack.settings

    def endpoint(self, via: str) -> str:
        if via == "accelerator":
            return self.settings.accelerator_endpoint
        return self.settings.minio_endpoints[int(via.rsplit("-", 1)[1]) - 1]


def _drive(c: Campaign, fault: Fault) -> Path:
    return c.stack.state.drive(int(fault.component.rsplit("-", 1)[1]), 1)


def _inject(c: Campaign, fault: Fault) -> None:
    if fault.how == "readonly":
        set_read_only(_drive(c, fault), True)
    else:
        _signal(c.stack, fault.component, signal.SIGSTOP if fault.how == "stop" else signal.SIGKILL)


def _signal(stack: NativeStack, component: str, sig: signal.Signals) -> None:
    pid = stack._process(component).pid()
    if pid is None:
        raise RuntimeError(f"{component} is not running; start the stack (robolake stack up) first")
    os.kill(pid, sig)


def _recover(c: Campaign, fault: Fault, commit: Worker) -> float:
    """Bring the component back; return how long that took."""
    if fault.how in ("stop", "readonly"):
        time.sleep(c.profile.stop_s)
        started = time.monotonic()
        if fault.how == "stop":
            _signal(c.stack, fault.component, signal.SIGCONT)
        else:
            set_read_only(_drive(c, fault), False)
        return time.monotonic() - started
    if fault.component == "hooks":
        commit.join(timeout=120)  # keep it down until the commit met it
    else:
        time.sleep(c.profile.down_s)
    started = time.monotonic()
    c.stack.up()
    return time.monotonic() - started


def run_fault(c: Campaign, fault: Fault) -> FaultOutcome:
    """Inject `fault` mid-work, recover, check; every finding goes in the outcome, nothing is raised."""
    began = time.monotonic()
    root = c.work / fault.slug
    upload_dir, dataset_dir = root / "upload", root / "dataset"
    seed = zlib.crc32(f"{c.profile.seed}/{fault.slug}".encode())
    files = make_tree(upload_dir, c.profile.objects, seed=seed)
    make_tree(dataset_dir, c.profile.dataset_files, seed=seed + 1)
    prefix = f"{c.run_id}/{fault.slug}"
    out = FaultOutcome(fault=fault.name, path=fault.upload_via, objects=len(files))
    acked: set[str] = set()  # keys the uploader reported stored and verified
    injected: list[float] = []

    def inject() -> None:
        if not injected:
            injected.append(time.monotonic())
            out.injected_at = len(acked)
            try:
                _inject(c, fault)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                out.problems.append(f"the fault could not be injected: {exc}")

    def on_upload(p: TransferProgress) -> None:
        if p.path:
            acked.add(p.path)
        if fault.component != "hooks" and p.objects_done >= max(1, int(len(files) * INJECT_FRACTION)):
            inject()

    def on_put(p: TransferProgress) -> None:
        if fault.component == "hooks" and p.objects_done >= p.objects_total:
            inject()

    def upload() -> object:
        return upload_tree(
            c.settings,
            upload_dir,
            BUCKET,
            prefix,
            endpoint=c.endpoint(fault.upload_via),
            concurrency=16,
            progress=on_upload,
        )

    def commit() -> object:
        return put_dataset(c.lakefs, c.repo, c.branch, dataset_dir, f"reliability/{fault.slug}", progress=on_put)

    sweep = ReadSweep(s3(c.settings, c.settings.accelerator_endpoint, attempts=1, timeout_s=5.0), c.read_set)
    workers = [Worker("upload", upload), Worker("commit", commit), Worker("sweep", sweep.run)]
    head_before = c.lakefs.get_branch(c.repo, c.branch).commit_id
    _strike(c, fault, out, workers, injected)
    sweep.stop.set()
    workers[2].join(timeout=30)
    out.reads, out.read_errors, out.reads_wrong = sweep.reads, sweep.errors, sweep.wrong
    if sweep.wrong_keys:
        out.problems.append(f"reads returned other bytes, e.g. {sweep.wrong_keys[0]!r}")
    _check_upload(c, out, workers[0], prefixed(prefix, files), acked, upload)
    _check_commit(c, out, workers[1], head_before, fault, commit)
    out.seconds = time.monotonic() - began
    return out


def _strike(c: Campaign, fault: Fault, out: FaultOutcome, workers: list[Worker], injected: list[float]) -> None:
    """Start the work, wait for the fault to be injected from a progress callback, recover, let the work end."""
    try:
        _strike_and_recover(c, fault, out, workers, injected)
    finally:
        if fault.how == "readonly":  # never leave a drive read-only, whatever happened
            set_read_only(_drive(c, fault), False)


def _strike_and_recover(
    c: Campaign, fault: Fault, out: FaultOutcome, workers: list[Worker], injected: list[float]
) -> None:
    for w in workers:
        w.start()
    deadline = time.monotonic() + 120
    while not injected and time.monotonic() < deadline and (workers[0].is_alive() or workers[1].is_alive()):
        time.sleep(0.05)
    if not injected:
        out.problems.append("the fault could not be injected before the work finished")
    else:
        c.say(f"{fault.name}: injected at {out.injected_at} acknowledged objects; recovering")
        out.recovery_s = _recover(c, fault, workers[1])
    for w in workers[:2]:
        w.join(timeout=JOIN_TIMEOUT_S)
        if w.is_alive():
            out.problems.append(f"the {w.name} did not finish within {JOIN_TIMEOUT_S:.0f} s of the fault")


def _check_upload(
    c: Campaign,
    out: FaultOutcome,
    worker: Worker,
    expected: dict[str, str],
    acked: set[str],
    upload: Callable[[], object],
) -> None:
    direct = [s3(c.settings, endpoint, attempts=3) for endpoint in c.settings.minio_endpoints]
    known = {k: expected[k] for k in acked if k in expected}
    out.acknowledged += len(known)
    lost = missing_or_wrong(direct, known)
    out.lost += len(lost)
    if lost:
        out.problems.append(f"{len(lost)} acknowledged object(s) lost, e.g. {lost[0]!r}")
    summary: Any = worker.result
    out.upload_interrupted = worker.error is not None or (summary is not None and bool(summary.failures))
    if out.upload_interrupted:
        rerun = Worker("upload rerun", upload)
        rerun.run()
        again: Any = rerun.result
        if rerun.error is not None or again is None or again.failures:
            out.problems.append(f"the rerun of the upload did not finish it: {rerun.error or rerun.result!r}")
            return
    out.upload_resumed = True
    absent = missing_or_wrong(direct, expected)
    if absent:
        out.problems.append(f"after the upload finished, {len(absent)} object(s) missing or wrong, e.g. {absent[0]!r}")


def _check_commit(
    c: Campaign, out: FaultOutcome, worker: Worker, head_before: str, fault: Fault, commit: Callable[[], object]
) -> None:
    out.half_commit = _half_commits(c, head_before)
    result: Any = worker.result
    if worker.error is None and result is not None:
        out.commit = "whole"
    else:
        rerun = Worker("commit rerun", commit)
        rerun.run()
        if rerun.error is not None:
            out.commit = "rerun refused"
            out.problems.append(f"the rerun of the interrupted put failed: {rerun.error}")
            return
        result = rerun.result
        out.commit = f"retried ({type(worker.error).__name__})"
    out.acknowledged += result.object_count
    try:
        read_dataset(c.lakefs, c.repo, result.commit.id, result.prefix, c.work / fault.slug / "readback")
    except Exception as exc:  # any failure to read the commit back whole is a finding
        out.lost += result.object_count
        out.problems.append(f"commit {result.commit.id[:12]} does not read back whole: {exc}")
    out.half_commit = out.half_commit or _half_commits(c, head_before)


def _half_commits(c: Campaign, head_before: str) -> bool:
    """True when a commit made since `head_before` lists fewer or more files than its metadata counts."""
    for commit in c.lakefs.log(c.repo, c.branch, limit=20):
        if commit.id == head_before:
            return False
        prefix, count = commit.metadata.get("prefix"), commit.metadata.get("object_count")
        if prefix is None or count is None:
            continue
        listed = [o for o in c.lakefs.list_objects(c.repo, commit.id, prefix) if o.path != prefix]
        if len(listed) != int(count):
            return True
    return False
