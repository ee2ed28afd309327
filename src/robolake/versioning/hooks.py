"""The UMI validation hook: before a commit or merge lands on a guarded branch, lakeFS asks us
whether the UMI files it adds or changes are sound, and a "no" aborts the operation.

    lakeFS --POST /lakefs/validate-umi  Authorization: Bearer <hooks token>
                                         {"event_type": "pre-merge", "repository_id", "branch_id",
                                          "source_ref", "commit_id", ...}  --> hooks server
           <-- 200 "ok" | 400 "<path>: <problem>" | 500 "internal error: ..."

What is checked is in umi_rules.py (replay buffers, pose/gripper episode JSON, MP4s), for the
objects the operation adds, changes or has in conflict; everything else passes untouched. This
module is the protocol around those rules: the event, which objects it selects, the action file
that installs the hook on a branch, and reading back why a hook refused an operation.

Which objects: pre-commit -> the branch's uncommitted changes, read at the branch; pre-merge ->
what the source brings since the merge base (three-dot diff of the destination and `source_ref`,
the source commit), read at `source_ref`. The payload is lakeFS's `EventInfo` (pkg/actions/event.go).

lakeFS reads the action file from the event's source ref: for pre-commit the branch itself, staged
changes included (so the commit that installs the action already runs it); for pre-merge the source
commit (so branches made from a guarded branch carry the action along). A non-2xx answer fails the
hook; the client's commit or merge then gets HTTP 412 saying only "webhook request failed (status
code: 400)". Our answer's body lands in the hook run's log, from where `hook_failure_reasons`
reads it back, so `explain_hook_failure` can name the path and the problem.

The token is not in the action file, which anyone who can read the repository can read: the
file's webhook sends the header `Authorization: Bearer {{ ENV.LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN }}`,
which lakeFS fills in from its own environment when it runs the hook (its actions read variables
with the LAKEFSACTION_ prefix, and mask them in its logs); the stack starts lakeFS with that
variable. A `--url` of one's own carrying `?token=` is written as given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import yaml

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.versioning.client import Commit, DiffEntry, LakeFSClient
from robolake.versioning.errors import NotFoundError, PreconditionFailedError
from robolake.versioning.umi_rules import (
    ObjectRejected,
    check_episode_json,
    check_gripper_json,
    check_pose_json,
    check_replay_buffer_file,
    check_video_file,
    classify,
)

__all__ = [
    "ACTION_PATH",
    "HANDLED_EVENTS",
    "HOOK_TOKEN_ENV",
    "REPLY_PREFIX",
    "ROUTE",
    "HookEvent",
    "HookInstallError",
    "ObjectRejected",
    "ValidationBudgetExceeded",
    "ValidationLimits",
    "ValidationReport",
    "action_yaml",
    "check_gripper_json",
    "check_pose_json",
    "classify",
    "explain_hook_failure",
    "hook_failure_reasons",
    "hook_reasons",
    "install_validation_hook",
    "stack_hook_url",
    "validate_event",
    "validation_hook_url",
]

ACTION_PATH = "_lakefs_actions/robolake-validate-umi.yaml"
HOOK_TOKEN_ENV = "LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN"  # lakeFS reads LAKEFSACTION_* into actions
ACTION_NAME = "robolake UMI validation"
HOOK_ID = "robolake_validate_umi"
ROUTE = "/lakefs/validate-umi"
# Every answer body starts with this, so the answer can be found again in lakeFS's hook run log.
REPLY_PREFIX = "robolake-validate-umi: "
HANDLED_EVENTS = ("pre-commit", "pre-merge")
CHECKED_DIFF_TYPES = ("added", "changed", "conflict")
_GO_DURATION_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


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
    client: LakeFSClient,
    event: HookEvent,
    limits: ValidationLimits = ValidationLimits(),
    *,
    work_dir: Path | None = None,
    deadline: float | None = None,
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
    client: LakeFSClient,
    repo: str,
    ref: str,
    entry: DiffEntry,
    kind: str,
    limits: ValidationLimits,
    tmp: Path,
) -> None:
    """Read one object at `ref` and check it by kind; ObjectRejected names its path and the problem."""
    path = entry.path
    size = entry.size_bytes if entry.size_bytes is not None else client.stat_object(repo, ref, path).size_bytes
    limit = limits.max_json_bytes if kind in ("pose", "gripper") else limits.max_object_bytes
    if size > limit:
        raise ObjectRejected(
            path,
            f"is {size} bytes, more than the {limit} bytes the validation hook reads for a "
            f"{kind.replace('_', ' ')} file; split it, or raise the hooks server's limit",
        )
    if size == 0:
        raise ObjectRejected(path, "is empty (0 bytes): an upload that never completed?")
    if kind in ("pose", "gripper"):
        check_episode_json(path, client.get_object(repo, ref, path), kind)
        return
    local = tmp / f"object{PurePosixPath(path).suffix}"
    try:
        client.download_object(repo, ref, path, local)
        if kind == "replay_buffer":
            check_replay_buffer_file(path, local)
        else:
            check_video_file(path, local)
    finally:
        local.unlink(missing_ok=True)


# ---- installing the action --------------------------------------------------------------------


def validation_hook_url(hooks_endpoint: str, token: str | None = None) -> str:
    """The webhook URL lakeFS calls: the route on `hooks_endpoint` (with `token` in the query, if
    given: for a hooks server whose lakeFS does not have the token in its environment)."""
    url = f"{hooks_endpoint.rstrip('/')}{ROUTE}"
    return url if token is None else f"{url}?token={quote(token, safe='')}"


def stack_hook_url(settings: Settings) -> str:
    """The URL of the stack's hooks server; lakeFS sends the token from its environment (HOOK_TOKEN_ENV)."""
    return validation_hook_url(settings.hooks_endpoint)


def action_yaml(branch: str, url: str, timeout: str = "2m") -> bytes:
    """The lakeFS action that runs the validation webhook on pre-commit and pre-merge of `branch`."""
    if not _GO_DURATION_RE.match(timeout):
        raise ConfigError(f"hook timeout {timeout!r} is not a Go duration lakeFS can parse; e.g. 90s, 2m, 1m30s")
    action = {
        "name": ACTION_NAME,
        "description": "Reject commits and merges that bring malformed UMI files (replay buffers, "
        "pose/gripper episode JSON, MP4s); served by `robolake hooks serve`.",
        "on": {event: {"branches": [branch]} for event in HANDLED_EVENTS},
        "hooks": [
            {
                "id": HOOK_ID,
                "type": "webhook",
                "description": "robolake UMI validation",
                "properties": _webhook_properties(url, timeout),
            }
        ],
    }
    return yaml.safe_dump(action, sort_keys=False, default_flow_style=False, width=1000).encode()


def _webhook_properties(url: str, timeout: str) -> dict[str, object]:
    if "token=" in url.partition("?")[2]:  # the caller's own URL, token and all
        return {"url": url, "timeout": timeout}
    bearer = "Bearer {{ ENV.%s }}" % HOOK_TOKEN_ENV  # noqa: UP031 (the braces are lakeFS's)
    return {"url": url, "timeout": timeout, "headers": {"Authorization": bearer}}


def install_validation_hook(
    client: LakeFSClient,
    repo: str,
    branch: str,
    url: str,
    *,
    timeout: str = "2m",
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
        return client.commit(
            repo,
            branch,
            "Install the robolake UMI validation hook",
            {"robolake_action": ACTION_PATH, "hook_url": _without_query(url)},
        )
    except PreconditionFailedError as exc:
        _reset_quietly(client, repo, branch, ACTION_PATH)
        said = "; ".join(hook_failure_reasons(client, repo, exc)) or _TOKEN_RE.sub(r"\1...", exc.server_message.strip())
        raise PreconditionFailedError(
            f"installing the UMI validation hook on {repo}/{branch} failed: lakeFS ran it for the install commit "
            f"and it did not pass ({said}); is `robolake hooks serve` running at {_without_query(url)} with the "
            "token in the URL? The branch was left as it was",
            status=exc.status,
            server_message=exc.server_message,
            call=exc.call,
        ) from exc
    except RobolakeError:
        _reset_quietly(client, repo, branch, ACTION_PATH)
        raise


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]


def _reset_quietly(client: LakeFSClient, repo: str, branch: str, path: str) -> None:
    # Undo the staged action file; if even that fails, the error being raised says more.
    with contextlib.suppress(RobolakeError):
        client.reset_object(repo, branch, path)


# ---- reading lakeFS's account of a failed hook --------------------------------------------------

_RUN_ID_RE = re.compile(r"run id '([^']+)'")
_TOKEN_RE = re.compile(r"(token=)[^&\s\"']+")
_REPLY_RE = re.compile(re.escape(REPLY_PREFIX) + r"(.*)")


def hook_failure_reasons(client: LakeFSClient, repo: str, exc: PreconditionFailedError) -> list[str]:
    """What the failed hooks of the run that refused the operation answered (their body's line)."""
    match = _RUN_ID_RE.search(exc.server_message)
    if match is None:
        return []
    run_id = match.group(1)
    reasons: list[str] = []
    try:
        for hook in list(client.hook_runs(repo, run_id)):
            if hook.status != "failed":
                continue
            output = client.hook_run_output(repo, run_id, hook.hook_run_id)
            said = _reply_in(output) or f"hook {hook.hook_id!r} failed: {_last_error(output)}"
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
        status=exc.status,
        server_message=exc.server_message,
        call=exc.call,
    )


@contextlib.contextmanager
def hook_reasons(client: LakeFSClient, repo: str) -> Iterator[None]:
    """Re-raise a hook refusal (HTTP 412) inside the block with the hooks' own reasons in its message."""
    try:
        yield
    except PreconditionFailedError as exc:
        raise explain_hook_failure(client, repo, exc) from exc
