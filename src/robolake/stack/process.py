"""Managed server processes: start detached, wait for health, stop without leaving orphans.

Each process runs in its own session (process group), so `stop` can signal the whole group.
A pid file records the pid and the binary it runs; a pid is only trusted while /proc shows that
same binary, so a recycled pid never gets signalled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robolake.errors import PortInUseError, ServerStartError, StateError

HealthProbe = Callable[[], bool]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProcessSpec:
    """How to run one server: its command, environment, ports and where it logs."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    ports: Mapping[int, str]  # port -> the setting that changes it (for error messages)
    host: str
    log_path: Path
    pid_path: Path
    cwd: Path | None = None
    # Run as this user when started as root (servers that refuse root, e.g. PostgreSQL).
    user: str | None = None


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (a bind with SO_REUSEADDR succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel reports free right now (for tests and ad-hoc servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_ports_free(specs: Sequence[ProcessSpec]) -> None:
    """Raise PortInUseError for the first port of `specs` already taken; starts nothing."""
    for spec in specs:
        for port, setting in spec.ports.items():
            if not port_is_free(spec.host, port):
                raise PortInUseError(port, spec.host, setting, spec.name)


def tail_lines(path: Path, count: int = 20) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in lines[-count:]) or "    (log is empty)"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class ManagedProcess:
    """One server process of the stack, identified across CLI invocations by its pid file."""

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def pid(self) -> int | None:
        """The pid of the running server, or None (a stale pid file is removed)."""
        try:
            record = json.loads(self.spec.pid_path.read_text(encoding="utf-8"))
            pid = int(record["pid"])
            binary = str(record["binary"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # A pid file cut short by a crash: without a trustworthy pid there is nothing to signal.
            self.spec.pid_path.unlink(missing_ok=True)
            return None
        cmd = _cmdline(pid)
        # Right after exec, /proc/<pid>/cmdline can read empty for a moment: a live process with
        # no command line yet is ours; only a different binary, a zombie or no process is stale.
        if Path(f"/proc/{pid}").exists() and (not cmd or cmd[0] == binary) and not _is_zombie(pid):
            return pid
        self.spec.pid_path.unlink(missing_ok=True)
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        """Start the server detached from this process; its output goes to the log file."""
        spec = self.spec
        try:
            for folder in (spec.log_path.parent, spec.pid_path.parent, spec.cwd):
                if folder is not None:
                    folder.mkdir(parents=True, exist_ok=True)
            with spec.log_path.open("ab") as log:
                log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {spec.name}\n".encode())
                log.flush()
                self._popen = subprocess.Popen(
                    list(spec.argv),
                    **as_user(spec.user),
                    env=dict(spec.env),
                    cwd=spec.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise ServerStartError(f"cannot start {spec.name} ({spec.argv[0]!r}): {exc}") from exc
        try:
            tmp = spec.pid_path.with_suffix(".partial")
            tmp.write_text(json.dumps({"pid": self._popen.pid, "binary": spec.argv[0]}), encoding="utf-8")
            os.replace(tmp, spec.pid_path)
        except OSError as exc:
            # Without its pid file no later command could find it: do not leave it running.
            _signal_group(self._popen.pid, signal.SIGKILL)
            self._reap()
            raise ServerStartError(f"cannot record the pid of {spec.name} in {str(spec.pid_path)!r}: {exc}") from exc

    def wait_healthy(self, probe: HealthProbe, deadline_s: float) -> None:
        """Poll `probe` until it answers True; raise with exit code and log tail on failure."""
        end = time.monotonic() + deadline_s
        while True:
            if self._popen is not None and self._popen.poll() is not None:
                self.spec.pid_path.unlink(missing_ok=True)
                raise ServerStartError(
                    f"{self.name} exited during start-up with exit code {self._popen.returncode} "
                    f"(ports {sorted(self.spec.ports)}); last lines of {self.spec.log_path}:\n"
                    f"{tail_lines(self.spec.log_path)}"
                )
            if probe():
                return
            if time.monotonic() > end:
                raise ServerStartError(
                    f"{self.name} did not become healthy within {deadline_s:.0f} s "
                    f"(ports {sorted(self.spec.ports)}); it is left running for inspection "
                    f"(`robolake stack logs {self.name}`, `robolake stack down`); last lines of "
                    f"{self.spec.log_path}:\n{tail_lines(self.spec.log_path)}"
                )
            time.sleep(0.25)

    def stop(self, grace_s: float = 15.0) -> bool:
        """SIGTERM the process group, then SIGKILL after `grace_s`; True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            _signal_group(pid, signal.SIGKILL)
            kill_end = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < kill_end:
                time.sleep(0.05)
            if _alive(pid):
                raise StateError(f"{self.name} (pid {pid}) survived SIGKILL; check it with `ps {pid}`")
        self._reap()
        self.spec.pid_path.unlink(missing_ok=True)
        return True

    def _reap(self) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=1)


def as_user(user: str | None) -> dict[str, Any]:
    """Popen's arguments that drop root to `user` (none when not root or no user is asked)."""
    if user is None or os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ServerStartError(f"user {user!r} does not exist on this machine (it runs the server)") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)
