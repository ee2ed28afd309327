"""The README's commands run as a user runs them, against isolated ports and state."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
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
    env = {
        **os.environ,
        **isolated_env(state),
        "ROBOLAKE_ENV_FILE": "/nonexistent/.env",
        "ROBOLAKE_SAMPLE_DIR": str(tmp_path / "umi_data" / "sample"),
        "COLUMNS": "200",
    }
    first = run(["./deploy-local.sh", "--runtime", "native"], env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "started minio-1, minio-2, minio-3, accelerator, hooks, lakefs, prometheus, console" in first.stderr
    assert "Next steps" in first.stdout and env["ROBOLAKE_LAKEFS_PORT"] in first.stdout
    # The main job: sample generated, uploaded (verified), committed, small-file table printed.
    assert "| accelerator warm | GET | 8 |" in first.stdout and "| accelerator | LIST | 1 |" in first.stdout
    commit = re.search(r"committed ([0-9a-f]{64}) on 'main': 17 files", first.stdout)
    assert commit is not None, first.stdout

    status = run([".venv/bin/robolake", "stack", "status", "--json"], env)
    assert status.returncode == 0, status.stdout + status.stderr
    doc = json.loads(status.stdout)
    assert [(c["name"], c["healthy"]) for c in doc["components"]] == [
        ("minio-1", True),
        ("minio-2", True),
        ("minio-3", True),
        ("accelerator", True),
        ("hooks", True),
        ("lakefs", True),
        ("prometheus", True),
        ("console", True),
    ]
    assert doc["cluster"]["one_cluster"] and doc["repository"]["exists"]
    assert all(set(c) >= {"name", "endpoint", "healthy"} for c in doc["components"])

    # The seed's quick start right after it, from the same folder (umi_data/ holds the sample already):
    # twice, then with --experiments. Each dataset has its own folder, so none touches another.
    seed_cli = [sys.executable, str(ROOT / "download_umi_data.py"), "--generate", "--upload"]
    quick = [
        subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
        for cmd in (seed_cli, seed_cli, [*seed_cli, "--experiments"])
    ]
    for done in quick:
        assert done.returncode == 0, done.stdout + done.stderr
    assert "in umi_data/synthetic_small_s0_e8" in quick[0].stderr
    assert re.search(r": [1-9]\d* objects uploaded and verified, 0 already stored", quick[0].stderr), quick[0].stderr
    assert re.search(r": 0 objects uploaded and verified, [1-9]\d* already stored", quick[1].stderr), quick[1].stderr
    assert re.search(r": [1-9]\d* objects uploaded and verified", quick[2].stderr), quick[2].stderr
    assert (tmp_path / "umi_data" / "synthetic_small_s0_e8" / "configs").is_dir()

    # The README's training snippet, on the main job's sample.
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("## Training from the lake", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    trained = run([sys.executable, "-c", snippet], env, timeout=300)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert re.search(r"^[0-9a-f]{64} [1-9]\d*$", trained.stdout, re.M), trained.stdout
    assert "(16, 7) s3://umi-experiments/results/" in trained.stdout
    runs = run([".venv/bin/robolake", "runs", "list", "--json"], env)
    assert runs.returncode == 0 and trained.stdout.split()[0] in runs.stdout, runs.stdout + runs.stderr

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
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "LAKECTL_SERVER_ENDPOINT_URL",
        "LAKECTL_CREDENTIALS_ACCESS_KEY_ID",
        "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY",
    ):
        assert f"export {name}=" in exports.stdout
    script = (
        f'eval "$({ROOT}/.venv/bin/robolake stack env)" && env -u ROBOLAKE_STATE_DIR {sys.executable} -c '
        "\"import boto3; print(sorted(b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']))\""
    )
    out = run(["bash", "-c", script], env)
    assert out.returncode == 0, out.stderr
    assert "umi-raw" in out.stdout and "lakefs-storage" in out.stdout


def test_stack_env_puts_lakectl_on_path(stack: NativeStack) -> None:
    env = settings_env(stack.settings)
    script = f'eval "$({ROOT}/.venv/bin/robolake stack env)" && command -v lakectl && lakectl repo list'
    out = run(["bash", "-c", script], env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0] == str(stack.builder.path_dir / "lakectl")
    assert stack.settings.lakefs_repo in out.stdout
    # A bad repository is an error lakectl reports, not a crash.
    script = f'eval "$({ROOT}/.venv/bin/robolake stack env)" && lakectl branch list lakefs://no-such-repo'
    bad = run(["bash", "-c", script], env, timeout=120)
    assert bad.returncode not in (0, 2, 127), bad.stdout + bad.stderr  # 2: a Go panic; 127: not found
    assert "not found" in (bad.stdout + bad.stderr).lower() and "goroutine" not in bad.stderr


@pytest.mark.skipif(shutil.which("aws") is None, reason="aws-cli is not installed")
def test_readme_aws_cli_setting_makes_presigned_urls_lakefs_accepts(stack: NativeStack, tmp_path: Path) -> None:
    from robolake.versioning.hooks import ACTION_PATH

    # Never the user's ~/.aws: the README's `aws configure set` writes to this file instead.
    env = {
        **settings_env(stack.settings),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    }
    presign = (
        f'eval "$({ROOT}/.venv/bin/robolake stack env)" && '
        'AWS_ACCESS_KEY_ID="$LAKECTL_CREDENTIALS_ACCESS_KEY_ID" '
        'AWS_SECRET_ACCESS_KEY="$LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY" '
        f'aws s3 presign --endpoint-url "$LAKECTL_SERVER_ENDPOINT_URL" s3://{stack.settings.lakefs_repo}/main/{ACTION_PATH}'
    )

    def status_of_presigned_get() -> int:
        out = run(["bash", "-c", presign], env, timeout=120)
        assert out.returncode == 0, out.stderr
        try:
            with urllib.request.urlopen(out.stdout.strip(), timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    version = run(["aws", "--version"], env)
    if (version.stdout + version.stderr).startswith("aws-cli/1."):
        assert status_of_presigned_get() == 400  # SigV2: lakeFS answers MissingFields
    setting = run(["aws", "configure", "set", "default.s3.signature_version", "s3v4"], env)
    assert setting.returncode == 0, setting.stderr
    assert status_of_presigned_get() == 200


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
