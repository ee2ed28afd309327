"""The synthetic UMI generator at the tiny profile: determinism, physics, files, formats."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from imagecodecs.numcodecs import register_codecs

from robolake.errors import ConfigError
from robolake.umi import PROFILES, Manifest, generate_dataset, probe_mp4, validate_replay_buffer
from robolake.umi.episode import (
    FPS,
    GRIPPER_MAX_WIDTH_M,
    forward_kinematics,
    matrix_from_quat,
    synthesize_episode,
)
from robolake.umi.generator import _plan
from robolake.umi.video import decode_frame

SEED = 11


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest, list[tuple[int, int]]]:
    out = tmp_path_factory.mktemp("umi") / "ds"
    calls: list[tuple[int, int]] = []
    manifest = generate_dataset(
        out,
        profile="tiny",
        seed=SEED,
        experiments=True,
        workers=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    return out, manifest, calls


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- determinism and manifest


def test_same_seed_gives_byte_identical_files(
    dataset: tuple[Path, Manifest, list[tuple[int, int]]], tmp_path: Path
) -> None:
    out, _, _ = dataset
    again = tmp_path / "again"
    generate_dataset(again, profile="tiny", seed=SEED, experiments=True, workers=1)  # other thread count, too
    first, second = _tree(out), _tree(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_other_seed_gives_other_data(dataset: tuple[Path, Manifest, list[tuple[int, int]]], tmp_path: Path) -> None:
    _, manifest, _ = dataset
    other = generate_dataset(tmp_path / "other", profile="tiny", seed=SEED + 1, workers=2)
    digests = {f.path: f.sha256 for f in manifest.files}
    for f in other.files:
        assert digests[f.path] != f.sha256, f.path
    assert other.camera_serial != manifest.camera_serial


def test_manifest_lists_every_file_with_size_and_digest(dataset: tuple[Path, Manifest, list[tuple[int, int]]]) -> None:
    out, manifest, calls = dataset
    on_disk = {k for k in _tree(out) if k != "manifest.json"}
    assert {f.path for f in manifest.files} == on_disk
    for f in manifest.files:
        data = (out / f.path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f.size_bytes, f.sha256)
    assert Manifest.load(out / "manifest.json") == manifest
    assert (manifest.seed, manifest.profile, manifest.episodes, manifest.schema_version) == (SEED, "tiny", 2, 1)
    expected = {"replay_buffer/dataset.zarr.zip", "configs/experiment_000.yaml"}
    for i in range(2):
        expected |= {f"pose/episode_{i:05d}.json", f"gripper/episode_{i:05d}.json", f"video/episode_{i:05d}.mp4"}
    assert expected <= on_disk
    assert calls == [(0, 2), (1, 2), (2, 2)]


def test_refuses_a_foreign_directory_and_replaces_its_own(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        generate_dataset(tmp_path, profile="tiny", episodes=1)
    with pytest.raises(ConfigError, match="profile 'huge'"):
        generate_dataset(tmp_path / "x", profile="huge")
    out = tmp_path / "ds"
    generate_dataset(out, profile="tiny", episodes=2, seed=3)
    manifest = generate_dataset(out, profile="tiny", episodes=1, seed=3)
    assert {f.path for f in manifest.files} == {k for k in _tree(out) if k != "manifest.json"}


def test_a_rerun_with_the_same_parameters_rewrites_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = generate_dataset(out, profile="tiny", episodes=1, seed=5)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert generate_dataset(out, profile="tiny", episodes=1, seed=5) == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    with_configs = generate_dataset(out, profile="tiny", episodes=1, seed=5, experiments=True)
    added = {f.path for f in with_configs.files} - {f.path for f in first.files}
    assert added and all(a.startswith("configs/") for a in added)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.name != "manifest.json")
    (out / "pose" / "episode_00000.json").write_text("{}")  # damaged: generated again
    again = generate_dataset(out, profile="tiny", episodes=1, seed=5, experiments=True)
    assert again == with_configs and _tree(out)["pose/episode_00000.json"] != b"{}"
    (out / "mine.txt").write_text("keep me")  # something of the user's: refused, kept
    with pytest.raises(ConfigError, match=r"'mine\.txt', which robolake did not write"):
        generate_dataset(out, profile="tiny", episodes=1, seed=6)
    assert (out / "mine.txt").read_text() == "keep me"


# ---------------------------------------------------------------- physics


def test_trajectories_are_smooth_and_consistent() -> None:
    ep = synthesize_episode(SEED, 0, 420)  # a 7 s demonstration
    dt_s = 1.0 / FPS
    assert np.allclose(np.diff(ep.timestamps_s), 1001 / 60000)
    vel = np.diff(ep.eef_pos_m, axis=0) / dt_s
    acc = np.diff(vel, axis=0) / dt_s
    jerk = np.diff(acc, axis=0) / dt_s
    assert np.linalg.norm(vel, axis=1).max() < 1.5  # m/s: a person's hand
    assert np.linalg.norm(acc, axis=1).max() < 15.0  # m/s^2
    assert np.linalg.norm(jerk, axis=1).max() < 400.0  # m/s^3: minimum-jerk segments, no steps
    rots = matrix_from_quat(ep.eef_quat_xyzw)
    rel = np.einsum("nij,nkj->nik", rots[1:], rots[:-1])
    ang_vel = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)) / dt_s
    assert ang_vel.max() < 3.0  # rad/s
    assert np.abs(np.diff(ep.eef_rotvec, axis=0)).max() < 0.1  # rotation vectors never flip
    assert np.abs(np.diff(ep.joint_positions_rad, axis=0)).max() / dt_s < math.pi  # UR5e: 180 deg/s
    for i in range(0, ep.n_frames, 37):
        pos, rot = forward_kinematics(ep.joint_positions_rad[i])
        assert np.allclose(pos, ep.eef_pos_m[i], atol=1e-6) and np.allclose(rot, rots[i], atol=1e-6)
    names = [p.name for p in ep.phases]
    assert names == ["approach", "descend", "grasp", "lift", "transport", "place", "release", "retreat"]


def test_gripper_opens_closes_and_grips() -> None:
    ep = synthesize_episode(SEED, 1, 420)
    width, force = ep.gripper_width_m, ep.grip_force_n
    assert width.min() >= 0.0 and width.max() <= GRIPPER_MAX_WIDTH_M
    diameter = 2 * ep.scene.object_radius_m
    closed = width < diameter
    opened = width > 0.075
    # open -> closed on the cup -> open again
    first_open = int(np.argmax(opened))
    first_closed = first_open + int(np.argmax(closed[first_open:]))
    assert first_closed > first_open and opened[first_closed:].any()
    assert force[opened].max() == 0.0  # no force with open fingers
    assert 10.0 < np.median(force[closed & (np.arange(ep.n_frames) > first_open)]) < 30.0  # newtons
    held = ep.object_pos_m[:, 2] > 0.01
    assert held.any() and np.all(closed[held])  # the cup only leaves the table between closed fingers


# ---------------------------------------------------------------- files and formats


def test_replay_buffer_opens_with_zarr2_as_umi_does(dataset: tuple[Path, Manifest, list[tuple[int, int]]]) -> None:
    out, manifest, _ = dataset
    path = out / "replay_buffer" / "dataset.zarr.zip"
    register_codecs(verbose=False)
    root = zarr.open_group(zarr.ZipStore(str(path), mode="r"), mode="r")
    n = manifest.frames_total
    expect = {
        "camera0_rgb": ((n, 224, 224, 3), np.uint8),
        "robot0_eef_pos": ((n, 3), np.float32),
        "robot0_eef_rot_axis_angle": ((n, 3), np.float32),
        "robot0_gripper_width": ((n, 1), np.float32),
        "robot0_demo_start_pose": ((n, 6), np.float64),
        "robot0_demo_end_pose": ((n, 6), np.float64),
    }
    assert sorted(root["data"].keys()) == sorted(expect)
    poses = [json.loads((out / f"pose/episode_{i:05d}.json").read_text()) for i in range(manifest.episodes)]
    lengths = [p["frame_count"] for p in poses]
    assert list(root["meta/episode_ends"][:]) == list(np.cumsum(lengths))
    for name, (shape, dtype) in expect.items():
        arr = root["data"][name]
        assert (arr.shape, arr.dtype) == (shape, dtype), name
        if name == "camera0_rgb":
            assert arr.chunks == (1, 224, 224, 3) and arr.compressor.codec_id == "imagecodecs_jpegxl"
        else:
            assert arr.chunks == (lengths[0], *shape[1:]) and arr.compressor is None
    pos = root["data/robot0_eef_pos"][:]
    assert np.allclose(pos, np.concatenate([p["eef_position_m"] for p in poses]), atol=1e-5)
    start = root["data/robot0_demo_start_pose"][:]
    assert np.all(start[: lengths[0]] == start[0]) and not np.all(start[lengths[0]] == start[0])
    for i in (0, n // 2, n - 1):
        frame = root["data/camera0_rgb"][i]
        assert frame.std() > 20 and len(np.unique(frame.reshape(-1, 3), axis=0)) > 1000
    info = validate_replay_buffer(path)
    assert info.n_steps == n and info.all_entries_stored


def test_videos_are_h264_with_gopro_metadata(dataset: tuple[Path, Manifest, list[tuple[int, int]]]) -> None:
    out, manifest, _ = dataset
    prof = PROFILES["tiny"]
    starts = []
    for i in range(manifest.episodes):
        frames = json.loads((out / f"pose/episode_{i:05d}.json").read_text())["frame_count"]
        info = probe_mp4(out / f"video/episode_{i:05d}.mp4", count_frames=True)
        assert (info.codec, info.width, info.height) == ("h264", prof.video_width, prof.video_height)
        assert info.frame_count == frames
        assert math.isclose(info.duration_s, frames / FPS, abs_tol=1.5 / FPS)
        assert float(info.rate) == pytest.approx(FPS)
        assert info.camera_serial == manifest.camera_serial and info.camera_serial.startswith("C3441")
        assert info.creation_time is not None and info.creation_time.endswith(".000000Z")
        assert info.comment is not None and f"seed {SEED}" in info.comment
        starts.append(info.start_datetime())
        assert decode_frame(out / f"video/episode_{i:05d}.mp4", 0).std() > 20
    # UMI's rule (creation date + non-drop timecode at a nominal 60) gives back the seed's start times.
    planned = _plan(SEED, prof, manifest.episodes).start_times
    for got, want in zip(starts, planned, strict=True):
        assert abs((got - want).total_seconds()) <= 1 / FPS
    assert starts[0].year == 2024 and starts[1] - starts[0] > dt.timedelta(seconds=1)


def test_episode_files_and_configs(dataset: tuple[Path, Manifest, list[tuple[int, int]]]) -> None:
    out, _, _ = dataset
    pose = json.loads((out / "pose/episode_00000.json").read_text())
    grip = json.loads((out / "gripper/episode_00000.json").read_text())
    t = pose["frame_count"]
    assert PROFILES["tiny"].min_frames <= t <= PROFILES["tiny"].max_frames
    assert len(pose["joint_positions_rad"]) == t and len(pose["joint_positions_rad"][0]) == 6
    assert len(pose["eef_quaternion_xyzw"][0]) == 4 and len(pose["eef_rot_axis_angle"][0]) == 3
    assert grip["timestamps_s"] == pose["timestamps_s"] and len(grip["width_m"]) == len(grip["force_n"]) == t
    config = yaml.safe_load((out / "configs/experiment_001.yaml").read_text())
    assert {"task", "gripper", "camera", "policy", "training"} <= config.keys()
    assert config["camera"]["observation"]["width"] == 224
    assert config["task"]["dataset_path"] == "replay_buffer/dataset.zarr.zip"
