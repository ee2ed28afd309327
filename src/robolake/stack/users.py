"""A team's own credentials: MinIO users with robolake's policies, and the accelerator told of them.

    add      the policy written (principals.Policy.document), the user created with a new secret
             or kept, the policy set on it (replacing any other), then the users file written
             (the accelerator re-reads it within a poll and drops what it knew of that user)
    remove   the user left out of the users file first (its next request through the accelerator
             is MinIO's to judge), then removed from MinIO
    list     the users file, and whether MinIO still has each user

Secrets go to two 0600 files in the state directory only: the users file the accelerator reads,
and `users/<name>.env` for the person the user is for. They are never printed, logged or put
in `--json` output, nor passed on a command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import urllib3
from minio import MinioAdmin
from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException

from robolake.accelerator.access import stamp_of
from robolake.accelerator.admin import read_stats
from robolake.accelerator.principals import Policy, User, load_users, save_users, users_path
from robolake.config import Settings
from robolake.errors import AuthError, ConfigError, ServiceUnavailableError, StateError

APPLY_TIMEOUT_S = 5.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,19}")  # MinIO access keys: 3 to 20 characters


@dataclasses.dataclass(frozen=True)
class UserReport:
    """What `users add/list` report of one user (no secret)."""

    name: str
    policy: str
    minio_policy: str
    credentials_file: str
    in_minio: bool | None = None  # None: not asked


def check_name(name: str, settings: Settings) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"user name {name!r} is not usable as a MinIO access key; use 3 to 20 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit (e.g. alice)"
        )
    if name == settings.minio_root_user:
        raise ConfigError(f"user name {name!r} is MinIO's root user; choose another name")
    return name


def credentials_file(settings: Settings, name: str) -> Path:
    return settings.state_dir / "users" / f"{name}.env"


def _admin(settings: Settings) -> MinioAdmin:
    endpoint = settings.minio_endpoints[0]
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3, read=30), retries=urllib3.Retry(total=2, backoff_factor=0.2)
    )
    return MinioAdmin(
        endpoint=endpoint.split("://", 1)[-1].rstrip("/"),
        credentials=StaticProvider(settings.minio_root_user, settings.minio_root_password),
        secure=endpoint.startswith("https://"),
        http_client=http,
    )


@contextlib.contextmanager
def _admin_errors(settings: Settings, doing: str) -> Iterator[None]:
    endpoint = settings.minio_endpoints[0]
    try:
        yield
    except MinioAdminException as exc:
        code = str(getattr(exc, "_code", ""))
        if code in ("401", "403"):
            raise AuthError(
                f"MinIO at {endpoint} refused the root credentials while {doing} (HTTP {code}); use the "
                "MINIO_ROOT_USER / MINIO_ROOT_PASSWORD the cluster was started with"
            ) from exc
        raise ServiceUnavailableError(f"MinIO at {endpoint} failed while {doing}: HTTP {code}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ServiceUnavailableError(
            f"MinIO at {endpoint} does not answer ({type(exc).__name__}) while {doing}; is the stack running? "
            "(`robolake stack status`)"
        ) from exc


def add_user(settings: Settings, name: str, policy_spec: str) -> UserReport:
    """Create `name` (or give it a new policy, keeping its secret); the accelerator learns of it."""
    check_name(name, settings)
    policy = Policy.parse(policy_spec)
    path = users_path(settings.state_dir)
    users = load_users(path)
    known = users.get(name)
    secret = known.secret if known is not None else secrets.token_urlsafe(30)[:40]
    if known is not None:
        # A new policy: the accelerator forgets the user before MinIO changes it, so that no
        # allow of the old policy answers a read after this command returns.
        _save_applied(settings, path, {n: u for n, u in users.items() if n != name})
    admin = _admin(settings)
    with _admin_errors(settings, f"adding user {name!r}"):
        admin.policy_add(policy.minio_name, policy=policy.document())
        admin.user_add(name, secret)
        admin.policy_set(policy.minio_name, user=name)
    users[name] = User(name, secret, policy.spec, policy.minio_name)
    _save_applied(settings, path, users)
    env_file = credentials_file(settings, name)
    _write_private(
        env_file,
        f"AWS_ACCESS_KEY_ID={name}\nAWS_SECRET_ACCESS_KEY={secret}\n"
        f"AWS_ENDPOINT_URL={settings.accelerator_endpoint}\nAWS_REGION=us-east-1\n",
    )
    return UserReport(name, policy.spec, policy.minio_name, str(env_file), True)


def remove_user(settings: Settings, name: str) -> None:
    """Drop `name` from the accelerator's users, then from MinIO."""
    path = users_path(settings.state_dir)
    users = load_users(path)
    if name not in users:
        raise ConfigError(f"no user {name!r} was added with `robolake users add`; see `robolake users list`")
    del users[name]
    _save_applied(settings, path, users)  # first: the accelerator stops answering it from its cache
    with _admin_errors(settings, f"removing user {name!r}"):
        try:
            _admin(settings).user_remove(name)
        except MinioAdminException as exc:
            if "XMinioAdminNoSuchUser" not in str(getattr(exc, "_body", "")):
                raise
    with contextlib.suppress(FileNotFoundError):
        credentials_file(settings, name).unlink()


def list_users(settings: Settings, *, ask_minio: bool = True) -> list[UserReport]:
    users = load_users(users_path(settings.state_dir))
    present: set[str] | None = None
    if ask_minio and users:
        with _admin_errors(settings, "listing users"):
            present = set(json.loads(_admin(settings).user_list() or "{}"))
    return [
        UserReport(
            u.name,
            u.policy,
            u.minio_policy,
            str(credentials_file(settings, u.name)),
            None if present is None else u.name in present,
        )
        for u in sorted(users.values(), key=lambda u: u.name)
    ]


def _save_applied(settings: Settings, path: Path, users: dict[str, User]) -> None:
    """Write the users file and wait until the accelerator has loaded it (its /stats says so).

    An accelerator that does not answer is not running: it reads the file when it starts.
    """
    save_users(path, users)
    stamp = stamp_of(path)
    deadline = time.monotonic() + APPLY_TIMEOUT_S
    while True:
        try:
            loaded = (read_stats(settings, timeout_s=2).get("users") or {}).get("file_stamp")
        except ServiceUnavailableError:
            return
        if loaded == stamp or loaded is None:  # None: an accelerator without a users file
            return
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(
                f"the accelerator at {settings.accelerator_endpoint} has not loaded the users file within "
                f"{APPLY_TIMEOUT_S:.0f} s; check `robolake stack logs accelerator`, then run the command again"
            )
        time.sleep(0.05)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise StateError(f"cannot write {str(path)!r}: {exc.strerror}") from exc
