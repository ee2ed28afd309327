"""Settings: precedence, parsing and the messages for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from robolake.config import Settings, read_env_file
from robolake.errors import ConfigError

NO_FILE = Path("/nonexistent/.env")


def load(env: dict[str, str], env_file: Path = NO_FILE) -> Settings:
    return Settings.load(environ={"HOME": "/home/u", **env}, env_file=env_file)


def test_defaults_match_the_documented_topology() -> None:
    s = load({})
    assert s.minio_ports == (9001, 9002, 9003)
    assert s.minio_console_ports == (9091, 9092, 9093)
    assert s.lakefs_port == 8000
    assert (s.minio_root_user, s.minio_root_password) == ("minioadmin", "minioadmin123")
    assert s.state_dir == Path("/home/u/.local/state/robolake")
    assert s.cache_dir == Path("/home/u/.cache/robolake")
    assert s.minio_endpoints == ["http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"]


def test_env_file_then_environment_then_overrides(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# creds\nexport MINIO_ROOT_USER=fileuser\nMINIO_ROOT_PASSWORD='file-password'\n"
                        "ROBOLAKE_LAKEFS_PORT=8100\n")
    s = load({"ROBOLAKE_LAKEFS_PORT": "8200"}, env_file)
    assert (s.minio_root_user, s.minio_root_password, s.lakefs_port) == ("fileuser", "file-password", 8200)
    s = Settings.load(environ={"ROBOLAKE_LAKEFS_PORT": "8200"}, env_file=env_file, lakefs_port=8300)
    assert s.lakefs_port == 8300


def test_password_is_not_in_repr() -> None:
    assert "minioadmin123" not in repr(load({}))


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ROBOLAKE_MINIO_PORTS": "9001,9002"}, "expected 3 comma-separated ports"),
        ({"ROBOLAKE_MINIO_PORTS": "9001,x,9003"}, "'x' is not a port number"),
        ({"ROBOLAKE_LAKEFS_PORT": "70000"}, "outside the port range"),
        ({"ROBOLAKE_LAKEFS_PORT": "9001"}, "more than one component"),
        ({"MINIO_ROOT_PASSWORD": "short"}, "at least 8 characters"),
        ({"MINIO_ROOT_USER": "ab"}, "at least 3 characters"),
        ({"ROBOLAKE_STATE_DIR": "/tmp/with space"}, "contains a space"),
        ({"ROBOLAKE_MINIO_DRIVES_PER_NODE": "9"}, "between 2 and 4"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load(env)


def test_env_file_garbage_names_file_and_line(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GOOD=1\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        read_env_file(env_file)
