"""`robolake process` as a user types it: a job with its progress, and every bad input as one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from robolake.stack.native import NativeStack
from robolake.umi import generate_dataset
from robolake.versioning import LakeFSClient, put_dataset
from tests.e2e.test_bad_input import CLOSED, ROBOLAKE, SWEEP
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e
REPO = "robotics-data"
DATASET = "datasets/proc-cli"


@pytest.fixture(scope="module")
def env(stack: NativeStack) -> dict[str, str]:
    return {k: v for k, v in settings_env(stack.settings).items() if k != "DASK_SCHEDULER_ADDRESS"}


@pytest.fixture(scope="module")
def source(stack: NativeStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A branch holding one tiny raw episode under DATASET."""
    gen = tmp_path_factory.mktemp("gen")
    generate_dataset(gen, profile="tiny", seed=9, episodes=1)
    upload = tmp_path_factory.mktemp("raw")
    for sensor in ("pose", "gripper", "video"):
        shutil.copytree(gen / sensor, upload / sensor)
    name = f"t-proc-cli-{os.getpid()}"
    with LakeFSClient.from_settings(stack.settings) as client:
        client.create_branch(REPO, name, "main")
        put_dataset(client, REPO, name, upload, DATASET)
        yield name
        client.delete_branch(REPO, name)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROBOLAKE, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].lower().startswith("error"), done.stderr
    return lines[-1]


@pytest.mark.parametrize(
    "args", [["process", "replay-buffer", *a] for a in SWEEP["process replay-buffer"]]
    + [["process", "stats", *a] for a in SWEEP["process stats"]]
    + [["process", "lerobot", *a] for a in SWEEP["process lerobot"]]
    + [["process", "transcode", *a] for a in SWEEP["process transcode"]],
)  # fmt: skip
def test_bad_input_is_one_line_never_a_traceback(env: dict[str, str], args: list[str]) -> None:
    _one_error_line(_run(env, *args))


def test_an_unreachable_scheduler_is_named_and_the_branch_stays(
    stack: NativeStack, env: dict[str, str], source: str
) -> None:
    with LakeFSClient.from_settings(stack.settings) as client:
        head = client.get_commit(REPO, source).id
        done = _run(
            env, "process", "replay-buffer", "--ref", source, "--dataset", DATASET, "--scheduler", f"tcp://{CLOSED}"
        )
        line = _one_error_line(done)
        assert done.returncode == 1 and f"no Dask scheduler answers at 'tcp://{CLOSED}'" in line
        assert len(done.stderr.strip().splitlines()) <= 3  # the status lines, then the error
        assert client.get_commit(REPO, source).id == head


def test_without_dask_the_error_says_how_to_install_it(env: dict[str, str], source: str) -> None:
    script = (
        "import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None\n"
        "from robolake.cli.main import main\n"
        f"sys.argv = ['robolake', 'process', 'replay-buffer', '--ref', {source!r}, '--dataset', {DATASET!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    line = _one_error_line(done)
    assert done.returncode == 2 and "pip install 'robolake[dask]'" in line


def test_the_job_runs_with_progress_then_a_rerun_is_a_no_op(
    stack: NativeStack, env: dict[str, str], source: str
) -> None:
    args = ["process", "replay-buffer", "--ref", source, "--dataset", DATASET, "--workers", "1"]
    done = _run(env, *args)
    assert done.returncode == 0, done.stderr
    assert "an embedded Dask cluster (1 worker processes" in done.stderr and "frames/s" in done.stderr
    assert done.stdout.startswith("committed ") and "1 tasks run, 0 reused" in done.stdout
    # The console's Jobs page shows the run: done, its tasks, the commit it made.
    shown = requests.get(
        f"{stack.settings.console_endpoint}/api/jobs", auth=stack.settings.resolve_lakefs_keys(), timeout=30
    )
    record = next(j for j in shown.json()["jobs"] if j["job"] == "replay-buffer" and j["source"]["ref"] == source)
    assert record["state"] == "done" and record["tasks_done"] == record["tasks_total"] == 1, record
    assert record["commit_id"] and record["commit_id"][:12] in done.stdout and record["engine"], record
    again = _run(env, *args, "--json")
    assert again.returncode == 0, again.stderr
    doc: dict[str, Any] = json.loads(again.stdout)
    assert doc["up_to_date"] is True and doc["tasks_run"] == 0
    stats = _run(env, "process", "stats", "--ref", source, "--dataset", f"{DATASET}/processed/", "--single-process",
                 "--no-commit")  # fmt: skip
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["robot0_gripper_width"]["count"] == [doc["frames"] or _frames(stack, source)]


def _frames(stack: NativeStack, branch: str) -> int:
    with LakeFSClient.from_settings(stack.settings) as client:
        return int(client.get_commit(REPO, branch).metadata["frames"])


def test_help_teaches_where_tasks_run(env: dict[str, str], tmp_path: Path) -> None:
    done = _run(env, "process", "--help")
    assert done.returncode == 0 and "--scheduler tcp://H:P" in done.stdout and "robolake[dask]" in done.stdout
