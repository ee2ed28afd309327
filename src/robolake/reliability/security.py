"""Security checks of the running stack: where its secrets could leak, and who can read them.

    hook token in the action file   main's _lakefs_actions file must name the token, not hold it
    credential files                credentials.json, the users file, lakeFS's config: 0600
    secrets in process lists        every process's command line (what `ps` shows), for each secret
    secrets in logs                 every component's log under the state directory
    secrets in --json               `robolake stack status --json` and `robolake users list --json`
    auth on every endpoint          each port of the stack, asked without credentials: refused, but
                                    for health (open) and lakeFS's /metrics and /_pprof/ (lakeFS
                                    serves them without auth and has no setting for it; loopback only)

Each check is a case of the campaign's table (group "security"); one that finds a secret where it
must not be is mishandled, and says where (never the secret itself).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests

from robolake.accelerator.principals import users_path
from robolake.config import Settings
from robolake.errors import RobolakeError
from robolake.httpauth import admin_auth
from robolake.reliability.table import CaseOutcome
from robolake.stack.native import NativeStack
from robolake.stack.specs import settings_environment
from robolake.versioning.client import LakeFSClient
from robolake.versioning.hooks import ACTION_PATH, ROUTE

GROUP = "security"


def secrets_of(stack: NativeStack) -> dict[str, str]:
    """The stack's secrets by name (too short to search for: left out)."""
    creds = stack.state.credentials()
    found = {
        "MinIO root password": stack.settings.minio_root_password,
        "lakeFS secret key": creds.lakefs_secret_access_key,
        "lakeFS encryption secret": creds.lakefs_encrypt_secret,
        "hooks token": creds.hooks_token,
        "notification token": creds.webhook_token,
    }
    return {name: value for name, value in found.items() if len(value) >= 8}


def _case(name: str, problems: list[str]) -> CaseOutcome:
    return CaseOutcome(
        group=GROUP,
        case=name,
        accelerator="found" if problems else "ok",
        mishandled=bool(problems),
        why="; ".join(problems),
    )


def _leaks(text: str, secrets: dict[str, str], where: str) -> list[str]:
    return [f"the {name} is in {where}" for name, value in secrets.items() if value in text]


def check_action_file(stack: NativeStack, secrets: dict[str, str]) -> CaseOutcome:
    s = stack.settings
    try:
        body = LakeFSClient.from_settings(s).get_object(s.lakefs_repo, "main", ACTION_PATH)
    except RobolakeError as exc:
        return _case("hook token not in the action file", [f"cannot read {ACTION_PATH} on main: {exc}"])
    return _case("hook token not in the action file", _leaks(body.decode("utf-8", "replace"), secrets, ACTION_PATH))


def check_file_modes(stack: NativeStack) -> CaseOutcome:
    root = stack.state.root
    files = [stack.state.credentials_path, users_path(root), root / "lakefs" / "config.yaml"]
    problems = []
    for path in files:
        if not path.exists():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            problems.append(f"{path.name} is mode {mode:04o}, readable beyond its owner (want 0600)")
    return _case("credential files 0600", problems)


def check_process_lists(secrets: dict[str, str]) -> CaseOutcome:
    problems = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:  # the process ended meanwhile
            continue
        problems += _leaks(args, secrets, f"the command line of pid {cmdline.parent.name}")
    return _case("no secret in process lists (ps)", problems)


def check_logs(stack: NativeStack, secrets: dict[str, str]) -> CaseOutcome:
    problems = []
    for log in sorted((stack.state.root / "logs").glob("*.log")):
        problems += _leaks(log.read_text("utf-8", "replace"), secrets, f"logs/{log.name}")
    return _case("no secret in the components' logs", problems)


def run_robolake(
    stack: NativeStack, args: list[str], *, timeout_s: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`robolake ARGS` as a user of this stack runs it (its settings, no stdin); raises TimeoutExpired."""
    env = {**os.environ, **settings_environment(stack.settings), "ROBOLAKE_STATE_DIR": str(stack.state.root)}
    return subprocess.run(
        [str(Path(sys.executable).parent / "robolake"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def check_json_outputs(stack: NativeStack, secrets: dict[str, str]) -> CaseOutcome:
    problems = []
    for args in (["stack", "status", "--json"], ["users", "list", "--json"]):
        shown = " ".join(["robolake", *args])
        done = run_robolake(stack, args, timeout_s=120)
        if done.returncode != 0:
            problems.append(f"`{shown}` failed: {done.stderr.strip()[-300:]}")
        problems += _leaks(done.stdout + done.stderr, secrets, f"the output of `{shown}`")
    return _case("no secret in --json outputs", problems)


OPEN, REFUSED = (200,), (401, 403)


def endpoints(s: Settings) -> list[tuple[str, str, tuple[int, ...]]]:
    """(method, URL, the statuses an anonymous caller must get) for every port of the stack."""
    out = [
        ("GET", f"{s.accelerator_endpoint}/", REFUSED),  # S3 ListBuckets
        ("GET", f"{s.accelerator_admin_endpoint}/metrics", REFUSED),
        ("GET", f"{s.accelerator_admin_endpoint}/stats", REFUSED),
        ("POST", f"{s.accelerator_admin_endpoint}/minio/events", REFUSED),
        ("GET", f"{s.accelerator_admin_endpoint}/health", OPEN),
        ("GET", f"{s.lakefs_endpoint}/api/v1/repositories", REFUSED),
        ("GET", f"{s.lakefs_endpoint}/_health", (200, 204)),
        ("POST", f"{s.hooks_endpoint}{ROUTE}", REFUSED),
        ("GET", f"{s.hooks_endpoint}/metrics", REFUSED),
        ("GET", f"{s.hooks_endpoint}/health", OPEN),
    ]
    for endpoint, port in zip(s.minio_endpoints, s.minio_console_ports, strict=True):
        out += [
            ("GET", f"{endpoint}/", REFUSED),
            ("GET", f"{endpoint}/minio/v2/metrics/cluster", REFUSED),
            ("GET", f"{endpoint}/minio/v2/metrics/node", REFUSED),
            ("GET", f"{endpoint}/minio/health/live", OPEN),
            ("GET", f"http://{s.host}:{port}/api/v1/buckets", REFUSED),  # MinIO's console API
        ]
    if s.prometheus:
        out += [("GET", f"{s.prometheus_endpoint}/api/v1/query?query=up", REFUSED)]
        out += [("GET", f"{s.prometheus_endpoint}/-/ready", REFUSED)]
    if s.console:
        out += [("GET", f"{s.console_endpoint}/", REFUSED), ("GET", f"{s.console_endpoint}/health", OPEN)]
    return out


def check_endpoint_auth(stack: NativeStack) -> CaseOutcome:
    """Every endpoint refuses an anonymous caller but health; the admin ones let the admin user in."""
    s, problems = stack.settings, []
    for method, url, want in endpoints(s):
        try:
            got = requests.request(method, url, timeout=10).status_code
        except requests.RequestException as exc:
            problems.append(f"{method} {url} did not answer ({type(exc).__name__})")
            continue
        if got not in want:
            problems.append(f"{method} {url} answered {got} without credentials (want {' or '.join(map(str, want))})")
    # The refusals above must come from a check that lets the right caller in.
    admin = [f"{s.accelerator_admin_endpoint}/stats", f"{s.hooks_endpoint}/metrics"]
    admin += [f"{s.prometheus_endpoint}/-/ready"] if s.prometheus else []
    for url in admin:
        got = requests.get(url, timeout=10, auth=admin_auth(s)).status_code
        if got != 200:
            problems.append(f"GET {url} answered {got} to the stack's admin user (want 200)")
    return _case("auth on every endpoint but health", problems)


def security_checks(stack: NativeStack, say: Callable[[str], None]) -> list[CaseOutcome]:
    secrets = secrets_of(stack)
    out = [
        check_action_file(stack, secrets),
        check_file_modes(stack),
        check_process_lists(secrets),
        check_logs(stack, secrets),
        check_json_outputs(stack, secrets),
        check_endpoint_auth(stack),
    ]
    for case in out:
        if case.mishandled:
            say(f"security: {case.case}: {case.why}")
    return out
