"""How each process of the native stack is run: command line, environment, ports, log and pid file.

Nothing here starts anything; `native.NativeStack` decides when (its component table), and the
Compose runtime's drift check (`compose.native_topology`) reads these specs to compare.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from robolake.accelerator.principals import users_path
from robolake.config import _VARIABLES, Settings
from robolake.errors import StateError
from robolake.stack import monitoring
from robolake.stack.process import ProcessSpec
from robolake.state import Credentials, StateDir
from robolake.versioning.hooks import HOOK_TOKEN_ENV

LAKEFS_ADMIN_USER = "admin"
WEBHOOK_ID = "ROBOLAKE"
# Buckets whose changes MinIO reports to the accelerator (lakeFS never rewrites an address).
NOTIFIED_BUCKETS = ("umi-raw", "umi-processed", "umi-experiments")
LAKEFS_STORAGE_BUCKET = "lakefs-storage"
# Belt and braces: lakeFS's call-home switches also as environment variables.
LAKEFS_QUIET_ENV = {
    "LAKEFS_STATS_ENABLED": "false",
    "LAKEFS_SECURITY_CHECK_LATEST_VERSION": "false",
    "LAKEFS_EMAIL_SUBSCRIPTION_ENABLED": "false",
}


_NOT_PASSED = frozenset({"ROBOLAKE_HOOKS_TOKEN", "ROBOLAKE_WEBHOOK_TOKEN"})  # secrets the console never needs


def settings_environment(s: Settings) -> dict[str, str]:
    """The ROBOLAKE_* (and MinIO root) variables that make a child process load these settings."""
    env: dict[str, str] = {"ROBOLAKE_CACHE_DIR": str(s.cache_dir)}
    for name, (field, _parse) in _VARIABLES.items():
        value = getattr(s, field)
        if name in _NOT_PASSED:
            continue
        if isinstance(value, bool):
            env[name] = "on" if value else "off"
        elif isinstance(value, tuple):
            env[name] = ",".join(str(v) for v in value)
        elif value is not None and value != "":
            env[name] = str(int(value) if isinstance(value, float) else value)
    return env


class NativeSpecs:
    """The process specs of the stack that `settings` describe, under one state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = StateDir(settings.state_dir)

    @property
    def parity(self) -> int:
        # One node holds `drives_per_node` of the 3*d drives. With parity d, data = 2d, and
        # MinIO's write quorum is `data` (parity != data), so the 2d drives of the two surviving
        # nodes still meet quorum for reads and writes.
        return self.settings.drives_per_node

    def minio_names(self) -> list[str]:
        return [f"minio-{i}" for i in range(1, len(self.settings.minio_ports) + 1)]

    def drive_urls(self) -> list[str]:
        s = self.settings
        return [
            f"http://{s.host}:{port}{self.state.drive(node, disk)}"
            for node, port in enumerate(s.minio_ports, start=1)
            for disk in range(1, s.drives_per_node + 1)
        ]

    def _spec(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], ports: Mapping[int, str], cwd: Path | None = None
    ) -> ProcessSpec:
        """A spec logging to logs/<name>.log with its pid in run/<name>.pid; PATH and HOME always set."""
        return ProcessSpec(
            name=name,
            argv=argv,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.state.root), **env},
            host=self.settings.host,
            ports=ports,
            log_path=self.state.log(name),
            pid_path=self.state.pid(name),
            cwd=cwd or self.state.root,
        )

    def minio_spec(self, index: int, binary: Path, creds: Credentials) -> ProcessSpec:
        s = self.settings
        port, console = s.minio_ports[index], s.minio_console_ports[index]
        env = {
            "MINIO_ROOT_USER": s.minio_root_user,
            "MINIO_ROOT_PASSWORD": s.minio_root_password,
            # Distributed mode refuses drives on the root disk unless this is set; a local
            # cluster on one machine is exactly that case.
            "MINIO_CI_CD": "1",
            "MINIO_STORAGE_CLASS_STANDARD": f"EC:{self.parity}",
            "MINIO_UPDATE": "off",
            # Inside a container (/.dockerenv present) MinIO waits forever for loopback endpoints
            # to "resolve to a valid IP"; this tells it which host:port of the list is itself.
            "_MINIO_SERVER_LOCAL": f"{s.host}:{port}",
            # Bucket notifications to the accelerator, which invalidates what changed behind
            # its back. The queue directory keeps events while the accelerator is down.
            f"MINIO_NOTIFY_WEBHOOK_ENABLE_{WEBHOOK_ID}": "on",
            f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{WEBHOOK_ID}": f"{s.accelerator_admin_endpoint}/minio/events",
            f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{WEBHOOK_ID}": creds.webhook_token,
            # MinIO insists that MINIO_* values are identical on all nodes and that the queue
            # path is absolute, yet three processes on one host must not share one queue: the
            # path resolves through each process's own working directory (its node directory).
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{WEBHOOK_ID}": "/proc/self/cwd/events",
        }
        argv = [str(binary), "server", "--anonymous", "--address", f"{s.host}:{port}"]
        argv += ["--console-address", f"{s.host}:{console}", *self.drive_urls()]
        ports = {port: "ROBOLAKE_MINIO_PORTS", console: "ROBOLAKE_MINIO_CONSOLE_PORTS"}
        return self._spec(f"minio-{index + 1}", argv, env, ports, cwd=self.state.node_dir(index + 1))

    @property
    def webhook_arn(self) -> str:
        """The ARN of the webhook target every node sends bucket notifications to (the accelerator)."""
        return f"arn:minio:sqs::{WEBHOOK_ID}:webhook"

    def accelerator_spec(self, creds: Credentials) -> ProcessSpec:
        s = self.settings
        cache = self.state.accelerator_cache
        env = {
            "MINIO_ROOT_USER": s.minio_root_user,
            "MINIO_ROOT_PASSWORD": s.minio_root_password,
            "ROBOLAKE_WEBHOOK_TOKEN": creds.webhook_token,
            "ROBOLAKE_ADMIN_TOKEN": creds.admin_token,
            "ROBOLAKE_ENV_FILE": "/dev/null",
            "ROBOLAKE_ACCELERATOR_MEMORY_MB": str(s.accelerator_memory_mb),
            "ROBOLAKE_ACCELERATOR_DISK_MB": str(s.accelerator_disk_mb),
            "ROBOLAKE_ACCELERATOR_MAX_OBJECT_KB": str(s.accelerator_max_object_kb),
        }
        argv = [sys.executable, "-m", "robolake.cli.accelerator", "serve", "--host", s.host]
        argv += ["--port", str(s.accelerator_port), "--admin-port", str(s.accelerator_admin_port)]
        argv += ["--cache-dir", str(cache), *(f"--upstream={e}" for e in s.minio_endpoints)]
        argv += ["--users-file", str(users_path(self.state.root)), "--notify-arn", self.webhook_arn]
        ports = {
            s.accelerator_port: "ROBOLAKE_ACCELERATOR_PORT",
            s.accelerator_admin_port: "ROBOLAKE_ACCELERATOR_ADMIN_PORT",
        }
        return self._spec("accelerator", argv, env, ports)

    def hooks_spec(self, creds: Credentials) -> ProcessSpec:
        """The UMI validation hook server lakeFS calls on pre-commit and pre-merge."""
        s = self.settings
        env = {
            "ROBOLAKE_ENV_FILE": "/dev/null",
            "ROBOLAKE_STATE_DIR": str(self.state.root),
            "ROBOLAKE_HOOKS_TOKEN": creds.hooks_token,
            "ROBOLAKE_ADMIN_TOKEN": creds.admin_token,
            "ROBOLAKE_LAKEFS_ACCESS_KEY_ID": creds.lakefs_access_key_id,
            "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": creds.lakefs_secret_access_key,
        }
        argv = [sys.executable, "-m", "robolake.cli.hooks", "serve", "--host", s.host, "--port", str(s.hooks_port)]
        argv += ["--lakefs-endpoint", s.lakefs_endpoint, "--work-dir", str(self.state.root / "hooks")]
        return self._spec("hooks", argv, env, {s.hooks_port: "ROBOLAKE_HOOKS_PORT"})

    def console_spec(self, creds: Credentials) -> ProcessSpec:
        """The web console (robolake.console), reading the stack these settings describe."""
        s = self.settings
        env = {**settings_environment(s), "ROBOLAKE_ENV_FILE": "/dev/null", "ROBOLAKE_STATE_DIR": str(self.state.root)}
        env |= {"ROBOLAKE_LAKEFS_ACCESS_KEY_ID": creds.lakefs_access_key_id}
        env |= {"ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": creds.lakefs_secret_access_key}
        argv = [sys.executable, "-m", "robolake.cli.console", "--host", s.host, "--port", str(s.console_port)]
        argv += ["--state-dir", str(self.state.root)]  # also how `down` finds it without its pid file
        return self._spec("console", argv, env, {s.console_port: "ROBOLAKE_CONSOLE_PORT"})

    def prometheus_spec(self, binary: Path, creds: Credentials) -> ProcessSpec:
        """Prometheus scraping the stack (robolake.stack.monitoring); writes its configuration first."""
        config = monitoring.write_config(self.settings, creds)
        argv = monitoring.prometheus_argv(self.settings, binary, config)
        return self._spec("prometheus", argv, {}, {self.settings.prometheus_port: "ROBOLAKE_PROMETHEUS_PORT"})

    def lakefs_config(self, creds: Credentials) -> dict[str, Any]:
        s = self.settings
        return lakefs_config(
            listen=f"{s.host}:{s.lakefs_port}",
            database={"type": "local", "local": {"path": str(self.state.lakefs_kv)}},
            encrypt_secret=creds.lakefs_encrypt_secret,
            cache_dir=self.state.lakefs_cache,
            # Through the accelerator: it fails over between MinIO nodes, so lakeFS keeps working
            # when any one node is down (lakeFS takes a single endpoint).
            s3_endpoint=s.accelerator_endpoint,
            s3_keys=(s.minio_root_user, s.minio_root_password),
        )

    def lakefs_spec(self, binary: Path, creds: Credentials) -> ProcessSpec:
        """lakeFS's spec; writes its config file (0600: it holds the encryption secret)."""
        config_path = write_private_yaml(self.state.root / "lakefs" / "config.yaml", self.lakefs_config(creds))
        # The validation hook's token, for the action file's `{{ ENV.… }}` header (never in the file).
        env = {**LAKEFS_QUIET_ENV, HOOK_TOKEN_ENV: creds.hooks_token}
        argv = [str(binary), "run", "--config", str(config_path)]
        return self._spec("lakefs", argv, env, {self.settings.lakefs_port: "ROBOLAKE_LAKEFS_PORT"})


def lakefs_config(
    *,
    listen: str,
    database: dict[str, Any],
    encrypt_secret: str,
    cache_dir: Path,
    s3_endpoint: str,
    s3_keys: tuple[str, str],
    tls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """lakeFS's configuration: its KV `database`, MinIO (or the accelerator) as the S3 blockstore."""
    doc: dict[str, Any] = {
        "listen_address": listen,
        "logging": {"level": "INFO", "format": "text"},
        "database": database,
        "auth": {"encrypt": {"secret_key": encrypt_secret}},
        "committed": {"local_cache": {"dir": str(cache_dir)}},
        "blockstore": {
            "type": "s3",
            "s3": {
                "endpoint": s3_endpoint,
                "force_path_style": True,
                "discover_bucket_region": False,
                "region": "us-east-1",
                "credentials": {"access_key_id": s3_keys[0], "secret_access_key": s3_keys[1]},
            },
        },
        "stats": {"enabled": False},
        "security": {"check_latest_version": False},
        "email_subscription": {"enabled": False},
    }
    if tls is not None:
        doc["tls"] = tls
    return doc


def write_private_yaml(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write `doc` as YAML readable by its owner only (0600: it holds secrets); returns `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(dict(doc), fh, sort_keys=False)
    except OSError as exc:
        raise StateError(f"cannot write {str(path)!r}: {exc.strerror}") from exc
    return path
