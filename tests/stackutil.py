"""Helpers shared by the integration and e2e tests: isolated settings on free ports."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from robolake.config import Settings
from robolake.stack.process import free_port
from robolake.stack.specs import settings_environment


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def isolated_env(state_dir: Path) -> dict[str, str]:
    """ROBOLAKE_* variables for a stack in `state_dir` on free ports (never the user's)."""
    p = free_ports(12)
    return {
        "ROBOLAKE_CONSOLE_PORT": str(p[11]),
        "ROBOLAKE_PROMETHEUS_PORT": str(p[10]),
        "ROBOLAKE_ACCELERATOR_PORT": str(p[7]),
        "ROBOLAKE_ACCELERATOR_ADMIN_PORT": str(p[8]),
        "ROBOLAKE_HOOKS_PORT": str(p[9]),
        "ROBOLAKE_STATE_DIR": str(state_dir),
        "ROBOLAKE_MINIO_PORTS": ",".join(map(str, p[0:3])),
        "ROBOLAKE_MINIO_CONSOLE_PORTS": ",".join(map(str, p[3:6])),
        "ROBOLAKE_LAKEFS_PORT": str(p[6]),
        "MINIO_ROOT_USER": "robolake-test",
        "MINIO_ROOT_PASSWORD": "robolake-test-secret",
    }


def isolated_settings(state_dir: Path) -> Settings:
    env = {**isolated_env(state_dir)}
    if "ROBOLAKE_CACHE_DIR" in os.environ:
        env["ROBOLAKE_CACHE_DIR"] = os.environ["ROBOLAKE_CACHE_DIR"]
    return Settings.load(environ=env, env_file=Path("/nonexistent/.env"))


def stack_env(settings: Settings) -> dict[str, str]:
    """Just the variables that make a robolake process (CLI, script) address `settings`' stack."""
    return {
        **settings_environment(settings),
        "ROBOLAKE_STATE_DIR": str(settings.state_dir),
        "ROBOLAKE_ENV_FILE": "/nonexistent/.env",
    }


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes the CLI (in a subprocess) address `settings`' stack."""
    return {**os.environ, **stack_env(settings)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def processes_using(path: Path) -> list[int]:
    """Pids whose command line mentions `path` (to prove no server outlives `down`)."""
    marker = str(path)
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if marker in cmd and stat.rsplit(")", 1)[-1].split()[0] != "Z":
                pids.append(int(entry.name))
    return pids
