"""One Settings object for the whole package: defaults < .env file < environment < CLI flags.

Environment variables are read when `Settings.load()` is called, never at import time, and
nowhere else in robolake. Every robolake setting is `ROBOLAKE_<FIELD>`; the MinIO root
credentials keep MinIO's own names (`MINIO_ROOT_USER`, `MINIO_ROOT_PASSWORD`) so one `.env`
serves the native stack and Compose.

Secrets follow the same precedence, with one more source below the rest: the stack's state
directory. `resolve_lakefs_keys()` and `resolve_hooks_token()` answer with the value a flag,
the environment or `.env` gave, else with the one the local stack generated (never inventing
one), else with a ConfigError that says where each could come from.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from robolake.errors import ConfigError
from robolake.state import Credentials, StateDir

DEFAULT_MINIO_ROOT_USER = "minioadmin"
DEFAULT_MINIO_ROOT_PASSWORD = "minioadmin123"
LAKEFS_KEY_VARIABLES = "ROBOLAKE_LAKEFS_ACCESS_KEY_ID and ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY"


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
            raise ConfigError(f"{path}:{lineno}: {raw!r} is not a KEY=VALUE line; fix or remove it")
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


def _parse_seconds(name: str, raw: str, lo: int, hi: int) -> float:
    return float(_parse_int(name, raw, lo, hi))


def _text(_name: str, raw: str) -> str:
    return raw


def _on_off(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name}={raw!r} is not on or off")


def _optional_path(_name: str, raw: str) -> Path | None:
    return Path(raw).expanduser() if raw else None


def _ranged(parse: Callable[[str, str, int, int], Any], lo: int, hi: int) -> Callable[[str, str], Any]:
    return lambda name, raw: parse(name, raw, lo, hi)


# Variable -> (Settings field, parser of the raw text). The state and cache directories are not
# here: their defaults come from XDG_STATE_HOME / XDG_CACHE_HOME (see `Settings.load`).
_VARIABLES: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "ROBOLAKE_HOST": ("host", _text),
    "ROBOLAKE_MINIO_PORTS": ("minio_ports", functools.partial(_parse_ports, count=3)),
    "ROBOLAKE_MINIO_CONSOLE_PORTS": ("minio_console_ports", functools.partial(_parse_ports, count=3)),
    "ROBOLAKE_MINIO_DRIVES_PER_NODE": ("drives_per_node", _ranged(_parse_int, 2, 4)),
    "ROBOLAKE_LAKEFS_PORT": ("lakefs_port", _parse_port),
    "ROBOLAKE_ACCELERATOR_PORT": ("accelerator_port", _parse_port),
    "ROBOLAKE_ACCELERATOR_ADMIN_PORT": ("accelerator_admin_port", _parse_port),
    "ROBOLAKE_ACCELERATOR_MEMORY_MB": ("accelerator_memory_mb", _ranged(_parse_int, 8, 1 << 20)),
    "ROBOLAKE_ACCELERATOR_DISK_MB": ("accelerator_disk_mb", _ranged(_parse_int, 0, 1 << 24)),
    "ROBOLAKE_ACCELERATOR_MAX_OBJECT_KB": ("accelerator_max_object_kb", _ranged(_parse_int, 1, 1 << 20)),
    "ROBOLAKE_HOOKS_PORT": ("hooks_port", _parse_port),
    "ROBOLAKE_PROMETHEUS": ("prometheus", _on_off),
    "ROBOLAKE_PROMETHEUS_PORT": ("prometheus_port", _parse_port),
    "ROBOLAKE_PROMETHEUS_RETENTION_DAYS": ("prometheus_retention_days", _ranged(_parse_int, 1, 3650)),
    "ROBOLAKE_PROMETHEUS_RETENTION_MB": ("prometheus_retention_mb", _ranged(_parse_int, 64, 1 << 24)),
    "ROBOLAKE_CONSOLE": ("console", _on_off),
    "ROBOLAKE_CONSOLE_PORT": ("console_port", _parse_port),
    "MINIO_ROOT_USER": ("minio_root_user", _text),
    "MINIO_ROOT_PASSWORD": ("minio_root_password", _text),
    "ROBOLAKE_START_TIMEOUT_S": ("start_timeout_s", _ranged(_parse_seconds, 5, 3600)),
    "ROBOLAKE_LAKEFS_ACCESS_KEY_ID": ("lakefs_access_key_id", _text),
    "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": ("lakefs_secret_access_key", _text),
    "ROBOLAKE_HOOKS_TOKEN": ("hooks_token", _text),
    "ROBOLAKE_WEBHOOK_TOKEN": ("webhook_token", _text),
    "ROBOLAKE_ADMIN_TOKEN": ("admin_token", _text),
    "ROBOLAKE_GO": ("go", _text),
    "ROBOLAKE_TOOLS_DIR": ("tools_dir", _optional_path),
}


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
    prometheus: bool = True  # `stack up` starts Prometheus, scraping every component
    prometheus_port: int = 9090
    prometheus_retention_days: int = 15  # whichever bound is reached first
    prometheus_retention_mb: int = 1024
    console: bool = True  # `stack up` starts the web console (robolake.console)
    console_port: int = 9030
    minio_root_user: str = DEFAULT_MINIO_ROOT_USER
    minio_root_password: str = dataclasses.field(default=DEFAULT_MINIO_ROOT_PASSWORD, repr=False)
    lakefs_repo: str = "robotics-data"
    start_timeout_s: float = 180.0
    # Given explicitly (flag, environment, .env); empty: use the local stack's, see resolve_*().
    lakefs_access_key_id: str = ""
    lakefs_secret_access_key: str = dataclasses.field(default="", repr=False)
    hooks_token: str = dataclasses.field(default="", repr=False)
    # The bearer token MinIO's bucket notifications carry to the accelerator ("": it asks for none).
    webhook_token: str = dataclasses.field(default="", repr=False)
    # The password (user robolake.httpauth.ADMIN_USER) of the accelerator's admin port ("": open).
    admin_token: str = dataclasses.field(default="", repr=False)
    go: str = ""  # a specific Go toolchain for the binary builds; "" finds one
    tools_dir: Path | None = None  # the checkout's tools/ folder; None: the one beside the source

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
        for name, (field, parse) in _VARIABLES.items():
            if name in merged:
                kwargs[field] = parse(name, merged[name])
        settings = cls(**kwargs)
        return settings.override(**overrides)

    def override(self, **flags: Any) -> Settings:
        """These settings with the flags that were given (None: not given) on top, validated."""
        settings = dataclasses.replace(self, **{k: v for k, v in flags.items() if v is not None})
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
        ports = [
            *self.minio_ports,
            *self.minio_console_ports,
            self.lakefs_port,
            self.accelerator_port,
            self.accelerator_admin_port,
            self.hooks_port,
            *([self.prometheus_port] if self.prometheus else []),
            *([self.console_port] if self.console else []),
        ]
        dupes = sorted({p for p in ports if ports.count(p) > 1})
        if dupes:
            raise ConfigError(
                f"port(s) {dupes} are assigned to more than one component; check "
                "ROBOLAKE_MINIO_PORTS, ROBOLAKE_MINIO_CONSOLE_PORTS, ROBOLAKE_LAKEFS_PORT, "
                "ROBOLAKE_ACCELERATOR_PORT, ROBOLAKE_ACCELERATOR_ADMIN_PORT, ROBOLAKE_HOOKS_PORT, "
                "ROBOLAKE_PROMETHEUS_PORT and ROBOLAKE_CONSOLE_PORT"
            )
        if " " in str(self.state_dir):
            raise ConfigError(
                f"ROBOLAKE_STATE_DIR={str(self.state_dir)!r} contains a space, which MinIO's "
                "endpoint URLs cannot carry; choose a path without spaces"
            )

    # ---- secrets: flag > ROBOLAKE_* environment > .env > the local stack's state directory -------

    def resolve_lakefs_keys(self) -> tuple[str, str]:
        """The lakeFS key pair (access key id, secret access key) to call lakeFS with."""
        key, secret = self.lakefs_access_key_id, self.lakefs_secret_access_key
        if bool(key) != bool(secret):
            raise ConfigError(
                f"only one of {LAKEFS_KEY_VARIABLES} is set; set both (the lakeFS key pair), or neither "
                "to use the local stack's keys"
            )
        if key:
            return key, secret
        creds = self._stack_credentials("lakeFS keys", lambda c: c.lakefs_access_key_id, f"set {LAKEFS_KEY_VARIABLES}")
        return creds.lakefs_access_key_id, creds.lakefs_secret_access_key

    def resolve_hooks_token(self, *, otherwise: str = "set ROBOLAKE_HOOKS_TOKEN") -> str:
        """The token lakeFS presents to the validation hooks server; `otherwise` ends the error's hint."""
        if self.hooks_token:
            return self.hooks_token
        return self._stack_credentials("hooks token", lambda c: c.hooks_token, otherwise).hooks_token

    def resolve_admin_token(self) -> str:
        """The password of the stack's admin endpoints (robolake.httpauth.admin_auth)."""
        if self.admin_token:
            return self.admin_token
        return self._stack_credentials("admin token", lambda c: c.admin_token, "set ROBOLAKE_ADMIN_TOKEN").admin_token

    def _stack_credentials(self, what: str, has: Callable[[Credentials], str], otherwise: str) -> Credentials:
        """The local stack's credentials, if they hold `what`; else a ConfigError naming every source."""
        state = StateDir(self.state_dir)
        creds = state.load_credentials()  # never created here: a client must not invent the stack's secrets
        if creds is None or not has(creds):
            held = "does not exist" if creds is None else f"holds no {what}"
            raise ConfigError(
                f"no {what}: {str(state.credentials_path)!r} {held}; start the stack (`robolake stack up`), "
                f"point ROBOLAKE_STATE_DIR at its state directory, or {otherwise}"
            )
        return creds

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
    def prometheus_endpoint(self) -> str:
        """Prometheus's UI and HTTP API (`/api/v1/query`)."""
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def console_endpoint(self) -> str:
        """The web console (`robolake console`)."""
        return f"http://{self.host}:{self.console_port}"

    @property
    def hooks_endpoint(self) -> str:
        """The validation hooks server lakeFS calls on pre-commit and pre-merge."""
        return f"http://{self.host}:{self.hooks_port}"
