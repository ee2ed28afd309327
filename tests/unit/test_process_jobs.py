"""robolake.processing's pure parts: frames, staged-result format, keys, options, errors, the inline engine."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from robolake.errors import ConfigError
from robolake.processing.engine import EngineOptions, open_engine, require_dask
from robolake.processing.errors import EngineMissingError, TaskFailedError
from robolake.processing.frames import (
    ReplayBufferParams,
    encode_video,
    gripper_mask,
    lowdim_arrays,
    observation,
    pack,
    staged_key,
    unpack,
)
from robolake.processing.inputs import InputObject, RawEpisode, params_hash
from robolake.processing.replay_buffer import check_output, default_output, job_key
from robolake.umi import generate_dataset
from robolake.umi.errors import DatasetFormatError


def _obj(name: str, sha: str = "ab") -> InputObject:
    return InputObject(name, f"s3://b/{name}", 10, f"sha256:{sha}", sha)


def _episode(index: int = 0, sha: str = "ab") -> RawEpisode:
    return RawEpisode(index, _obj("p", sha), _obj("g"), _obj("v"))


def test_the_gripper_mask_is_a_trapezoid_at_the_bottom_centre() -> None:
    mask = gripper_mask(224)
    assert mask[:190].sum() == 0 and mask[-1, 112] and not mask[-1, 0] and not mask[-1, 223]
    assert mask[-1].sum() > mask[195].sum() > 0  # wider at the bottom
    assert np.array_equal(mask[:, :112], mask[:, 112:][:, ::-1])  # symmetric


def test_an_observation_is_the_centre_square_resized_and_masked() -> None:
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    image[:, 20:140] = 200  # the centre square is bright, the sides dark
    out = observation(image, ReplayBufferParams())
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out[10, 10].tolist() == [200, 200, 200] and out[-1, 112].tolist() == [0, 0, 0]
    unmasked = observation(image, ReplayBufferParams(mask_gripper=False, image_size=96))
    assert unmasked.shape == (96, 96, 3) and unmasked[-1, 48].tolist() == [200, 200, 200]


def test_a_video_encodes_to_one_jpegxl_frame_per_video_frame(tmp_path: Path) -> None:
    manifest = generate_dataset(tmp_path, profile="tiny", seed=1, episodes=1)
    chunks = encode_video(tmp_path / "video" / "episode_00000.mp4", ReplayBufferParams(), "v")
    assert len(chunks) == manifest.frames_total
    frame = imagecodecs.jpegxl_decode(chunks[0])
    assert frame.shape == (224, 224, 3) and frame.std() > 5.0
    with pytest.raises(DatasetFormatError, match="does not decode"):
        (tmp_path / "bad.mp4").write_bytes(b"not a video")
        encode_video(tmp_path / "bad.mp4", ReplayBufferParams(), "bad.mp4")


def test_staged_results_round_trip_byte_for_byte() -> None:
    lowdim = {"robot0_eef_pos": np.arange(6, dtype=np.float32).reshape(2, 3), "x": np.ones((2, 6))}
    chunks = [b"abc", b"", b"defgh"]
    got, frames = unpack(pack(lowdim, chunks), "s")
    assert frames == chunks and set(got) == set(lowdim)
    assert all(np.array_equal(got[k], v) and got[k].dtype == v.dtype for k, v in lowdim.items())
    assert pack(lowdim, chunks) == pack(lowdim, chunks)
    with pytest.raises(DatasetFormatError, match="not a staged episode"):
        unpack(b"garbage", "s")


def test_lowdim_arrays_follow_umis_dtypes_and_refuse_bad_files() -> None:
    pose = {"frame_count": 2, "eef_position_m": [[1, 2, 3], [4, 5, 6]], "eef_rot_axis_angle": [[0, 0, 1], [0, 1, 0]]}
    arrays = lowdim_arrays(pose, {"width_m": [0.05, 0.06]}, _episode())
    assert arrays["robot0_eef_pos"].dtype == np.float32 and arrays["robot0_gripper_width"].shape == (2, 1)
    assert arrays["robot0_demo_start_pose"].dtype == np.float64
    assert arrays["robot0_demo_end_pose"].tolist() == [[4, 5, 6, 0, 1, 0]] * 2
    with pytest.raises(DatasetFormatError, match=r"'width_m' is \[1, 1\]"):
        lowdim_arrays(pose, {"width_m": [0.05]}, _episode())
    with pytest.raises(DatasetFormatError, match="frame_count"):
        lowdim_arrays({**pose, "frame_count": 0}, {"width_m": []}, _episode())


def test_keys_change_with_content_and_parameters_only() -> None:
    a, b = ReplayBufferParams(), ReplayBufferParams(image_size=192)
    assert params_hash(a.as_dict()) == params_hash(ReplayBufferParams().as_dict()) != params_hash(b.as_dict())
    digest = params_hash(a.as_dict())
    assert staged_key(digest, _episode(0)) == staged_key(digest, _episode(0))
    assert staged_key(digest, _episode(0)) != staged_key(digest, _episode(0, sha="cd"))
    out = default_output("datasets/cup")
    assert out == "datasets/cup/processed/replay_buffer/dataset.zarr.zip"
    assert job_key([_episode()], digest, out) != job_key([_episode(sha="cd")], digest, out)
    assert job_key([_episode()], digest, out) != job_key([_episode()], digest, "other.zarr.zip")


def test_bad_options_are_refused_with_the_value() -> None:
    for options, text in (
        (EngineOptions(scheduler="localhost:8786"), "is not tcp://HOST:PORT"),
        (EngineOptions(workers=0), "--workers 0"),
        (EngineOptions(inline=True, scheduler="tcp://127.0.0.1:1"), "exclude each other"),
    ):
        with pytest.raises(ConfigError, match=text):
            options.check()
    with pytest.raises(ConfigError, match="must name a"):
        check_output("out/buffer.txt")
    with pytest.raises(ConfigError):
        check_output("../up.zarr.zip")


def test_task_errors_survive_pickling_with_their_exit_code() -> None:
    err = pickle.loads(pickle.dumps(TaskFailedError("episode 3: bad", 3)))
    assert isinstance(err, TaskFailedError) and str(err) == "episode 3: bad" and err.exit_code == 3


def test_missing_dask_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(EngineMissingError, match=r"pip install 'robolake\[dask\]'"):
        require_dask()


def test_the_inline_engine_runs_tasks_in_order() -> None:
    with open_engine(EngineOptions(inline=True)) as engine:
        assert engine.client is None and engine.dashboard is None
        assert list(engine.map(lambda x: x * 2, [1, 2, 3], str)) == [(1, 2), (2, 4), (3, 6)]


def test_videos_are_read_through_the_accelerator_or_from_the_nodes_in_turn(tmp_path: Path) -> None:
    from robolake.config import Settings
    from robolake.processing.replay_buffer import video_targets

    settings = Settings.load(environ={}, env_file=Path("/nonexistent"), state_dir=tmp_path, cache_dir=tmp_path)
    assert video_targets(settings, "accelerator") == [None]  # None: the task's own target, the accelerator
    nodes = video_targets(settings, "nodes")
    assert [t.endpoint for t in nodes if t] == settings.minio_endpoints and len(nodes) == 3
    with pytest.raises(ConfigError, match="--read-from 'disk'"):
        video_targets(settings, "disk")


def test_auto_reads_a_video_over_one_mib_from_a_node_and_a_smaller_one_through_the_accelerator(
    tmp_path: Path,
) -> None:
    from robolake.config import Settings
    from robolake.processing.replay_buffer import NODES_ABOVE_BYTES, video_target, video_targets

    settings = Settings.load(environ={}, env_file=Path("/nonexistent"), state_dir=tmp_path, cache_dir=tmp_path)
    nodes = video_targets(settings, "auto")

    def episode(size: int) -> RawEpisode:
        return RawEpisode(0, _obj("p"), _obj("g"), InputObject("v", "s3://b/v", size, "sha256:ab", "ab"))

    assert video_target(episode(NODES_ABOVE_BYTES), nodes, "auto", 0) is None
    assert video_target(episode(NODES_ABOVE_BYTES + 1), nodes, "auto", 4) == nodes[1]
    assert video_target(episode(10), nodes, "nodes", 2) == nodes[2]
