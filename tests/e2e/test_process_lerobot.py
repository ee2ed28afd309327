"""`robolake process lerobot` and `process transcode` as a user runs them, against the session stack.

- lerobot: a generated replay buffer committed to a branch is exported on an embedded Dask
  cluster into one commit; the committed folder is the one `export lerobot` writes from the same
  commit (same files, same parquet tables, same meta/ JSON; the videos the same frames at the same
  times, up to codec noise: each episode is encoded on its own); a single-process run gives the
  same bytes; lerobot 0.4.4's own LeRobotDataset opens it and returns the buffer's state values
  and frames; a re-run commits nothing.
- transcode: the raw videos of the same generated dataset to H.264 and AV1 at another size: the
  frame counts and sizes asked, the raw videos untouched, one commit each, a re-run commits nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from robolake.ml.lerobot_export import ExportOptions, export_lerobot, resample_steps
from robolake.processing import EngineOptions, LeRobotParams, run_lerobot
from robolake.stack.native import NativeStack
from robolake.umi import generate_dataset
from robolake.umi.replay_buffer import open_replay_buffer
from robolake.versioning import LakeFSClient, put_dataset
from tests.e2e.test_bad_input import ROBOLAKE
from tests.e2e.test_lerobot import BACKENDS, _assert_stats_as_lerobots, _frame, _load, side_env  # noqa: F401
from tests.sidevenv import LEROBOT_PIN, cache_root, lerobot_python
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e
REPO = "robotics-data"
DATASET = "datasets/proc-lr"
BUFFER = f"{DATASET}/replay_buffer/dataset.zarr.zip"
FPS = 20
EPISODES = 3


@pytest.fixture(scope="module")
def lerobot_py() -> Path:
    """lerobot 0.4.4's virtualenv: a cached one when there is one (the check script imports lerobot only)."""
    for complete in sorted((cache_root() / "venvs").glob("lerobot-*/.complete")):
        if complete.read_text().splitlines()[:1] == [LEROBOT_PIN]:
            return complete.parent / "bin" / "python"
    return lerobot_python()


@pytest.fixture(scope="module")
def env(stack: NativeStack) -> dict[str, str]:
    return {k: v for k, v in settings_env(stack.settings).items() if k != "DASK_SCHEDULER_ADDRESS"}


@pytest.fixture(scope="module")
def source(stack: NativeStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A branch with a generated dataset: its replay buffer and its raw videos, under DATASET."""
    gen = tmp_path_factory.mktemp("gen")
    generate_dataset(gen, profile="tiny", seed=11, episodes=EPISODES)
    upload = tmp_path_factory.mktemp("up")
    shutil.copytree(gen / "replay_buffer", upload / "replay_buffer")
    shutil.copytree(gen / "video", upload / "video")
    name = f"t-proc-lr-{os.getpid()}"
    with LakeFSClient.from_settings(stack.settings) as client:
        client.create_branch(REPO, name, "main")
        put_dataset(client, REPO, name, upload, DATASET)
        yield {"branch": name, "local": gen, "commit": client.get_commit(REPO, name).id}
        for branch in client.list_branches(REPO, prefix=name):
            client.delete_branch(REPO, branch.id)


def _run(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [ROBOLAKE, *args, "--json"], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"robolake {' '.join(args)}: exit {done.returncode}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)


def _download(client: LakeFSClient, ref: str, prefix: str, dest: Path) -> Path:
    for obj in client.list_objects(REPO, ref, prefix):
        client.download_object(REPO, ref, obj.path, dest / obj.path[len(prefix) :])
    return dest


def _decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    frames, times = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            frames.append(frame.to_ndarray(format="rgb24").astype(np.float64))
            times.append(float(frame.pts * frame.time_base))
    return frames, times


def _assert_same_dataset(ours: Path, export: Path) -> None:
    """Same files; parquet tables and JSON equal; videos: same frame count and times, frames within codec noise."""
    names = sorted(p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file())
    assert sorted(p.relative_to(ours).as_posix() for p in ours.rglob("*") if p.is_file()) == names
    videos = [n for n in names if n.endswith(".mp4")]
    assert videos and any(n.endswith(".parquet") for n in names)
    for name in names:
        if name.endswith(".parquet"):
            assert pq.read_table(ours / name).equals(pq.read_table(export / name)), name
        elif name.endswith(".json"):
            assert json.loads((ours / name).read_text()) == json.loads((export / name).read_text()), name
    for name in videos:
        (got, got_t), (want, want_t) = _decoded(ours / name), _decoded(export / name)
        assert len(got) == len(want) and got_t == pytest.approx(want_t, abs=1e-6), name
        gaps = [float(np.abs(a - b).mean()) for a, b in zip(got, want, strict=True)]
        assert max(gaps) < 3.0, f"{name}: decoded frames differ by up to {max(gaps):.2f} levels"


def test_process_lerobot_is_the_export_in_one_commit_and_lerobot_opens_it(
    stack: NativeStack,
    env: dict[str, str],
    source: dict[str, Any],
    tmp_path: Path,
    lerobot_py: Path,
    side_env: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, branch = stack.settings, source["branch"]
    with LakeFSClient.from_settings(settings) as client:
        before = client.get_commit(REPO, branch).id
        doc = _run(env, "process", "lerobot", "--ref", branch, "--dataset", f"{DATASET}/replay_buffer/", "--fps",
                   str(FPS), "--workers", "2")  # fmt: skip
        head = client.get_commit(REPO, branch)
        assert head.id == doc["commit_id"] and head.parents == (before,) and not doc["up_to_date"]
        assert head.metadata["job"] == "lerobot" and head.metadata["source_commit"] == source["commit"]
        assert json.loads(head.metadata["parameters"])["fps"] == FPS and head.metadata["dask_version"]
        assert doc["output_path"] == f"{DATASET}/lerobot/" and doc["tasks_run"] == EPISODES
        assert doc["engine"].startswith("an embedded Dask cluster (2 worker processes")
        ours = _download(client, head.id, doc["output_path"], tmp_path / "ours")
        assert (
            client.get_object(REPO, head.id, BUFFER)
            == (source["local"] / "replay_buffer/dataset.zarr.zip").read_bytes()
        )

        export = tmp_path / "export"
        export_lerobot(settings, source["commit"], BUFFER, export, ExportOptions(fps=FPS))
        _assert_same_dataset(ours, export)

        again = _run(env, "process", "lerobot", "--ref", branch, "--dataset", f"{DATASET}/replay_buffer/", "--fps",
                     str(FPS))  # fmt: skip
        assert again["up_to_date"] and again["tasks_run"] == 0 and client.get_commit(REPO, branch).id == head.id

        other = f"{branch}-inline"
        client.create_branch(REPO, other, source["commit"])
        inline = run_lerobot(settings, source["commit"], BUFFER, to_branch=other, params=LeRobotParams(fps=FPS),
                             engine=EngineOptions(inline=True), reuse=False)  # fmt: skip
        assert inline.tasks_run == EPISODES and inline.output_sha256 == doc["output_sha256"], "the same bytes"
        _assert_a_new_output_replaces_the_old(settings, client, other, inline.output_path)
    _assert_lerobot_reads(lerobot_py, side_env, monkeypatch, ours, source["local"])


def _assert_a_new_output_replaces_the_old(settings: Any, client: LakeFSClient, branch: str, out: str) -> None:
    """Another task text: the rows change, the encoded parts are reused, a file the old output had is removed."""
    client.upload_object(REPO, branch, f"{out}stale.txt", b"old", md5_hex=hashlib.md5(b"old").hexdigest())
    before = client.commit(REPO, branch, "a file the next output does not have").id
    again = run_lerobot(settings, branch, BUFFER, params=LeRobotParams(fps=FPS, task="another task"),
                        engine=EngineOptions(inline=True))  # fmt: skip
    head = client.get_commit(REPO, branch)
    assert head.id == again.commit_id and head.parents == (before,) and again.tasks_reused == EPISODES
    paths = {o.path for o in client.list_objects(REPO, branch, out)}
    assert f"{out}stale.txt" not in paths and paths == set(again.details["files"])
    tasks = pq.read_table(io.BytesIO(client.get_object(REPO, branch, f"{out}meta/tasks.parquet")))
    assert tasks.column("__index_level_0__").to_pylist() == ["another task"]


def _assert_lerobot_reads(py: Path, env: dict[str, str], mp: pytest.MonkeyPatch, root: Path, local: Path) -> None:
    buffer = open_replay_buffer(local / "replay_buffer/dataset.zarr.zip")
    ends = buffer["meta/episode_ends"][:]
    starts = np.concatenate([[0], ends[:-1]])
    state = np.concatenate([buffer[f"data/robot0_{k}"][:] for k in ("eef_pos", "eef_rot_axis_angle", "gripper_width")],
                           axis=1)  # fmt: skip
    steps = np.concatenate([s + resample_steps(int(e - s), FPS) for s, e in zip(starts, ends, strict=True)])
    picks = [0, len(steps) // 2, len(steps) - 1]
    read = _load(py, env, mp, [root], picks)
    _assert_stats_as_lerobots(read["stats_gap"], {"observation.state", "action", "timestamp", "index"})
    for backend, loaded in zip(BACKENDS, read["loaded"], strict=True):
        assert (loaded["episodes"], loaded["frames"], loaded["fps"]) == (EPISODES, len(steps), FPS), backend
        for i, item in zip(picks, loaded["items"], strict=True):
            assert np.array_equal(np.asarray(item["observation.state"], dtype=np.float32), state[steps[i]]), i
            frame = _frame(item, "observation.images.camera0").astype(np.float64)
            want = np.moveaxis(buffer["data/camera0_rgb"][steps[i]], -1, 0).astype(np.float64)
            psnr = 10 * np.log10(255**2 / np.mean((frame - want) ** 2))
            assert frame.shape == (3, 224, 224) and psnr > 28, (backend, i, psnr)


@pytest.mark.parametrize(("codec", "size"), [("h264", (96, 64)), ("av1", (128, 96))])
def test_process_transcode_writes_the_size_asked_beside_the_raw_videos_once(
    stack: NativeStack, env: dict[str, str], source: dict[str, Any], tmp_path: Path, codec: str, size: tuple[int, int]
) -> None:
    branch = f"{source['branch']}-{codec}"
    width, height = size
    with LakeFSClient.from_settings(stack.settings) as client:
        client.create_branch(REPO, branch, source["branch"])
        before = client.get_commit(REPO, branch).id
        raw_before = {o.path: o.checksum for o in client.list_objects(REPO, branch, f"{DATASET}/video/")}
        args = ["process", "transcode", "--ref", branch, "--dataset", DATASET, "--codec", codec, "--size",
                f"{width}x{height}", "--workers", "2"]  # fmt: skip
        doc = _run(env, *args)
        head = client.get_commit(REPO, branch)
        assert head.id == doc["commit_id"] and head.parents == (before,) and head.metadata["job"] == "transcode"
        out = f"{DATASET}/transcoded/{codec}-{width}x{height}/video/"
        assert doc["output_path"] == out and doc["tasks_run"] == EPISODES
        assert {o.path: o.checksum for o in client.list_objects(REPO, branch, f"{DATASET}/video/")} == raw_before
        got = _download(client, head.id, out, tmp_path / "got")
        for k in range(EPISODES):
            name = f"episode_{k:05d}.mp4"
            frames, _ = _decoded(got / name)
            source_frames, _ = _decoded(source["local"] / "video" / name)
            assert len(frames) == len(source_frames) > 0 and {f.shape for f in frames} == {(height, width, 3)}
            with av.open(str(got / name)) as container:
                assert container.streams.video[0].codec_context.codec.canonical_name == codec
        assert doc["frames"] == sum(len(_decoded(got / f"episode_{k:05d}.mp4")[0]) for k in range(EPISODES))
        again = _run(env, *args)
        assert again["up_to_date"] and again["tasks_run"] == 0 and client.get_commit(REPO, branch).id == head.id


def test_clean_staging_deletes_only_old_results_and_a_rerun_makes_the_same_output(
    stack: NativeStack, env: dict[str, str], source: dict[str, Any]
) -> None:
    # After the transcode tests above: their staged videos are in staging/transcode/.
    recent = _run(env, "process", "clean-staging", "--job", "transcode", "--older-than", "1h", "--dry-run")
    assert recent["deleted"] == 0 and recent["kept"] >= 2 * EPISODES, recent
    counted = _run(env, "process", "clean-staging", "--job", "transcode", "--older-than", "0s", "--dry-run")
    assert counted["deleted"] == recent["kept"] and counted["kept"] == 0 and counted["deleted_bytes"] > 0
    done = _run(env, "process", "clean-staging", "--job", "transcode", "--older-than", "0s")
    assert done["deleted"] == counted["deleted"] and not done["dry_run"]
    left = _run(env, "process", "clean-staging", "--job", "transcode", "--older-than", "0s", "--dry-run")
    assert left["deleted"] == left["kept"] == 0
    # Nothing committed was touched, and a run after the cleaning recomputes the same bytes.
    branch = f"{source['branch']}-h264-again"
    out = f"{DATASET}/transcoded/h264-96x64/video/"
    with LakeFSClient.from_settings(stack.settings) as client:
        client.create_branch(REPO, branch, source["branch"])
        doc = _run(env, "process", "transcode", "--ref", branch, "--dataset", DATASET, "--codec", "h264",
                   "--size", "96x64", "--workers", "2")  # fmt: skip
        assert doc["tasks_run"] == EPISODES and doc["tasks_reused"] == 0
        first = {o.path: o.checksum for o in client.list_objects(REPO, f"{source['branch']}-h264", out)}
        again = {o.path: o.checksum for o in client.list_objects(REPO, branch, out)}
        assert len(first) == EPISODES and again == first
