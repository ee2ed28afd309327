"""lakeFS's HTTP answers mapped to robolake exceptions: one table, one boundary.

    RobolakeError                      (robolake.errors)
    ├── AuthError                      401: lakeFS rejected the access key
    ├── ServiceUnavailableError        lakeFS does not answer (refused, timed out) or says 503
    ├── IntegrityError                 (robolake.errors) bytes written or read do not match their checksum
    └── LakeFSError                    lakeFS refused a request; `.status`, `.server_message`
        ├── BadRequestError            400: bad name, dirty branch, nothing to commit (ValueError)
        ├── ForbiddenError             403: protected branch, read-only repository (PermissionError)
        ├── NotFoundError              404: names the missing repository, branch, ref or path
        ├── ConflictError              409: exists already, or a merge conflict with `.paths`
        ├── PreconditionFailedError    412: a pre-commit / pre-merge hook refused the operation
        └── ImportFailedError          a zero-copy import ended with an error or timed out

Every request to lakeFS (the client's, and the stack's setup calls in stack/bootstrap.py) runs
inside `translate_errors`, which turns `requests`'s exceptions into these with `raise ... from
exc` through the one table STATUS_TO_ERROR, so a CLI prints one line and no traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Literal, get_args

import requests

from robolake.errors import AuthError, RobolakeError, ServiceUnavailableError

# Every kind of name a Call can carry; each has a hint in NOT_FOUND_HINTS (a unit test checks it).
Kind = Literal["repository", "branch", "tag", "ref", "path"]
REF_KINDS: tuple[Kind, ...] = tuple(k for k in get_args(Kind) if k not in ("repository", "path"))


@dataclasses.dataclass(frozen=True)
class Call:
    """What a request was meant to do, so that an error can name the values involved."""

    action: str  # an infinitive clause: "merge 'dev' into 'main'"
    repo: str = ""
    refs: tuple[tuple[Kind, str], ...] = ()  # (kind, name): ("branch", "dev"), ("ref", "v1")
    path: str = ""
    hints: tuple[tuple[int, str], ...] = ()  # (status, what to do), replacing the table's hint


class LakeFSError(RobolakeError):
    """lakeFS answered, and refused the request."""

    def __init__(self, message: str, *, status: int = 0, server_message: str = "", call: Call | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.server_message = server_message
        self.call = call


class BadRequestError(LakeFSError, ValueError):
    """400: lakeFS rejected a value, or the branch is not in a state that allows the operation."""


class ForbiddenError(LakeFSError, PermissionError):
    """403: the key is valid but may not do this (protected branch, read-only repository)."""


class NotFoundError(LakeFSError, LookupError):
    """404: a repository, branch, ref or object path does not exist; `.kind` and `.name` say which."""

    kind: str = ""
    name: str = ""


class ConflictError(LakeFSError):
    """409: the name exists already, or a merge found paths changed on both sides (`.paths`)."""

    paths: tuple[str, ...] = ()


class PreconditionFailedError(LakeFSError):
    """412: a pre-commit or pre-merge hook failed, or an object exists that must not."""


class ImportFailedError(LakeFSError):
    """A zero-copy import reported an error, or did not finish in time."""


# The one table: status -> (exception, what the user should do about it).
STATUS_TO_ERROR: dict[int, tuple[type[RobolakeError], str]] = {
    # lakeFS's own reason (bad name, no changes, dirty branch) comes first in the message.
    400: (BadRequestError, "fix what lakeFS's reason names, then try again"),
    401: (
        AuthError,
        "use the stack's keys (`robolake stack env`) or set ROBOLAKE_LAKEFS_ACCESS_KEY_ID "
        "and ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY",
    ),
    403: (ForbiddenError, "the branch may be protected or the repository read-only; ask its admin"),
    404: (NotFoundError, "check the name"),
    409: (ConflictError, "if the name exists already, choose another"),
    412: (PreconditionFailedError, "a lakeFS hook refused it; see `robolake stack logs lakefs`"),
    503: (ServiceUnavailableError, "lakeFS is overloaded or starting; try again shortly"),
}

NOT_FOUND_HINTS: dict[Kind, str] = {
    "repository": "check --repo (the default is the stack's repository, robotics-data)",
    "branch": "list branches with `robolake version branch list`",
    "tag": "list tags with `robolake version tag list`",
    "ref": "a ref is a branch, a tag or a commit id; see `robolake version log` and `robolake version tag list`",
    "path": "nothing is stored at that path at this ref",
}

# Given the call that got a 404, say which of its parts is missing: (kind, name), or None.
Locator = Callable[[Call], "tuple[Kind, str] | None"]


def server_message(response: requests.Response) -> str:
    """lakeFS's own explanation: the `message` of its JSON error body, else the raw text."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return response.text.strip()[:300]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text.strip()[:300]


def error_for_response(
    response: requests.Response,
    endpoint: str,
    call: Call,
    access_key_id: str = "",
    locate: Locator | None = None,
) -> RobolakeError:
    """The robolake exception for a failed lakeFS response (not raised: the caller raises it)."""
    status = response.status_code
    said = server_message(response)
    cls, hint = STATUS_TO_ERROR.get(status, (LakeFSError, "see `robolake stack logs lakefs`"))
    hint = dict(call.hints).get(status, hint)
    if cls is AuthError:
        return AuthError(
            f"lakeFS at {endpoint} rejected access key {access_key_id!r} (HTTP 401) when trying to "
            f"{call.action}; {hint}"
        )
    if cls is ServiceUnavailableError:
        return ServiceUnavailableError(f"lakeFS at {endpoint} could not {call.action} (HTTP 503: {said}); {hint}")
    if cls is NotFoundError:
        return not_found(call, said, locate(call) if locate else None)
    lakefs_cls = cls if issubclass(cls, LakeFSError) else LakeFSError
    message = f"cannot {call.action}: {said} (HTTP {status})" + (f"; {hint}" if hint else "")
    return lakefs_cls(message, status=status, server_message=said, call=call)


def not_found(call: Call, said: str, missing: tuple[Kind, str] | None) -> NotFoundError:
    if missing is None:
        named = [f"repository {call.repo!r}"] if call.repo else []
        named += [f"{kind} {name!r}" for kind, name in call.refs]
        named += [f"path {call.path!r}"] if call.path else []
        message = f"cannot {call.action}: lakeFS says {said!r}; one of {', '.join(named)} does not exist"
    else:
        kind, name = missing
        where = "" if kind == "repository" else f" in repository {call.repo!r}"
        at = f" at {call.refs[0][0]} {call.refs[0][1]!r}" if kind == "path" and call.refs else ""
        message = f"cannot {call.action}: {kind} {name!r} does not exist{where}{at}; {NOT_FOUND_HINTS[kind]}"
    err = NotFoundError(message, status=404, server_message=said, call=call)
    if missing is not None:
        err.kind, err.name = missing
    return err


def conflict(call: Call, paths: list[str]) -> ConflictError:
    """A merge conflict that names the paths changed on both sides."""
    if paths:
        shown = ", ".join(repr(p) for p in paths[:5])
        more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
        what = f"{len(paths)} path(s) changed on both sides: {shown}{more}"
    else:
        what = "lakeFS reports a conflict, but no conflicting path could be listed"
    err = ConflictError(
        f"cannot {call.action}: {what}; change them on one side only, or merge with --strategy source-wins / dest-wins",
        status=409,
        server_message="conflict found",
        call=call,
    )
    err.paths = tuple(paths)
    return err


@contextlib.contextmanager
def translate_errors(
    endpoint: str,
    call: Call,
    access_key_id: str = "",
    locate: Locator | None = None,
) -> Iterator[None]:
    """Turn `requests` exceptions raised inside the block into robolake exceptions."""
    try:
        yield
    except requests.HTTPError as exc:
        if exc.response is None:
            raise LakeFSError(f"cannot {call.action}: {exc}", call=call) from exc
        raise error_for_response(exc.response, endpoint, call, access_key_id, locate) from exc
    except requests.ReadTimeout as exc:
        raise ServiceUnavailableError(
            f"lakeFS at {endpoint} accepted the request to {call.action} but did not answer in time "
            f"({exc}); it may still be working: check with `robolake version log`, then retry"
        ) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ServiceUnavailableError(
            f"lakeFS at {endpoint} does not answer; is the stack running? (`robolake stack status`)"
        ) from exc
    except requests.RequestException as exc:
        message = f"cannot {call.action}: the request to lakeFS at {endpoint} failed: {exc}"
        raise LakeFSError(message, call=call) from exc
