"""Settings: precedence (of settings and of secrets), parsing and the messages for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from robolake.config import Settings, read_env_file
from robolake.errors import ConfigError
from robolake.state import Credentials, StateDir

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
    env_file.write_text(
        "# creds\nexport MINIO_ROOT_USER=fileuser\nMINIO_ROOT_PASSWORD='file-password'\nROBOLAKE_LAKEFS_PORT=8100\n"
    )
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


# ---- secrets: flag > ROBOLAKE_* environment > .env > the stack's state directory --------------------


def _stack_state(tmp_path: Path) -> Credentials:
    """A state directory as `stack up` leaves it; returns the credentials it holds."""
    state = StateDir(tmp_path / "state")
    state.create()
    return state.credentials()


def test_lakefs_keys_and_hooks_token_follow_the_documented_precedence(tmp_path: Path) -> None:
    stack = _stack_state(tmp_path)
    env_file = tmp_path / ".env"
    env_file.write_text(
        "ROBOLAKE_LAKEFS_ACCESS_KEY_ID=AKIAJFILE\nROBOLAKE_LAKEFS_SECRET_ACCESS_KEY=file-secret\n"
        "ROBOLAKE_HOOKS_TOKEN=file-token\nROBOLAKE_WEBHOOK_TOKEN=file-webhook\nROBOLAKE_GO=/opt/go/bin/go\n"
    )
    state = {"ROBOLAKE_STATE_DIR": str(tmp_path / "state")}
    env = {
        "ROBOLAKE_LAKEFS_ACCESS_KEY_ID": "AKIAJENV",
        "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": "env-secret",
        "ROBOLAKE_HOOKS_TOKEN": "env-token",
    }

    # Nothing given: the state directory's, which `stack up` generated.
    s = load(state)
    assert s.resolve_lakefs_keys() == (stack.lakefs_access_key_id, stack.lakefs_secret_access_key)
    assert s.resolve_hooks_token() == stack.hooks_token
    assert (s.webhook_token, s.go, s.tools_dir) == ("", "", None)
    # The .env file beats the state directory ...
    s = load(state, env_file)
    assert s.resolve_lakefs_keys() == ("AKIAJFILE", "file-secret")
    assert (s.resolve_hooks_token(), s.webhook_token, s.go) == ("file-token", "file-webhook", "/opt/go/bin/go")
    # ... the environment beats the .env file ...
    s = load({**state, **env}, env_file)
    assert s.resolve_lakefs_keys() == ("AKIAJENV", "env-secret")
    assert (s.resolve_hooks_token(), s.webhook_token) == ("env-token", "file-webhook")
    # ... and a flag beats the environment.
    s = Settings.load(
        environ={**state, **env},
        env_file=env_file,
        lakefs_access_key_id="AKIAJFLAG",
        lakefs_secret_access_key="flag-secret",
        hooks_token="flag-token",
    )
    assert (s.resolve_lakefs_keys(), s.resolve_hooks_token()) == (("AKIAJFLAG", "flag-secret"), "flag-token")
    assert s.override(lakefs_access_key_id=None).lakefs_access_key_id == "AKIAJFLAG"  # None: flag not given


def test_secrets_are_not_in_repr() -> None:
    s = Settings.load(
        environ={"HOME": "/home/u"},
        env_file=NO_FILE,
        lakefs_secret_access_key="s3cr3t-key",
        hooks_token="s3cr3t-token",
        webhook_token="s3cr3t-webhook",
    )
    assert "s3cr3t" not in repr(s)


def test_missing_secrets_name_every_place_they_can_come_from(tmp_path: Path) -> None:
    s = load({"ROBOLAKE_STATE_DIR": str(tmp_path / "none")})
    with pytest.raises(
        ConfigError,
        match=r"no lakeFS keys: '.*credentials\.json' does not exist; start the stack "
        r"\(`robolake stack up`\), point ROBOLAKE_STATE_DIR .* or set "
        "ROBOLAKE_LAKEFS_ACCESS_KEY_ID and ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY",
    ):
        s.resolve_lakefs_keys()
    with pytest.raises(ConfigError, match=r"no hooks token: .* or pass the webhook URL with --url$"):
        s.resolve_hooks_token(otherwise="pass the webhook URL with --url")
    with pytest.raises(ConfigError, match="only one of ROBOLAKE_LAKEFS_ACCESS_KEY_ID and"):
        load({"ROBOLAKE_LAKEFS_ACCESS_KEY_ID": "AKIAJONLY"}).resolve_lakefs_keys()


def test_resolving_never_creates_the_stack_credentials(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.create()
    with pytest.raises(ConfigError, match="does not exist"):
        load({"ROBOLAKE_STATE_DIR": str(state.root)}).resolve_lakefs_keys()
    assert not state.credentials_path.exists()
