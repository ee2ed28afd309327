"""The UMI validation hook: before a commit or merge lands on a guarded branch, lakeFS asks us
whether the UMI files it adds or changes are sound, and a "no" aborts the operation.

    lakeFS --POST /lakefs/validate-umi?token=...  {"event_type": "pre-merge", "repository_id", "branch_id",
                                                    "source_ref", "commit_id", ...}  --> hooks server
           <-- 200 "ok" | 400 "<path>: <problem>" | 500 "internal error: ..."

What is checked (objects added, changed or in conflict; everything else passes untouched):

    *.zarr.zip                        validate_replay_buffer: zip directory, zarr v2 layout, arrays, frames
    .../pose/.../episode_N.json       time stamps finite and increasing; each series one finite row per stamp
    .../gripper/.../episode_N.json    the same, and width_m within 0..0.2 m
    *.mp4                             H.264, at least one frame, every frame the header lists is in the file

Which objects: pre-commit -> the branch's uncommitted changes, read at the branch; pre-merge ->
what the source brings since the merge base (three-dot diff of the destination and `source_ref`,
the source commit), read at `source_ref`. The payload is lakeFS's `EventInfo` (pkg/actions/event.go).

lakeFS reads the action file from the event's source ref: for pre-commit the branch itself, staged
changes included (so the commit that installs the action already runs it); for pre-merge the source
commit (so branches made from a guarded branch carry the action along). A non-2xx answer fails the
hook; the client's commit or merge then gets HTTP 412 saying only "webhook request failed (status
code: 400)". Our answer's body lands in the hook run's log, from where `hook_failure_reasons`
reads it back, so `explain_hook_failure` can name the path and the problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import yaml

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.state import StateDir
from robolake.versioning.client import Commit, DiffEntry, LakeFSClient
from robolake.versioning.errors import Call, NotFoundError, PreconditionFailedError

ACTION_PATH = "_lakefs_actions/robolake-validate-umi.yaml"
ACTION_NAME = "robolake UMI validation"
HOOK_ID = "robolake_validate_umi"
ROUTE = "/lakefs/validate-umi"
# Every answer body starts with this, so the answer can be found again in lakeFS's hook run log.
REPLY_PREFIX = "robolake-validate-umi: "
HANDLED_EVENTS = ("pre-commit", "pre-merge")
CHECKED_DIFF_TYPES = ("added", "changed", "conflict")
GRIPPER_WIDTH_RANGE_M = (0.0, 0.2)
ACCEPTED_VIDEO_CODECS = ("h264",)

# Series in episode JSON: field -> numbers per row (None: one number per time stamp; 0: any, but
# the same in every row). The generator writes them at the top level; ingest of a replay buffer
# writes them per robot under "robots" (umi/generator.py, ingest/sources.py).
POSE_SERIES: dict[str, int | None] = {
    "eef_position_m": 3, "eef_rot_axis_angle": 3, "eef_quaternion_xyzw": 4, "joint_positions_rad": 0,
}
POSE_REQUIRED = ("eef_position_m", "eef_rot_axis_angle")
GRIPPER_SERIES: dict[str, int | None] = {"width_m": None, "force_n": None}
GRIPPER_REQUIRED = ("width_m",)
_EPISODE_JSON_RE = re.compile(r"^episode_\d+\.json$")
_GO_DURATION_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


class ObjectRejected(RobolakeError, ValueError):
    """An object the commit or merge would bring fails the UMI checks; `.path` is its repository path."""

    exit_code = 3

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ValidationBudgetExceeded(RobolakeError):
    """Validation did not finish within its time budget (the operation is refused, not judged)."""


class HookInstallError(RobolakeError):
    """The branch has uncommitted changes that committing the action file would take along."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ValidationLimits:
    """Bounds on the work one hook call may do; objects above a size limit are refused."""

    max_object_bytes: int = 1 << 30
    max_json_bytes: int = 64 << 20
    time_budget_s: float = 100.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class HookEvent:
    """The part of lakeFS's webhook payload (EventInfo) the validator needs."""

    event_type: str
    repository_id: str
    branch_id: str
    source_ref: str
    commit_id: str = ""
    merge_source: str = ""
    action_name: str = ""
    hook_id: str = ""

    @classmethod
    def from_json(cls, raw: object) -> HookEvent:
        """Parse the payload; ValueError names the field that is missing or wrong."""
        if not isinstance(raw, dict):
            raise ValueError(f"the body is a JSON {type(raw).__name__}, expected lakeFS's event object")
        values: dict[str, str] = {}
        for field in dataclasses.fields(cls):
            value = raw.get(field.name, "")
            if not isinstance(value, str):
                raise ValueError(f"event field {field.name!r} is {value!r}, expected a string")
            values[field.name] = value
        for required in ("event_type", "repository_id", "branch_id", "source_ref"):
            if not values[required]:
                raise ValueError(f"the event has no {required!r}; is this a lakeFS webhook call?")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """What one hook call looked at and what it found."""

    ref: str
    checked: tuple[str, ...]
    skipped: int
    rejected: tuple[ObjectRejected, ...]

    @property
    def ok(self) -> bool:
        return not self.rejected

    def summary(self) -> str:
        """One line: the first problem (and how many more), or what was checked."""
        if self.rejected:
            first = str(self.rejected[0])
            if len(self.rejected) == 1:
                return first
            others = ", ".join(r.path for r in self.rejected[1:4])
            more = "" if len(self.rejected) <= 4 else f" and {len(self.rejected) - 4} more"
            return f"{first} (also rejected: {others}{more})"
        return f"{len(self.checked)} UMI object(s) valid at {self.ref!r}, {self.skipped} other object(s) not checked"


# ---- which objects, and of what kind ----------------------------------------------------------


def classify(path: str) -> str | None:
    """"replay_buffer", "pose", "gripper", "video", or None for objects the hook does not check."""
    p = PurePosixPath(path)
    name = p.name.lower()
    if name.endswith(".zarr.zip"):
        return "replay_buffer"
    if name.endswith(".mp4"):
        return "video"
    if _EPISODE_JSON_RE.match(p.name):
        # The sensor is the nearest enclosing pose/ or gripper/ folder: pose/episode_00001.json
        # (generated), pose/<dataset>/episode_00001.json (ingested), under any prefix.
        for folder in reversed(p.parts[:-1]):
            if folder in ("pose", "gripper"):
                return folder
    return None


def changes_to_check(client: LakeFSClient, event: HookEvent) -> tuple[str, list[DiffEntry]]:
    """The ref to read objects at, and the entries the operation adds or changes there."""
    repo = event.repository_id
    if event.event_type == "pre-merge":
        ref = event.source_ref
        entries = client.diff(repo, event.branch_id, event.source_ref)
    elif event.event_type == "pre-commit":
        ref = event.branch_id
        entries = client.uncommitted(repo, event.branch_id)
    else:
        raise ValueError(f"event type {event.event_type!r} is not handled; run this hook on {HANDLED_EVENTS}")
    return ref, [e for e in entries if e.type in CHECKED_DIFF_TYPES and e.path_type == "object"]


def validate_event(
    client: LakeFSClient, event: HookEvent, limits: ValidationLimits = ValidationLimits(), *,
    work_dir: Path | None = None, deadline: float | None = None,
) -> ValidationReport:
    """Check every UMI object the event's commit or merge would bring; collect what fails.

    `deadline` is a time.monotonic() value; past it, ValidationBudgetExceeded is raised.
    """
    if deadline is None:
        deadline = time.monotonic() + limits.time_budget_s
    ref, entries = changes_to_check(client, event)
    todo = [(e, kind) for e in entries if (kind := classify(e.path)) is not None]
    checked: list[str] = []
    rejected: list[ObjectRejected] = []
    skipped = len(entries) - len(todo)
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="robolake-hook-", dir=work_dir) as tmp:
        for n, (entry, kind) in enumerate(todo):
            if time.monotonic() > deadline:
                raise ValidationBudgetExceeded(
                    f"validation of {event.event_type} on {event.repository_id}/{event.branch_id} did not finish "
                    f"within {limits.time_budget_s:.0f} s ({n} of {len(todo)} UMI objects checked); commit in "
                    "smaller batches, or give the hooks server a larger budget (robolake hooks serve --time-budget-s)"
                )
            try:
                check_object(client, event.repository_id, ref, entry, kind, limits, Path(tmp))
            except ObjectRejected as exc:
                rejected.append(exc)
            except NotFoundError:
                # A conflict entry the source side deleted: the operation brings nothing to check.
                skipped += 1
                continue
            checked.append(entry.path)
    return ValidationReport(ref, tuple(checked), skipped, tuple(rejected))


def check_object(
    client: LakeFSClient, repo: str, ref: str, entry: DiffEntry, kind: str, limits: ValidationLimits, tmp: Path,
) -> None:
    """Read one object at `ref` and check it by kind; ObjectRejected names its path and the problem."""
    path = entry.path
    size = entry.size_bytes if entry.size_bytes is not None else client.stat_object(repo, ref, path).size_bytes
    limit = limits.max_json_bytes if kind in ("pose", "gripper") else limits.max_object_bytes
    if size > limit:
        raise ObjectRejected(path, f"is {size} bytes, more than the {limit} bytes the validation hook reads for a "
                                   f"{kind.replace('_', ' ')} file; split it, or raise the hooks server's limit")
    if size == 0:
        raise ObjectRejected(path, "is empty (0 bytes): an upload that never completed?")
    if kind in ("pose", "gripper"):
        check_episode_json(path, client.get_object(repo, ref, path), kind)
        return
    local = tmp / f"object{PurePosixPath(path).suffix}"
    try:
        client.download_object(repo, ref, path, local)
        if kind == "replay_buffer":
            _check_replay_buffer(path, local)
        else:
            _check_video(path, local)
    finally:
        local.unlink(missing_ok=True)


def _check_replay_buffer(path: str, local: Path) -> None:
    from robolake.umi.errors import DatasetFormatError
    from robolake.umi.replay_buffer import validate_replay_buffer

    try:
        validate_replay_buffer(local)
    except DatasetFormatError as exc:
        raise ObjectRejected(path, exc.problem.replace(str(local), path)) from exc


def _check_video(path: str, local: Path) -> None:
    from robolake.umi.errors import DatasetFormatError
    from robolake.umi.video import check_video

    try:
        info = check_video(local)
    except DatasetFormatError as exc:  # FFmpeg's messages name the file: name the repository path
        raise ObjectRejected(path, exc.problem.replace(str(local), path)) from exc
    if info.codec not in ACCEPTED_VIDEO_CODECS:
        expected = " or ".join(ACCEPTED_VIDEO_CODECS)
        raise ObjectRejected(path, f"video codec is {info.codec!r}; UMI clips must be {expected}")
    if info.frame_count <= 0:
        raise ObjectRejected(path, "holds no video frames")


# ---- episode JSON -----------------------------------------------------------------------------


def check_episode_json(path: str, data: bytes, kind: str) -> None:
    """Check a pose or gripper episode file (`kind`), generated or ingested layout."""
    if kind == "pose":
        check_pose_json(path, data)
    elif kind == "gripper":
        check_gripper_json(path, data)
    else:
        raise ValueError(f"kind {kind!r} is not an episode JSON kind; expected 'pose' or 'gripper'")


def check_pose_json(path: str, data: bytes) -> None:
    """Time stamps finite and increasing; eef position and rotation (and any other series) one
    finite row of the right width per time stamp."""
    doc = _load_json(path, data)
    n = _timestamps(path, doc)
    for label, series in _series_groups(path, doc):
        _check_series(path, label, series, POSE_SERIES, POSE_REQUIRED, n)


def check_gripper_json(path: str, data: bytes) -> None:
    """As for poses, and every gripper width within 0..0.2 m."""
    doc = _load_json(path, data)
    n = _timestamps(path, doc)
    lo, hi = GRIPPER_WIDTH_RANGE_M
    for label, series in _series_groups(path, doc):
        _check_series(path, label, series, GRIPPER_SERIES, GRIPPER_REQUIRED, n)
        for i, width in enumerate(series["width_m"]):
            if not lo <= width <= hi:
                raise ObjectRejected(path, f"{label}width_m[{i}] = {width!r} m is outside {lo}..{hi} m: not a "
                                           "gripper opening (metres, not millimetres?)")


def _load_json(path: str, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ObjectRejected(path, "is not UTF-8 text: corrupt, or not an episode JSON file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ObjectRejected(path, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}, "
                                   f"{len(data)} bytes): truncated or corrupt") from None
    if not isinstance(doc, dict):
        raise ObjectRejected(path, f"holds {_kind(doc)}, expected a JSON object with timestamps_s and series")
    return doc


def _kind(value: object) -> str:
    """JSON's name for the value's type, with its article: "an array", "a string", "null"."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _number(path: str, label: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ObjectRejected(path, f"{label} is {_kind(value)}" + ("" if value is None else f" ({value!r})")
                                   + ", expected a number")
    if not math.isfinite(value):
        raise ObjectRejected(path, f"{label} is {value!r}: every number must be finite")
    return float(value)


def _timestamps(path: str, doc: Mapping[str, Any]) -> int:
    raw = doc.get("timestamps_s")
    if not isinstance(raw, list):
        what = "missing" if raw is None else _kind(raw)
        raise ObjectRejected(path, f"timestamps_s is {what}, expected an array with one time stamp per frame")
    if not raw:
        raise ObjectRejected(path, "timestamps_s is empty: an episode needs at least one frame")
    previous = -math.inf
    for i, value in enumerate(raw):
        t = _number(path, f"timestamps_s[{i}]", value)
        if t <= previous:
            raise ObjectRejected(path, f"timestamps_s[{i}] = {t!r} does not increase (timestamps_s[{i - 1}] = "
                                       f"{previous!r}): time stamps must be strictly increasing")
        previous = t
    count = doc.get("frame_count")
    if count is not None and (isinstance(count, bool) or count != len(raw)):
        raise ObjectRejected(path, f"frame_count is {count!r} but timestamps_s has {len(raw)} entries")
    fps = doc.get("fps")
    if fps is not None and _number(path, "fps", fps) <= 0:
        raise ObjectRejected(path, f"fps is {fps!r}, expected a positive rate")
    return len(raw)


def _series_groups(path: str, doc: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label prefix, mapping holding the series): the document itself, or each of its robots."""
    robots = doc.get("robots")
    if robots is None:
        yield "", dict(doc)
        return
    if not isinstance(robots, dict) or not robots:
        raise ObjectRejected(path, f"robots is {_kind(robots)}, expected an object of robot name -> series")
    for name, series in robots.items():
        if not isinstance(series, dict):
            raise ObjectRejected(path, f"robots.{name} is {_kind(series)}, expected an object of series")
        yield f"robots.{name}.", series


def _check_series(
    path: str, label: str, doc: dict[str, Any], specs: Mapping[str, int | None], required: tuple[str, ...], n: int,
) -> None:
    """Check every known series in `doc`; replace each by its floats, so callers can range-check them."""
    for name in required:
        if name not in doc:
            raise ObjectRejected(path, f"{label}{name} is missing; a {'/'.join(required)} series is required")
    for name, width in specs.items():
        if name not in doc:
            continue
        raw, where = doc[name], f"{label}{name}"
        if not isinstance(raw, list):
            raise ObjectRejected(path, f"{where} is {_kind(raw)}, expected an array with one entry per time stamp")
        if len(raw) != n:
            raise ObjectRejected(path, f"{where} has {len(raw)} entries but timestamps_s has {n}: every series "
                                       "needs one entry per time stamp")
        if width is None:
            doc[name] = [_number(path, f"{where}[{i}]", v) for i, v in enumerate(raw)]
            continue
        expected = width or (len(raw[0]) if isinstance(raw[0], list) else -1)
        for i, row in enumerate(raw):
            if not isinstance(row, list) or len(row) != expected or not row:
                shape = f"{len(row)} numbers" if isinstance(row, list) else _kind(row)
                want = f"{expected} numbers" if expected > 0 else "a non-empty array of numbers"
                raise ObjectRejected(path, f"{where}[{i}] is {shape}, expected {want}")
            for j, value in enumerate(row):
                _number(path, f"{where}[{i}][{j}]", value)


# ---- installing the action --------------------------------------------------------------------


def validation_hook_url(hooks_endpoint: str, token: str) -> str:
    """The webhook URL lakeFS calls: the route on `hooks_endpoint`, with the token in the query."""
    return f"{hooks_endpoint.rstrip('/')}{ROUTE}?token={quote(token, safe='')}"


def stack_hook_url(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The URL of the local stack's hooks server; the token from ROBOLAKE_HOOKS_TOKEN or the state dir."""
    token = (os.environ if environ is None else environ).get("ROBOLAKE_HOOKS_TOKEN", "")
    if not token:
        state = StateDir(settings.state_dir)
        creds = state.load_credentials()
        token = creds.hooks_token if creds is not None else ""
        if not token:
            raise ConfigError(
                f"no hooks token: {str(state.credentials_path)!r} holds none; start the stack (`robolake stack up`), "
                "point ROBOLAKE_STATE_DIR at its state directory, or pass the webhook URL with --url"
            )
    return validation_hook_url(settings.hooks_endpoint, token)


def action_yaml(branch: str, url: str, timeout: str = "2m") -> bytes:
    """The lakeFS action that runs the validation webhook on pre-commit and pre-merge of `branch`."""
    if not _GO_DURATION_RE.match(timeout):
        raise ConfigError(f"hook timeout {timeout!r} is not a Go duration lakeFS can parse; e.g. 90s, 2m, 1m30s")
    action = {
        "name": ACTION_NAME,
        "description": "Reject commits and merges that bring malformed UMI files (replay buffers, "
                       "pose/gripper episode JSON, MP4s); served by `robolake hooks serve`.",
        "on": {event: {"branches": [branch]} for event in HANDLED_EVENTS},
        "hooks": [{
            "id": HOOK_ID,
            "type": "webhook",
            "description": "robolake UMI validation",
            "properties": {"url": url, "timeout": timeout},
        }],
    }
    return yaml.safe_dump(action, sort_keys=False, default_flow_style=False, width=1000).encode()


def install_validation_hook(
    client: LakeFSClient, repo: str, branch: str, url: str, *, timeout: str = "2m",
) -> Commit | None:
    """Commit the validation action to `branch`; None when that exact file is committed there already.

    The commit runs the new action itself, so a hook server lakeFS cannot reach (or that refuses
    the token) fails the install with PreconditionFailedError, and the branch is left as it was.
    HookInstallError: the branch has other uncommitted changes, which the commit would take along.
    """
    body = action_yaml(branch, url, timeout)
    head = client.get_branch(repo, branch).commit_id
    try:
        if client.get_object(repo, head, ACTION_PATH) == body:
            return None
    except NotFoundError:
        pass
    pending = [e.path for e in client.uncommitted(repo, branch) if e.path != ACTION_PATH]
    if pending:
        shown = ", ".join(repr(p) for p in pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
        raise HookInstallError(
            f"cannot install the UMI validation hook on {repo}/{branch}: the branch has {len(pending)} uncommitted "
            f"change(s) ({shown}) that the install commit would take along; commit or reset them, then run "
            "`robolake version install-hook` again"
        )
    client.upload_object(repo, branch, ACTION_PATH, body, content_type="application/x-yaml")
    try:
        return client.commit(repo, branch, "Install the robolake UMI validation hook",
                             {"robolake_action": ACTION_PATH, "hook_url": _without_query(url)})
    except PreconditionFailedError as exc:
        _reset_object(client, repo, branch, ACTION_PATH)
        said = "; ".join(hook_failure_reasons(client, repo, exc)) or _TOKEN_RE.sub(r"\1...", exc.server_message.strip())
        raise PreconditionFailedError(
            f"installing the UMI validation hook on {repo}/{branch} failed: lakeFS ran it for the install commit "
            f"and it did not pass ({said}); is `robolake hooks serve` running at {_without_query(url)} with the "
            "token in the URL? The branch was left as it was",
            status=exc.status, server_message=exc.server_message, call=exc.call,
        ) from exc
    except RobolakeError:
        _reset_object(client, repo, branch, ACTION_PATH)
        raise


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


# ---- reading lakeFS's account of a failed hook --------------------------------------------------
# LakeFSClient has no calls for the actions API or for resetting one staged path; these helpers
# go through its request plumbing, so errors are translated the same way.


def _reset_object(client: LakeFSClient, repo: str, branch: str, path: str) -> None:
    """Drop the staged change of `path` on `branch` (lakeFS "reset" of one object)."""
    call = Call(f"reset {path!r} on branch {branch!r}", repo, (("branch", branch),), path)
    with contextlib.suppress(RobolakeError):
        client._request("PUT", f"/repositories/{quote(repo, safe='')}/branches/{quote(branch, safe='')}", call,
                        json={"type": "object", "path": path})


_RUN_ID_RE = re.compile(r"run id '([^']+)'")
_TOKEN_RE = re.compile(r"(token=)[^&\s\"']+")
_REPLY_RE = re.compile(re.escape(REPLY_PREFIX) + r"(.*)")


def hook_failure_reasons(client: LakeFSClient, repo: str, exc: PreconditionFailedError) -> list[str]:
    """What the failed hooks of the run that refused the operation answered (their body's line)."""
    match = _RUN_ID_RE.search(exc.server_message)
    if match is None:
        return []
    run = quote(match.group(1), safe="")
    base = f"/repositories/{quote(repo, safe='')}/actions/runs/{run}/hooks"
    reasons: list[str] = []
    try:
        hooks = list(client._pages(base, Call(f"list the hooks of run {match.group(1)!r}", repo)))
        for hook in hooks:
            if hook.get("status") != "failed":
                continue
            hook_run = str(hook.get("hook_run_id", ""))
            call = Call(f"read the output of hook run {hook_run!r}", repo)
            output = client._request("GET", f"{base}/{quote(hook_run, safe='')}/output", call).text
            said = _reply_in(output) or f"hook {hook.get('hook_id')!r} failed: {_last_error(output)}"
            # lakeFS's own errors quote the webhook URL, token included: never pass that on.
            reasons.append(_TOKEN_RE.sub(r"\1...", said))
    except RobolakeError:
        return reasons
    return reasons


def _reply_in(output: str) -> str:
    """Our answer's line in a webhook run log (after "Response:", never the request echo)."""
    _, _, response = output.rpartition("\nResponse:\n")
    found = _REPLY_RE.findall(response)
    return found[-1].strip() if found else ""


def _last_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    return lines[-1].removeprefix("Error: ") if lines else "no output"


def explain_hook_failure(client: LakeFSClient, repo: str, exc: PreconditionFailedError) -> PreconditionFailedError:
    """`exc` again, its message ending with what the hooks said (or `exc` unchanged if nothing was found)."""
    reasons = hook_failure_reasons(client, repo, exc)
    if not reasons:
        return exc
    action = exc.call.action if exc.call is not None else "complete the operation"
    return PreconditionFailedError(
        f"cannot {action}: the validation hook refused it: {'; '.join(reasons)}",
        status=exc.status, server_message=exc.server_message, call=exc.call,
    )


@contextlib.contextmanager
def hook_reasons(client: LakeFSClient, repo: str) -> Iterator[None]:
    """Re-raise a hook refusal (HTTP 412) inside the block with the hooks' own reasons in its message."""
    try:
        yield
    except PreconditionFailedError as exc:
        raise explain_hook_failure(client, repo, exc) from exc
