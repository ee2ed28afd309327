"""The process manager with real (tiny) processes: start, health, early exit, stop, stale pids."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from robolake.errors import PortInUseError, ServerStartError, StateError
from robolake.stack.process import ManagedProcess, ProcessSpec, check_ports_free, free_port
from robolake.state import Credentials, StateDir


def spec(tmp_path: Path, script: str, ports: dict[int, str] | None = None) -> ProcessSpec:
    return ProcessSpec(
        name="toy",
        argv=[sys.executable, "-c", script],
        env={},
        ports=ports or {},
        host="127.0.0.1",
        log_path=tmp_path / "logs" / "toy.log",
        pid_path=tmp_path / "run" / "toy.pid",
    )


def test_server_that_dies_at_start_reports_exit_code_and_log(tmp_path: Path) -> None:
    proc = ManagedProcess(spec(tmp_path, "import sys; print('bad drive layout'); sys.exit(3)"))
    proc.start()
    with pytest.raises(ServerStartError) as info:
        proc.wait_healthy(lambda: False, deadline_s=20)
    assert "exit code 3" in str(info.value) and "bad drive layout" in str(info.value)
    assert not proc.spec.pid_path.exists()


def test_start_health_stop_and_no_orphan(tmp_path: Path) -> None:
    proc = ManagedProcess(spec(tmp_path, "import time; time.sleep(600)"))
    proc.start()
    proc.wait_healthy(lambda: True, deadline_s=5)
    pid = proc.pid()
    assert pid is not None
    assert ManagedProcess(proc.spec).is_running()  # found again from the pid file alone
    assert proc.stop(grace_s=5)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert proc.pid() is None and not proc.stop()


def test_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
    )
    proc = ManagedProcess(spec(tmp_path, script))
    proc.start()
    log = proc.spec.log_path
    proc.wait_healthy(lambda: "up" in log.read_text(), deadline_s=10)
    assert proc.stop(grace_s=0.5)
    assert proc.pid() is None


def test_stale_or_truncated_pid_file_is_not_trusted(tmp_path: Path) -> None:
    s = spec(tmp_path, "pass")
    s.pid_path.parent.mkdir(parents=True)
    s.pid_path.write_text(json.dumps({"pid": 1, "binary": "/not/our/binary"}))
    assert ManagedProcess(s).pid() is None and not s.pid_path.exists()
    s.pid_path.write_text('{"pid": 12')
    assert ManagedProcess(s).pid() is None


def test_port_in_use_names_port_and_setting(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(PortInUseError, match=rf"port {port} .*ROBOLAKE_LAKEFS_PORT"):
            check_ports_free([spec(tmp_path, "pass", {port: "ROBOLAKE_LAKEFS_PORT"})])


def test_credentials_are_private_and_stable(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.create()
    first = state.credentials()
    assert state.credentials_path.stat().st_mode & 0o777 == 0o600
    assert state.credentials() == first
    assert first.lakefs_secret_access_key not in repr(first)


def test_corrupt_credentials_explain_the_way_forward(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.create()
    state.credentials_path.write_text("{not json")
    with pytest.raises(StateError, match=r"corrupt.*down --volumes"):
        state.credentials()


def test_missing_credentials_with_existing_lakefs_data_is_refused(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.create()
    state.lakefs_kv.mkdir(parents=True)
    (state.lakefs_kv / "db").write_text("x")
    with pytest.raises(StateError, match=r"credentials\.json"):
        state.credentials()
    assert isinstance(Credentials.generate().lakefs_access_key_id, str)
