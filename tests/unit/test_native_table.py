"""The native stack's one component table: `up` walks it forward stage by stage, `down` backward,
collecting every error on the way down. Processes are fakes; nothing is started."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest

from robolake.config import Settings
from robolake.errors import ConfigError, StateError
from robolake.stack import native as native_module
from robolake.stack.native import NativeStack
from robolake.stack.process import ProcessSpec

ORDER = ["minio-1", "minio-2", "minio-3", "accelerator", "hooks", "lakefs", "prometheus", "console"]


@pytest.fixture
def stack(tmp_path: Path) -> NativeStack:
    settings = Settings.load(
        environ={}, env_file=Path("/nonexistent"), state_dir=tmp_path / "state", cache_dir=tmp_path / "cache"
    )
    return NativeStack(settings)


class FakeProcess:
    """Records what is done to it in a shared journal; `running` and `fail` say how it behaves."""

    journal: ClassVar[list[str]] = []
    running: ClassVar[set[str]] = set()
    fail: ClassVar[set[str]] = set()

    def __init__(self, spec: ProcessSpec) -> None:
        self.spec = spec
        self.name = spec.name

    def is_running(self) -> bool:
        return self.name in self.running

    def start(self) -> None:
        self.journal.append(f"start {self.name}")

    def wait_healthy(self, probe: Any, deadline_s: float) -> None:
        self.journal.append(f"wait {self.name}")

    def stop(self) -> bool:
        self.journal.append(f"stop {self.name}")
        if self.name in self.fail:
            raise StateError(f"{self.name} (pid 1) survived SIGKILL")
        return True


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, stack: NativeStack) -> type[FakeProcess]:
    FakeProcess.journal, FakeProcess.running, FakeProcess.fail = [], set(), set()
    monkeypatch.setattr(native_module, "ManagedProcess", FakeProcess)
    monkeypatch.setattr(native_module, "check_ports_free", lambda specs: FakeProcess.journal.append("ports"))
    monkeypatch.setattr(stack, "_process", lambda name: FakeProcess(_handle(stack, name)))
    monkeypatch.setattr(stack, "_orphans", list)
    binaries = {"minio": Path("/bin/minio"), "lakefs": Path("/bin/lakefs"), "prometheus": Path("/bin/prometheus")}
    monkeypatch.setattr(stack, "_binaries", lambda report, progress: binaries)
    for stage in ("_minio_ready", "_accelerator_ready", "_lakefs_ready"):
        monkeypatch.setattr(stack, stage, _recorder(stage))
    return FakeProcess


def _recorder(stage: str) -> Any:
    def ready(creds: Any, report: Any, started_now: list[FakeProcess]) -> None:
        FakeProcess.journal.append(f"{stage} {[p.name for p in started_now]}")

    return ready


def _handle(stack: NativeStack, name: str) -> ProcessSpec:
    log, pid = stack.state.log(name), stack.state.pid(name)
    return ProcessSpec(name=name, argv=["?"], env={}, ports={}, host="127.0.0.1", log_path=log, pid_path=pid)


def test_one_table_names_every_component_in_start_order(stack: NativeStack) -> None:
    assert stack.component_names() == ORDER
    assert [[c.name for c in stage.components] for stage in stack.stages()] == [ORDER[:3], *([n] for n in ORDER[3:])]


def test_up_walks_the_table_forward_stage_by_stage(stack: NativeStack, fakes: type[FakeProcess]) -> None:
    fakes.running = {"minio-1", "minio-3", "hooks"}
    assert stack.up() == ["minio-2", "accelerator", "lakefs", "prometheus", "console"]
    minio = ["start minio-2", "wait minio-1", "wait minio-2", "wait minio-3", "_minio_ready ['minio-2']"]
    accelerator = ["start accelerator", "wait accelerator", "_accelerator_ready ['accelerator']"]
    lakefs = ["start lakefs", "wait lakefs", "_lakefs_ready ['lakefs']"]
    prometheus = ["start prometheus", "wait prometheus"]
    console = ["start console", "wait console"]
    assert fakes.journal == ["ports", *minio, *accelerator, "wait hooks", *lakefs, *prometheus, *console]


def test_prometheus_is_left_out_when_switched_off(tmp_path: Path) -> None:
    off = Settings.load(environ={"ROBOLAKE_PROMETHEUS": "off"}, env_file=Path("/nonexistent"), state_dir=tmp_path)
    assert NativeStack(off).component_names() == [n for n in ORDER if n != "prometheus"]
    with pytest.raises(ConfigError, match=r"ROBOLAKE_PROMETHEUS='maybe' is not on or off"):
        Settings.load(environ={"ROBOLAKE_PROMETHEUS": "maybe"}, env_file=Path("/nonexistent"), state_dir=tmp_path)


def test_the_console_is_left_out_when_switched_off(tmp_path: Path) -> None:
    off = Settings.load(environ={"ROBOLAKE_CONSOLE": "off"}, env_file=Path("/nonexistent"), state_dir=tmp_path)
    assert NativeStack(off).component_names() == ORDER[:-1]
    with pytest.raises(ConfigError, match=r"port\(s\) \[9090\] are assigned to more than one"):
        Settings.load(environ={"ROBOLAKE_CONSOLE_PORT": "9090"}, env_file=Path("/nonexistent"), state_dir=tmp_path)


def test_the_console_process_loads_the_same_settings(tmp_path: Path) -> None:
    env = {"ROBOLAKE_CONSOLE_PORT": "9555", "ROBOLAKE_LAKEFS_PORT": "8111", "ROBOLAKE_MINIO_PORTS": "9401,9402,9403"}
    settings = Settings.load(environ=env, env_file=Path("/nonexistent"), state_dir=tmp_path / "s", cache_dir=tmp_path)
    NativeStack(settings).state.create()
    creds = NativeStack(settings).state.credentials()
    spec = NativeStack(settings).console_spec(creds)
    tail = ["--host", "127.0.0.1", "--port", "9555", "--state-dir", str(tmp_path / "s")]
    assert spec.argv[-6:] == tail and spec.ports == {9555: "ROBOLAKE_CONSOLE_PORT"}
    child = Settings.load(environ=dict(spec.env), env_file=Path("/nonexistent"))
    keys = {
        "lakefs_access_key_id": creds.lakefs_access_key_id,
        "lakefs_secret_access_key": creds.lakefs_secret_access_key,
    }
    assert child == dataclasses.replace(settings, **keys)


def test_down_walks_it_backward_and_collects_every_error(stack: NativeStack, fakes: type[FakeProcess]) -> None:
    assert stack.down() == ORDER[::-1]
    assert fakes.journal == [f"stop {name}" for name in reversed(ORDER)]
    fakes.journal.clear()
    fakes.fail = {"hooks", "minio-2"}
    stack.state.create()
    with pytest.raises(StateError) as info:
        stack.down(volumes=True)
    assert fakes.journal == [f"stop {name}" for name in reversed(ORDER)]  # one failure skips nothing after it
    message = str(info.value)
    assert "2 problem(s)" in message and "hooks: hooks (pid 1)" in message and "minio-2: minio-2 (pid 1)" in message
    assert stack.state.root.exists()  # after an error nothing is wiped
