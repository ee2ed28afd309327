"""The README's commands run as a user runs them, against isolated ports and state."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robolake.stack.native import NativeStack
from tests.stackutil import isolated_env, processes_using, settings_env

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_deploy_local_up_is_idempotent_and_down_leaves_nothing(tmp_path: Path) -> None:
    import os

    state = tmp_path / "state"
    env = {**os.environ, **isolated_env(state), "ROBOLAKE_ENV_FILE": "/nonexistent/.env",
           "ROBOLAKE_SAMPLE_DIR": str(tmp_path / "sample"), "COLUMNS": "200"}
    first = run(["./deploy-local.sh", "--runtime", "native"], env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "started minio-1, minio-2, minio-3, accelerator, hooks, lakefs" in first.stderr
    assert "Next steps" in first.stdout and env["ROBOLAKE_LAKEFS_PORT"] in first.stdout
    # The main job: sample generated, uploaded (verified), committed, small-file table printed.
    assert "| accelerator warm | GET | 8 |" in first.stdout and "| accelerator | LIST | 1 |" in first.stdout
    commit = re.search(r"committed ([0-9a-f]{64}) on 'main': 17 files", first.stdout)
    assert commit is not None, first.stdout

    status = run([".venv/bin/robolake", "stack", "status", "--json"], env)
    assert status.returncode == 0, status.stdout + status.stderr
    doc = json.loads(status.stdout)
    assert [(c["name"], c["healthy"]) for c in doc["components"]] == [
        ("minio-1", True), ("minio-2", True), ("minio-3", True), ("accelerator", True), ("hooks", True),
        ("lakefs", True)]
    assert doc["cluster"]["one_cluster"] and doc["repository"]["exists"]
    assert all(set(c) >= {"name", "endpoint", "healthy"} for c in doc["components"])

    again = run(["./deploy-local.sh"], {**env})
    assert again.returncode == 0 and "everything was already running" in again.stderr
    assert "0 objects uploaded" in again.stdout + again.stderr  # nothing rewritten in the lake
    assert f"committed {commit[1]} on 'main'" in again.stdout  # and no new commit

    down = run(["./deploy-local.sh", "down"], env)
    assert down.returncode == 0, down.stderr
    assert processes_using(state) == []
    assert (state / "credentials.json").exists()  # data kept
    wiped = run(["./deploy-local.sh", "down", "--volumes"], env)
    assert wiped.returncode == 0 and not state.exists()


def test_deploy_local_rejects_bad_arguments() -> None:
    import os

    bad = run(["./deploy-local.sh", "--runtime", "podman"], dict(os.environ))
    assert bad.returncode != 0 and "'podman' is not a runtime" in bad.stderr
    bad = run(["./deploy-local.sh", "sideways"], dict(os.environ))
    assert bad.returncode != 0 and "unknown argument 'sideways'" in bad.stderr


def test_stack_env_makes_boto3_work(stack: NativeStack) -> None:
    env = settings_env(stack.settings)
    exports = run([".venv/bin/robolake", "stack", "env"], env)
    assert exports.returncode == 0, exports.stderr
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "LAKECTL_SERVER_ENDPOINT_URL",
                 "LAKECTL_CREDENTIALS_ACCESS_KEY_ID", "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"):
        assert f"export {name}=" in exports.stdout
    script = (
        f'eval "$({ROOT}/.venv/bin/robolake stack env)" && env -u ROBOLAKE_STATE_DIR {sys.executable} -c '
        '"import boto3; print(sorted(b[\'Name\'] for b in boto3.client(\'s3\').list_buckets()[\'Buckets\']))"'
    )
    out = run(["bash", "-c", script], env)
    assert out.returncode == 0, out.stderr
    assert "umi-raw" in out.stdout and "lakefs-storage" in out.stdout


def test_setup_buckets_script_on_running_cluster(stack: NativeStack) -> None:
    env = settings_env(stack.settings)
    out = run(["scripts/setup-buckets.sh", stack.settings.minio_endpoints[2]], env)
    assert out.returncode == 0, out.stderr
    assert "umi-raw" in out.stdout and "exists" in out.stdout


def test_status_exit_code_and_clear_error_when_nothing_runs(tmp_path: Path) -> None:
    import os

    env = {**os.environ, **isolated_env(tmp_path / "state"), "ROBOLAKE_ENV_FILE": "/nonexistent/.env"}
    status = run([".venv/bin/robolake", "stack", "status", "--json"], env)
    assert status.returncode == 1
    assert not json.loads(status.stdout)["healthy"]
    bad = run([".venv/bin/robolake", "stack", "status"], {**env, "ROBOLAKE_LAKEFS_PORT": "eighty"})
    assert bad.returncode == 2 and "ROBOLAKE_LAKEFS_PORT='eighty' is not a port number" in bad.stderr
    assert "Traceback" not in bad.stderr
    no_env = run([".venv/bin/robolake", "stack", "env"], env)
    assert no_env.returncode == 1 and "bring the stack up first" in no_env.stderr
