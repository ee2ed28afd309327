"""Hostile files at the lake's two doors: `robolake ingest` and the validation hook.

Made from a small valid replay buffer (the generator's tiny profile), one thing changed in each:

    dtype, string dtype, shape, short data, huge shape   metadata that disagrees with the data
    zip bomb         a chunk entry of 1 GiB of zeros, deflated to ~1 MiB
    traversal        entries named ../../evil.txt and an absolute path
    symlink          a chunk entry that is a symbolic link to /etc/passwd
    truncated, not a zip
    not an MP4       random bytes in a folder of videos
    pose NaN, gripper strings   episode JSON the hook must refuse

Each must be refused with one line, no traceback, within its time: by `robolake ingest` (a
non-zero exit status, its last line the one `error:` line; nothing under the dataset's name in
umi-raw; no file written outside the work directory), and by the validation hook (a commit of it
on the campaign's guarded branch refused with lakeFS's 412 and the hook's reason naming the file,
the branch's head unchanged, the staged file reset). A valid replay buffer committed first shows
the hook lets good files through, so a refusal is the file's and not a broken hook's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from robolake.reliability.security import run_robolake
from robolake.reliability.table import CaseOutcome
from robolake.reliability.workload import s3
from robolake.stack.native import NativeStack
from robolake.umi import generate_dataset
from robolake.versioning.client import LakeFSClient
from robolake.versioning.errors import PreconditionFailedError
from robolake.versioning.hooks import hook_failure_reasons

GROUP = "hostile files"
INGEST_TIMEOUT_S = 180
Change = Callable[[str, bytes], bytes | None]  # an entry's new bytes, or None to leave it out


def _meta(name: str, **fields: object) -> Change:
    def change(entry: str, data: bytes) -> bytes | None:
        if entry != name:
            return data
        meta = json.loads(data)
        meta.update(fields)
        return json.dumps(meta).encode()

    return change


def _without(name: str) -> Change:
    return lambda entry, data: None if entry == name else data


def _rewrite(src: Path, dst: Path, change: Change, extra: list[tuple[zipfile.ZipInfo, bytes, int]]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
        for info, data, compression in extra:
            zout.writestr(info, data, compress_type=compression)


def make_files(work: Path, outside: Path) -> dict[str, Path]:
    """The hostile files by case name, each in a folder of its own (ingest takes a file or a folder)."""
    source = work / "valid"
    generate_dataset(source, profile="tiny", seed=3)
    valid = next(source.rglob("*.zarr.zip"))
    shape = json.loads(zipfile.ZipFile(valid).read("data/robot0_eef_pos/.zarray"))["shape"]
    link = zipfile.ZipInfo("data/robot0_eef_pos/0.0")
    link.external_attr = 0o120777 << 16
    zips: dict[str, tuple[Change, list[tuple[zipfile.ZipInfo, bytes, int]]]] = {
        "dtype int8": (_meta("data/robot0_eef_pos/.zarray", dtype="|i1"), []),
        "dtype string": (_meta("data/robot0_eef_pos/.zarray", dtype="<U10"), []),
        "shape disagrees": (_meta("data/robot0_eef_pos/.zarray", shape=[shape[0], 2], chunks=[shape[0], 2]), []),
        "short data": (_meta("data/robot0_eef_pos/.zarray", shape=[3, 3]), []),
        "huge shape": (_meta("data/camera0_rgb/.zarray", shape=[10**12, 224, 224, 3]), []),
        "zip bomb": (
            _without("data/robot0_gripper_width/0.0"),
            [(zipfile.ZipInfo("data/robot0_gripper_width/0.0"), bytes(1 << 30), zipfile.ZIP_DEFLATED)],
        ),
        "traversal": (
            lambda _e, d: d,
            [
                (zipfile.ZipInfo("../../evil.txt"), b"evil", zipfile.ZIP_STORED),
                (zipfile.ZipInfo(str(outside)), b"evil", zipfile.ZIP_STORED),
            ],
        ),
        "symlink entry": (_without("data/robot0_eef_pos/0.0"), [(link, b"/etc/passwd", zipfile.ZIP_STORED)]),
    }
    out: dict[str, Path] = {}
    for name, (change, extra) in zips.items():
        out[name] = _case_dir(work, name) / "dataset.zarr.zip"
        _rewrite(valid, out[name], change, extra)
    raw = valid.read_bytes()
    out["truncated zip"] = _case_dir(work, "truncated zip") / "dataset.zarr.zip"
    out["truncated zip"].write_bytes(raw[: len(raw) // 2])
    out["not a zip"] = _case_dir(work, "not a zip") / "dataset.zarr.zip"
    out["not a zip"].write_bytes(b"PK\x03\x04" + os.urandom(4096))
    out["not an MP4"] = _case_dir(work, "not an MP4")
    (out["not an MP4"] / "episode_00000.mp4").write_bytes(os.urandom(65536))
    return out


def _case_dir(work: Path, name: str) -> Path:
    path = work / "cases" / name.replace(" ", "-")
    path.mkdir(parents=True)
    return path


def hook_files() -> Iterator[tuple[str, str, bytes]]:
    """(case, repository path, bytes) of episode JSON the hook must refuse (ingest never takes JSON alone)."""
    yield "pose NaN", "pose/episode_00000.json", b'{"timestamps_s": [0.0, NaN], "position_m": [[0,0,0],[0,0,0]]}'
    yield "gripper strings", "gripper/episode_00000.json", b'{"timestamps_s": ["a", "b"], "width_m": [0.1, 0.1]}'


def try_ingest(stack: NativeStack, case: str, source: Path, name: str, work: Path) -> CaseOutcome:
    """`robolake ingest source --name name` must fail with one `error:` line and leave umi-raw without `name`."""
    try:
        done = run_robolake(stack, ["ingest", str(source), "--name", name], timeout_s=INGEST_TIMEOUT_S, cwd=work)
    except subprocess.TimeoutExpired:
        return _outcome(f"ingest: {case}", "timeout", [f"no answer within {INGEST_TIMEOUT_S} s"])
    problems = []
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode == 0:
        problems.append("accepted (exit status 0)")
    errors = [line for line in lines if line.startswith("error: ")]
    if "Traceback" in done.stderr or len(errors) != 1 or lines[-1:] != errors:
        problems.append(f"not one `error:` line at the end: {done.stderr.strip()[-300:]!r}")
    client = s3(stack.settings, stack.settings.minio_endpoints[0])
    for prefix in (f"pose/{name}/", f"gripper/{name}/", f"video/{name}/", f"original/{name}/", f"manifests/{name}"):
        if client.list_objects_v2(Bucket="umi-raw", Prefix=prefix, MaxKeys=1).get("KeyCount", 0):
            problems.append(f"umi-raw has objects under {prefix}")
    label = f"exit {done.returncode}" if done.returncode else "accepted"
    return _outcome(f"ingest: {case}", label, problems, said=lines[-1] if lines else "")


def try_hook(lakefs: LakeFSClient, repo: str, branch: str, case: str, path: str, data: bytes) -> CaseOutcome:
    """A commit of `data` at `path` on the guarded `branch` must be refused and leave the branch as it was."""
    head = lakefs.get_branch(repo, branch).commit_id
    problems: list[str] = []
    label = "refused"
    lakefs.upload_object(repo, branch, path, data)
    try:
        lakefs.commit(repo, branch, f"hostile file: {case}")
        label = "accepted"
        problems.append("the commit went through")
    except PreconditionFailedError as exc:
        reasons = hook_failure_reasons(lakefs, repo, exc)
        if not any(path in reason for reason in reasons):
            problems.append(f"refused, but not for the file: {reasons or exc.server_message[:200]}")
    finally:
        lakefs.reset_object(repo, branch, path)
    if lakefs.get_branch(repo, branch).commit_id != head and label == "refused":
        problems.append("the branch moved")
    return _outcome(f"hook: {case}", label, problems)


def _outcome(case: str, label: str, problems: list[str], *, said: str = "") -> CaseOutcome:
    why = "; ".join(problems) or said
    return CaseOutcome(group=GROUP, case=case, accelerator=label, mishandled=bool(problems), why=why[:300])


def hostile_files(stack: NativeStack, lakefs: LakeFSClient, repo: str, branch: str, work: Path) -> list[CaseOutcome]:
    """Every case at both doors; then no file written outside `work` (the traversal entries' targets)."""
    outside = Path("/tmp") / f"robolake-hostile-{uuid.uuid4().hex}.txt"
    files = make_files(work / "hostile-files", outside)
    run = uuid.uuid4().hex[:8]
    valid = next((work / "hostile-files" / "valid").rglob("*.zarr.zip"))
    path = f"hostile/{run}/valid/replay_buffer/{valid.name}"
    lakefs.upload_object(repo, branch, path, valid.read_bytes())
    try:
        lakefs.commit(repo, branch, "valid replay buffer: the hook lets it through")
        out = [_outcome("hook: a valid replay buffer passes", "accepted", [])]
    except PreconditionFailedError as exc:
        lakefs.reset_object(repo, branch, path)
        out = [_outcome("hook: a valid replay buffer passes", "refused", [f"refused: {exc.server_message[:200]}"])]
    for case, source in files.items():
        out.append(try_ingest(stack, case, source, f"hostile-{run}-{source.parent.name}"[:60], work))
        if source.is_file():
            out.append(
                try_hook(
                    lakefs, repo, branch, case, f"hostile/{run}/replay_buffer/dataset.zarr.zip", source.read_bytes()
                )
            )
        else:
            mp4 = next(source.iterdir())
            out.append(try_hook(lakefs, repo, branch, case, f"hostile/{run}/video/{mp4.name}", mp4.read_bytes()))
    for case, path, data in hook_files():
        out.append(try_hook(lakefs, repo, branch, case, f"hostile/{run}/{path}", data))
    escaped = [
        p for p in (outside, work.parent.parent / "evil.txt", Path.cwd().parent.parent / "evil.txt") if p.exists()
    ]
    out.append(
        _outcome("no file outside its directory", "found" if escaped else "ok", [f"{p} exists" for p in escaped])
    )
    shutil.rmtree(work / "hostile-files", ignore_errors=True)
    return out
