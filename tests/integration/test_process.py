"""`robolake process` against the session stack and real Dask clusters on loopback, nothing mocked.

One small raw dataset (4 tiny episodes, ~270 frames) is generated and committed once. The jobs
run on an embedded LocalCluster, on a separate `dask scheduler` with two `dask worker`
processes, and through the CLI as a user runs it; a worker and, separately, the driver are
killed with SIGKILL midway. Parameters differ between the kill tests and the others (the image
size), so each has its own staging namespace and sees only the results its own runs staged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robolake.processing import EngineOptions, JobResult, ReplayBufferParams, run_replay_buffer, run_stats
from robolake.processing.board import is_stale, read_board
from robolake.processing.frames import STAGING_BUCKET, STAGING_PREFIX
from robolake.processing.inputs import params_hash
from robolake.stack.native import NativeStack
from robolake.umi import generate_dataset, open_replay_buffer, validate_replay_buffer
from robolake.versioning import LakeFSClient, put_dataset
from tests.integration.conftest import REPO, MakeBranch
from tests.stackutil import free_port, settings_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
DATASET = "datasets/proc"
EPISODES = 4


@pytest.fixture(scope="module")
def raw(stack: NativeStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The raw episodes (pose, gripper, video) committed on their own branch; their arrays as numpy."""
    gen = tmp_path_factory.mktemp("gen")
    generate_dataset(gen, profile="tiny", seed=5, episodes=EPISODES)
    upload = tmp_path_factory.mktemp("raw")
    for sensor in ("pose", "gripper", "video"):
        shutil.copytree(gen / sensor, upload / sensor)
    with LakeFSClient.from_settings(stack.settings) as client:
        name = f"t-proc-src-{os.getpid()}"
        client.create_branch(REPO, name, "main")
        put_dataset(client, REPO, name, upload, DATASET)
        yield {"branch": name, "expected": _expected(upload)}
        client.delete_branch(REPO, name)


def _expected(root: Path) -> dict[str, Any]:
    """What the buffer must hold, from the raw files: float32 arrays, float64 demo poses, episode ends."""
    parts: dict[str, list[Any]] = {}
    ends = []
    for k in range(EPISODES):
        pose = json.loads((root / "pose" / f"episode_{k:05d}.json").read_text())
        width = json.loads((root / "gripper" / f"episode_{k:05d}.json").read_text())["width_m"]
        pos, rot = np.array(pose["eef_position_m"]), np.array(pose["eef_rot_axis_angle"])
        n = pose["frame_count"]
        parts.setdefault("robot0_eef_pos", []).append(pos.astype(np.float32))
        parts.setdefault("robot0_eef_rot_axis_angle", []).append(rot.astype(np.float32))
        parts.setdefault("robot0_gripper_width", []).append(np.array(width, dtype=np.float32)[:, None])
        parts.setdefault("robot0_demo_start_pose", []).append(np.tile(np.r_[pos[0], rot[0]], (n, 1)))
        parts.setdefault("robot0_demo_end_pose", []).append(np.tile(np.r_[pos[-1], rot[-1]], (n, 1)))
        ends.append(n + (ends[-1] if ends else 0))
    return {"arrays": {k: np.concatenate(v) for k, v in parts.items()}, "ends": ends}


def _download(client: LakeFSClient, ref: str, path: str, dest: Path) -> Path:
    client.download_object(REPO, ref, path, dest)
    return dest


def _one_new_commit(client: LakeFSClient, branch: str, before: str, result: JobResult) -> None:
    head = client.get_commit(REPO, branch)
    assert head.id == result.commit_id and head.parents == (before,), "exactly one commit, on top of the old head"
    assert list(client.uncommitted(REPO, branch)) == []
    assert head.metadata["job"] == "replay-buffer" and head.metadata["source_path"] == DATASET
    assert head.metadata["dask_version"] and head.metadata["distributed_version"]
    assert not list(client.list_branches(REPO, prefix="robolake-process-")), "the work branch is gone"


def _staged(stack: NativeStack, clients: dict[str, Any], params: ReplayBufferParams) -> int:
    prefix = f"{STAGING_PREFIX}/{params_hash(params.as_dict())}/"
    return int(clients["direct"].list_objects_v2(Bucket=STAGING_BUCKET, Prefix=prefix).get("KeyCount", 0))


@pytest.fixture(scope="module")
def embedded(stack: NativeStack, raw: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The job on an embedded LocalCluster, into a new branch."""
    with LakeFSClient.from_settings(stack.settings) as client:
        target = f"t-proc-emb-{os.getpid()}"
        client.create_branch(REPO, target, raw["branch"])
        before = client.get_commit(REPO, target).id
        reports: list[Any] = []
        result = run_replay_buffer(
            stack.settings, raw["branch"], DATASET, to_branch=target, engine=EngineOptions(workers=2),
            progress=reports.append,
        )  # fmt: skip
        _one_new_commit(client, target, before, result)
        local = _download(client, target, result.output_path, tmp_path_factory.mktemp("emb") / "dataset.zarr.zip")
    return {"result": result, "branch": target, "zip": local, "reports": reports}


def test_replay_buffer_holds_the_source_arrays_and_umis_layout(embedded: dict[str, Any], raw: dict[str, Any]) -> None:
    result, expected = embedded["result"], raw["expected"]
    assert result.tasks_run == EPISODES and result.frames == expected["ends"][-1]
    assert result.engine.startswith("an embedded Dask cluster (2 worker processes")
    assert embedded["reports"][-1].done == EPISODES and embedded["reports"][-1].frames == result.frames
    info = validate_replay_buffer(embedded["zip"])
    assert info.image_shape == (224, 224, 3) and list(info.episode_lengths) == list(np.diff([0, *expected["ends"]]))
    root = open_replay_buffer(embedded["zip"])
    assert root["meta/episode_ends"][:].tolist() == expected["ends"]
    for name, want in expected["arrays"].items():
        got = root[f"data/{name}"][:]
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    frames = root["data/camera0_rgb"]
    assert frames.shape == (expected["ends"][-1], 224, 224, 3)
    first, last = frames[0], frames[len(frames) - 1]
    assert first.std() > 5.0 and np.any(first != last), "decoded frames show the scene"
    assert np.all(first[-5:, 100:124] == 0), "the gripper mount is masked black"


def test_replay_buffer_opens_in_umis_own_loader(embedded: dict[str, Any], tmp_path: Path) -> None:
    from tests.e2e.test_umi_reader_venv import _run_umi_loader, reader_python
    from tests.umi_training_loader import UMI_RECORDED_CONFIG

    done = _run_umi_loader(reader_python(), embedded["zip"], tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    camera = doc["cameras"]["camera0_rgb"]
    assert camera["codec"] == "umi_training_loader.UmiJpegXl" and camera["zarray_compressor"] == UMI_RECORDED_CONFIG
    assert doc["windows"] > 0
    for sample in camera["samples"]:
        assert sample["obs_shape"] == [2, 3, 224, 224] and min(sample["frame_std"]) > 5.0, sample


def test_a_rerun_of_the_same_job_commits_nothing(
    stack: NativeStack, embedded: dict[str, Any], raw: dict[str, Any]
) -> None:
    with LakeFSClient.from_settings(stack.settings) as client:
        head = client.get_commit(REPO, embedded["branch"]).id
        again = run_replay_buffer(stack.settings, raw["branch"], DATASET, to_branch=embedded["branch"])
        assert again.up_to_date and again.tasks_run == 0 and again.commit_id == head
        assert client.get_commit(REPO, embedded["branch"]).id == head


def test_stats_equal_numpy_on_the_same_arrays(
    stack: NativeStack, embedded: dict[str, Any], cluster: dict[str, Any], tmp_path: Path
) -> None:
    branch = embedded["branch"]
    result = run_stats(
        stack.settings, branch, embedded["result"].output_path, engine=EngineOptions(scheduler=cluster["address"]),
        out_file=tmp_path / "stats.json",
    )  # fmt: skip
    stats = json.loads((tmp_path / "stats.json").read_text())
    root = open_replay_buffer(embedded["zip"])
    assert sorted(stats) == sorted(k for k in root["data"] if not k.startswith("camera"))
    for name, got in stats.items():
        values = root[f"data/{name}"][:].astype(np.float64)
        assert got["count"] == [len(values)], name
        np.testing.assert_array_equal(got["min"], values.min(axis=0), err_msg=name)
        np.testing.assert_array_equal(got["max"], values.max(axis=0), err_msg=name)
        np.testing.assert_array_equal(got["mean"], values.mean(axis=0), err_msg=name)
        np.testing.assert_array_equal(got["std"], values.std(axis=0), err_msg=name)
        for q in (1, 10, 50, 90, 99):
            np.testing.assert_array_equal(got[f"q{q:02d}"], np.quantile(values, q / 100, axis=0), err_msg=name)
    with LakeFSClient.from_settings(stack.settings) as client:
        committed = json.loads(client.get_object(REPO, branch, result.output_path))
        assert committed == stats and result.output_path.endswith("replay_buffer/stats.json")
        assert client.get_commit(REPO, branch).metadata["job"] == "stats"


# ---- a separate cluster: `dask scheduler` and `dask worker` processes on loopback -----------------


def _start_worker(address: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "dask"), "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
         "--name", name, "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    workers = [_start_worker(address, f"w{k}") for k in range(2)]
    try:
        yield {"address": address}
    finally:
        for proc in [*workers, scheduler]:
            proc.kill()
            proc.wait(timeout=30)


def test_a_separate_scheduler_gives_the_same_result_as_the_embedded_cluster(
    stack: NativeStack, embedded: dict[str, Any], raw: dict[str, Any], cluster: dict[str, Any], branch: MakeBranch
) -> None:
    target = branch("proc-sched", raw["branch"])
    with LakeFSClient.from_settings(stack.settings) as client:
        before = client.get_commit(REPO, target).id
        result = run_replay_buffer(
            stack.settings, raw["branch"], DATASET, to_branch=target, reuse=False,
            engine=EngineOptions(scheduler=cluster["address"]),
        )  # fmt: skip
        _one_new_commit(client, target, before, result)
    assert result.tasks_run == EPISODES and result.engine.startswith(f"the Dask cluster at {cluster['address']}")
    assert result.output_sha256 == embedded["result"].output_sha256, "byte-identical to the embedded run"


def _wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_killing_a_worker_midway_leaves_the_branch_unchanged_until_one_commit(
    stack: NativeStack, raw: dict[str, Any], cluster: dict[str, Any], branch: MakeBranch, clients: dict[str, Any]
) -> None:
    from distributed import Client

    params = ReplayBufferParams(image_size=192)  # its own staging namespace: empty at the start
    target = branch("proc-killw", raw["branch"])
    victim = _start_worker(cluster["address"], "victim")
    outcome: dict[str, Any] = {}
    with LakeFSClient.from_settings(stack.settings) as lakefs, Client(cluster["address"]) as dask:
        before = lakefs.get_commit(REPO, target).id
        _wait_for(lambda: any(w["name"] == "victim" for w in dask.scheduler_info()["workers"].values()), 30, "victim")
        address = next(a for a, w in dask.scheduler_info()["workers"].items() if w["name"] == "victim")

        def job() -> None:
            try:
                outcome["result"] = run_replay_buffer(
                    stack.settings, raw["branch"], DATASET, to_branch=target, params=params,
                    engine=EngineOptions(scheduler=cluster["address"]),
                )  # fmt: skip
            except Exception as exc:
                outcome["error"] = exc

        runner = threading.Thread(target=job)
        runner.start()
        _wait_for(lambda: bool(dask.processing(workers=[address]).get(address)), 60, "a task on the victim")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        assert lakefs.get_commit(REPO, target).id == before and list(lakefs.uncommitted(REPO, target)) == []
        runner.join(timeout=300)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]
        _one_new_commit(lakefs, target, before, result)
    assert result.tasks_run == EPISODES and _staged(stack, clients, params) == EPISODES


def test_killing_the_driver_leaves_the_branch_unchanged_and_a_rerun_commits_once(
    stack: NativeStack, raw: dict[str, Any], cluster: dict[str, Any], branch: MakeBranch, clients: dict[str, Any]
) -> None:
    params = ReplayBufferParams(image_size=160)
    target = branch("proc-killd", raw["branch"])
    command = [str(BIN / "robolake"), "process", "replay-buffer", "--ref", raw["branch"], "--dataset", DATASET,
               "--to-branch", target, "--image-size", "160", "--workers", "1"]  # fmt: skip
    env = {k: v for k, v in settings_env(stack.settings).items() if k != "DASK_SCHEDULER_ADDRESS"}
    with LakeFSClient.from_settings(stack.settings) as lakefs:
        before = lakefs.get_commit(REPO, target).id
        driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True)  # fmt: skip
        try:
            # Killed once a task is staged and its record is on the board (the driver posts it as its
            # tasks start; on a loaded machine that PUT can finish after the first task's).
            def midway() -> bool:
                posted = any(p.record["source"].get("to_branch") == target for p in read_board(stack.settings))
                return (_staged(stack, clients, params) >= 1 and posted) or driver.poll() is not None

            _wait_for(midway, 120, "a staged task and the job's record")
            assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)  # the embedded cluster's worker it had started
        staged = _staged(stack, clients, params)
        assert 1 <= staged < EPISODES, "killed midway: some episodes staged, not all"
        assert lakefs.get_commit(REPO, target).id == before and list(lakefs.uncommitted(REPO, target)) == []
        # Its record on the job board says running, and stops changing: the console calls it stale.
        left = [p.record for p in read_board(stack.settings) if p.record["source"].get("to_branch") == target]
        assert len(left) == 1 and left[0]["state"] == "running" and left[0]["pid"] == driver.pid, left
        time.sleep(left[0]["heartbeat_s"] + 1)
        again = [p.record for p in read_board(stack.settings) if p.record["id"] == left[0]["id"]]
        assert again == left and is_stale(left[0], left[0]["updated_at"] + 3 * left[0]["heartbeat_s"] + 1)
        result = run_replay_buffer(
            stack.settings, raw["branch"], DATASET, to_branch=target, params=params,
            engine=EngineOptions(scheduler=cluster["address"]),
        )  # fmt: skip
        _one_new_commit(lakefs, target, before, result)
    assert result.tasks_reused >= staged and result.tasks_run + result.tasks_reused == EPISODES
