"""The stack's state directory: drives, lakeFS KV, logs, pid files and credentials in one place.

    <state_dir>/
      credentials.json         0600: MinIO root user, lakeFS admin keys, lakeFS encryption secret
      minio/node<i>/disk<j>/   MinIO drives
      lakefs/kv/  lakefs/cache/
      logs/<component>.log     run/<component>.pid

`StateDir.credentials()` creates the secrets on the stack's first `up`; clients only ever read
them, through `Settings.resolve_lakefs_keys()` / `resolve_hooks_token()` (robolake.config).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import string
from pathlib import Path

from robolake.errors import StateError

_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Secrets the stack generates once and reuses on every `up`."""

    lakefs_access_key_id: str
    lakefs_secret_access_key: str = dataclasses.field(repr=False)
    lakefs_encrypt_secret: str = dataclasses.field(repr=False)
    # Bearer token MinIO's bucket-notification webhook presents to the accelerator.
    webhook_token: str = dataclasses.field(default="", repr=False)
    # Token lakeFS presents (as a Bearer header, from its environment) to the UMI validation hook.
    hooks_token: str = dataclasses.field(default="", repr=False)
    # Token robolake's own admin endpoints ask for: the accelerator's and the hooks server's
    # /metrics and /stats (Bearer), Prometheus (basic auth, user ADMIN_USER); health stays open.
    admin_token: str = dataclasses.field(default="", repr=False)

    @classmethod
    def generate(cls) -> Credentials:
        # lakeFS keys conventionally look like AWS ones: "AKIAJ" + 15 characters, 40-char secret.
        return cls(
            lakefs_access_key_id="AKIAJ" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(15)),
            lakefs_secret_access_key=secrets.token_urlsafe(30)[:40],
            lakefs_encrypt_secret=secrets.token_hex(32),
            webhook_token=secrets.token_urlsafe(24),
            hooks_token=secrets.token_urlsafe(24),
            admin_token=secrets.token_urlsafe(24),
        )


class StateDir:
    """Paths inside one stack's state directory, and its credentials file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def credentials_path(self) -> Path:
        return self.root / "credentials.json"

    def drive(self, node: int, disk: int) -> Path:
        return self.root / "minio" / f"node{node}" / f"disk{disk}"

    @property
    def accelerator_cache(self) -> Path:
        return self.root / "accelerator" / "cache"

    def node_dir(self, node: int) -> Path:
        """A MinIO node's directory: its drives, and its notification queue in `events/`."""
        return self.root / "minio" / f"node{node}"

    @property
    def lakefs_kv(self) -> Path:
        return self.root / "lakefs" / "kv"

    @property
    def lakefs_cache(self) -> Path:
        return self.root / "lakefs" / "cache"

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    def pid(self, component: str) -> Path:
        return self.root / "run" / f"{component}.pid"

    def exists(self) -> bool:
        return self.credentials_path.exists()

    def create(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o700)
            for sub in ("minio", "lakefs", "logs", "run"):
                (self.root / sub).mkdir(exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory {str(self.root)!r}: {exc.strerror}; choose a "
                "writable location with ROBOLAKE_STATE_DIR"
            ) from exc

    def load_credentials(self) -> Credentials | None:
        path = self.credentials_path
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return Credentials(**raw)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise StateError(
                f"the credentials file {str(path)!r} is corrupt ({exc}); lakeFS's data can only be "
                "opened with the secrets it held. Restore it from a backup, or start over with "
                "`robolake stack down --volumes` (this deletes the stack's data)"
            ) from exc

    def save_credentials(self, creds: Credentials) -> None:
        tmp = self.credentials_path.with_suffix(".partial")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(dataclasses.asdict(creds), fh, indent=2)
            os.replace(tmp, self.credentials_path)
        except OSError as exc:
            raise StateError(
                f"cannot write the credentials file {str(self.credentials_path)!r}: {exc.strerror}; the state "
                "directory must be writable (choose another with ROBOLAKE_STATE_DIR)"
            ) from exc

    def credentials(self) -> Credentials:
        """Load the stack's credentials, creating them on first use."""
        creds = self.load_credentials()
        if creds is None:
            if self.lakefs_kv.exists() and any(self.lakefs_kv.iterdir()):
                raise StateError(
                    f"{str(self.credentials_path)!r} is missing but lakeFS data exists in "
                    f"{str(self.lakefs_kv)!r}; without the original secrets lakeFS cannot read it. "
                    "Restore credentials.json, or start over with `robolake stack down --volumes`"
                )
            creds = Credentials.generate()
            self.save_credentials(creds)
        elif not (creds.webhook_token and creds.hooks_token and creds.admin_token):
            # A state directory from before the accelerator, the hooks or the admin token existed.
            creds = dataclasses.replace(
                creds,
                webhook_token=creds.webhook_token or secrets.token_urlsafe(24),
                hooks_token=creds.hooks_token or secrets.token_urlsafe(24),
                admin_token=creds.admin_token or secrets.token_urlsafe(24),
            )
            self.save_credentials(creds)
        return creds

    def wipe(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
