"""One Settings object for the whole package: defaults < .env file < environment < CLI flags.

Environment variables are read when `Settings.load()` is called, never at import time. Every
robolake setting is `ROBOLAKE_<FIELD>`; the MinIO root credentials keep MinIO's own names
(`MINIO_ROOT_USER`, `MINIO_ROOT_PASSWORD`) so one `.env` serves the native stack and Compose.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robolake.errors import ConfigError

DEFAULT_MINIO_ROOT_USER = "minioadmin"
DEFAULT_MINIO_ROOT_PASSWORD = "minioadmin123"


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    if env.get(var):
        return Path(env[var])
    return (Path(env["HOME"]) if env.get("HOME") else Path.home()) / fallback


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a dotenv file: KEY=VALUE lines, `#` comments, optional `export ` and quotes."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    except OSError as exc:
        raise ConfigError(f"cannot read the env file {str(path)!r}: {exc.strerror}") from exc
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ConfigError(
                f"{path}:{lineno}: {raw!r} is not a KEY=VALUE line; fix or remove it"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _parse_ports(name: str, raw: str, count: int) -> tuple[int, ...]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if len(parts) != count:
        raise ConfigError(
            f"{name}={raw!r}: expected {count} comma-separated ports, got {len(parts)}; "
            f"e.g. {name}=" + ",".join(str(9001 + i) for i in range(count))
        )
    return tuple(_parse_port(name, p) for p in parts)


def _parse_port(name: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}={raw!r} is outside the port range 1-65535")
    return port


def _parse_int(name: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r} must be between {lo} and {hi}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the stack and the clients need to know; immutable, build with `load()`."""

    state_dir: Path
    cache_dir: Path
    host: str = "127.0.0.1"
    minio_ports: tuple[int, ...] = (9001, 9002, 9003)
    minio_console_ports: tuple[int, ...] = (9091, 9092, 9093)
    drives_per_node: int = 2
    lakefs_port: int = 8000
    accelerator_port: int = 9000
    accelerator_admin_port: int = 9010
    accelerator_memory_mb: int = 256
    accelerator_disk_mb: int = 4096
    accelerator_max_object_kb: int = 1024
    hooks_port: int = 9020
    minio_root_user: str = DEFAULT_MINIO_ROOT_USER
    minio_root_password: str = dataclasses.field(default=DEFAULT_MINIO_ROOT_PASSWORD, repr=False)
    lakefs_repo: str = "robotics-data"
    start_timeout_s: float = 180.0

    @classmethod
    def load(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        env_file: Path | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings from defaults, the .env file, the environment and explicit overrides."""
        env = dict(os.environ if environ is None else environ)
        file_path = env_file or Path(env.get("ROBOLAKE_ENV_FILE", ".env"))
        merged = {**read_env_file(file_path), **env}
        kwargs: dict[str, Any] = {
            "state_dir": Path(merged["ROBOLAKE_STATE_DIR"]).expanduser()
            if merged.get("ROBOLAKE_STATE_DIR")
            else _xdg(merged, "XDG_STATE_HOME", ".local/state") / "robolake",
            "cache_dir": Path(merged["ROBOLAKE_CACHE_DIR"]).expanduser()
            if merged.get("ROBOLAKE_CACHE_DIR")
            else _xdg(merged, "XDG_CACHE_HOME", ".cache") / "robolake",
        }
        if "ROBOLAKE_HOST" in merged:
            kwargs["host"] = merged["ROBOLAKE_HOST"]
        if "ROBOLAKE_MINIO_PORTS" in merged:
            kwargs["minio_ports"] = _parse_ports(
                "ROBOLAKE_MINIO_PORTS", merged["ROBOLAKE_MINIO_PORTS"], 3
            )
        if "ROBOLAKE_MINIO_CONSOLE_PORTS" in merged:
            kwargs["minio_console_ports"] = _parse_ports(
                "ROBOLAKE_MINIO_CONSOLE_PORTS", merged["ROBOLAKE_MINIO_CONSOLE_PORTS"], 3
            )
        if "ROBOLAKE_MINIO_DRIVES_PER_NODE" in merged:
            kwargs["drives_per_node"] = _parse_int(
                "ROBOLAKE_MINIO_DRIVES_PER_NODE", merged["ROBOLAKE_MINIO_DRIVES_PER_NODE"], 2, 4
            )
        if "ROBOLAKE_LAKEFS_PORT" in merged:
            kwargs["lakefs_port"] = _parse_port("ROBOLAKE_LAKEFS_PORT", merged["ROBOLAKE_LAKEFS_PORT"])
        if "ROBOLAKE_ACCELERATOR_PORT" in merged:
            kwargs["accelerator_port"] = _parse_port("ROBOLAKE_ACCELERATOR_PORT", merged["ROBOLAKE_ACCELERATOR_PORT"])
        if "ROBOLAKE_ACCELERATOR_ADMIN_PORT" in merged:
            kwargs["accelerator_admin_port"] = _parse_port(
                "ROBOLAKE_ACCELERATOR_ADMIN_PORT", merged["ROBOLAKE_ACCELERATOR_ADMIN_PORT"]
            )
        if "ROBOLAKE_HOOKS_PORT" in merged:
            kwargs["hooks_port"] = _parse_port("ROBOLAKE_HOOKS_PORT", merged["ROBOLAKE_HOOKS_PORT"])
        for field, lo, hi in (("memory_mb", 8, 1 << 20), ("disk_mb", 0, 1 << 24), ("max_object_kb", 1, 1 << 20)):
            name = f"ROBOLAKE_ACCELERATOR_{field.upper()}"
            if name in merged:
                kwargs[f"accelerator_{field}"] = _parse_int(name, merged[name], lo, hi)
        if "MINIO_ROOT_USER" in merged:
            kwargs["minio_root_user"] = merged["MINIO_ROOT_USER"]
        if "MINIO_ROOT_PASSWORD" in merged:
            kwargs["minio_root_password"] = merged["MINIO_ROOT_PASSWORD"]
        if "ROBOLAKE_START_TIMEOUT_S" in merged:
            kwargs["start_timeout_s"] = float(
                _parse_int("ROBOLAKE_START_TIMEOUT_S", merged["ROBOLAKE_START_TIMEOUT_S"], 5, 3600)
            )
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**kwargs)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values MinIO or lakeFS would refuse later with a less helpful message."""
        # MinIO refuses root users shorter than 3 and passwords shorter than 8 characters.
        if len(self.minio_root_user) < 3:
            raise ConfigError(
                f"MINIO_ROOT_USER={self.minio_root_user!r} is too short: MinIO needs at least "
                "3 characters; set it in the environment or in .env"
            )
        if len(self.minio_root_password) < 8:
            raise ConfigError(
                "MINIO_ROOT_PASSWORD is too short: MinIO needs at least 8 characters; "
                "set it in the environment or in .env"
            )
        ports = [*self.minio_ports, *self.minio_console_ports, self.lakefs_port, self.accelerator_port,
                 self.accelerator_admin_port, self.hooks_port]
        dupes = sorted({p for p in ports if ports.count(p) > 1})
        if dupes:
            raise ConfigError(
                f"port(s) {dupes} are assigned to more than one component; check "
                "ROBOLAKE_MINIO_PORTS, ROBOLAKE_MINIO_CONSOLE_PORTS, ROBOLAKE_LAKEFS_PORT, "
                "ROBOLAKE_ACCELERATOR_PORT, ROBOLAKE_ACCELERATOR_ADMIN_PORT and ROBOLAKE_HOOKS_PORT"
            )
        if " " in str(self.state_dir):
            raise ConfigError(
                f"ROBOLAKE_STATE_DIR={str(self.state_dir)!r} contains a space, which MinIO's "
                "endpoint URLs cannot carry; choose a path without spaces"
            )

    @property
    def minio_endpoints(self) -> list[str]:
        """The S3 API URL of each MinIO node."""
        return [f"http://{self.host}:{port}" for port in self.minio_ports]

    @property
    def lakefs_endpoint(self) -> str:
        return f"http://{self.host}:{self.lakefs_port}"

    @property
    def accelerator_endpoint(self) -> str:
        """The S3 endpoint clients should use: the accelerator in front of the cluster."""
        return f"http://{self.host}:{self.accelerator_port}"

    @property
    def accelerator_admin_endpoint(self) -> str:
        return f"http://{self.host}:{self.accelerator_admin_port}"

    @property
    def hooks_endpoint(self) -> str:
        """The validation hooks server lakeFS calls on pre-commit and pre-merge."""
        return f"http://{self.host}:{self.hooks_port}"
