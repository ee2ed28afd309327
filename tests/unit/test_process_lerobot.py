"""`process lerobot`'s pure parts: per-episode segments remuxed into LeRobot's video files, keys, staged format."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from robolake.errors import ConfigError
from robolake.ingest.lerobot import Feature, check_folder
from robolake.ingest.lerobot_write import LeRobotWriter, VideoCodec
from robolake.processing.lerobot import SegmentWriter, default_output
from robolake.processing.lerobot_parts import (
    CameraPart,
    LeRobotParams,
    Part,
    _pack,
    encode_segment,
    part_identity,
    unpack_part,
)
from robolake.umi.zarr_store import ArrayInfo

FPS = 20
KEY = "observation.images.camera0"
LENGTHS = (7, 12, 5)  # odd lengths: the serial writer's keyframes fall mid-episode


def _frames(episode: int, n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        image = np.zeros((48, 64, 3), dtype=np.uint8)
        image[:, :, 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :]
        image[10:30, (5 * i) % 40 : (5 * i) % 40 + 16, 1] = 200 - 40 * episode
        out.append(image)
    return out


def _columns(episode: int, n: int) -> dict[str, np.ndarray]:
    state = (np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 100 * episode) / 7
    return {"observation.state": state, "action": state}


FEATURES = [
    Feature("observation.state", "float32", (2,), ["a", "b"]),
    Feature("action", "float32", (2,), ["a", "b"]),
    Feature(KEY, "video", (48, 64, 3), ["height", "width", "channels"]),
]


def _decoded(path: Path) -> tuple[list[np.ndarray], list[int], list[bool]]:
    frames, pts, keys = [], [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is not None:
                keys.append(bool(packet.is_keyframe))
            for frame in packet.decode():
                frames.append(frame.to_ndarray(format="rgb24"))
                pts.append(round(float(frame.pts * frame.time_base * FPS)))
    return frames, pts, keys


def test_remuxed_segments_give_the_serial_writers_dataset_but_for_codec_noise(tmp_path: Path) -> None:
    codec = VideoCodec.h264()
    serial = LeRobotWriter(tmp_path / "serial", fps=FPS, features=FEATURES, video=codec)
    parts = SegmentWriter(tmp_path / "parts", fps=FPS, features=FEATURES, video=codec)
    for episode, n in enumerate(LENGTHS):
        frames = _frames(episode, n)
        serial.add_episode(_columns(episode, n), {KEY: frames}, "t")
        segment = tmp_path / f"segment-{episode}.mp4"
        stats = encode_segment(iter(frames), n, segment, FPS, codec, (48, 64, 3))
        parts.add_part(_columns(episode, n), Part({KEY: segment.read_bytes()}, {KEY: stats}), "t")
    serial.finish("umi")
    parts.finish("umi")
    check_folder(tmp_path / "parts")
    a, b = tmp_path / "serial", tmp_path / "parts"
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for name in files:
        if name.endswith(".parquet"):
            assert pq.read_table(a / name).equals(pq.read_table(b / name)), name
        elif name.endswith(".json"):
            assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name
    (video,) = [n for n in files if n.endswith(".mp4")]
    want, want_pts, _ = _decoded(a / video)
    got, got_pts, keys = _decoded(b / video)
    assert len(got) == len(want) == sum(LENGTHS) and got_pts == want_pts == list(range(sum(LENGTHS)))
    starts = np.cumsum([0, *LENGTHS[:-1]])
    assert all(keys[s] for s in starts), "every episode starts on a keyframe"
    source = np.concatenate([_frames(e, n) for e, n in enumerate(LENGTHS)]).astype(np.float64)
    for i, (x, y) in enumerate(zip(want, got, strict=True)):
        diff = np.abs(x.astype(np.float64) - y.astype(np.float64)).mean()
        psnr = 10 * np.log10(255**2 / np.mean((y.astype(np.float64) - source[i]) ** 2))
        assert diff < 3.0 and psnr > 25, (i, diff, psnr)


def test_a_part_missing_a_camera_is_refused(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "x", fps=FPS, features=FEATURES, video=VideoCodec.h264())
    with pytest.raises(Exception, match="lacks the videos"):
        writer.add_part(_columns(0, 3), Part({}, {}), "t")


def _entry(name: str, crc: int, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.CRC, info.file_size = crc, size
    return info


def test_a_parts_identity_is_its_frames_content_and_steps() -> None:
    info = ArrayInfo((10, 4, 4, 3), (1, 4, 4, 3), "|u1", "imagecodecs_jpegxl")
    steps = np.array([0, 1, 1, 2])

    def camera(crc: int) -> tuple[CameraPart, ...]:
        return (CameraPart("camera0_rgb", info, (_entry("a", 1, 5), _entry("b", crc, 5))),)

    base = part_identity(steps, camera(2))
    assert base == part_identity(steps.copy(), camera(2))
    assert base != part_identity(steps, camera(3)), "another frame's bytes"
    assert base != part_identity(np.array([0, 1, 2, 2]), camera(2)), "other steps taken"


def test_a_staged_part_round_trips() -> None:
    raw = _pack({"video/camera0_rgb": np.frombuffer(b"\x00mp4", dtype=np.uint8), "stats/camera0_rgb/mean": np.ones(3)})
    part = unpack_part(raw, "s3://x")
    assert part.videos == {KEY: b"\x00mp4"} and part.stats[KEY]["mean"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(Exception, match="is not a staged LeRobot part"):
        unpack_part(b"nonsense", "s3://x")


def test_the_default_output_sits_beside_the_replay_buffer() -> None:
    assert default_output("d/processed/replay_buffer/dataset.zarr.zip") == "d/processed/lerobot/"
    assert default_output("d/buffers/cup.zarr.zip") == "d/buffers/lerobot/"
    assert default_output("cup.zarr.zip") == "lerobot/"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (LeRobotParams(fps=0), "fps 0"),
        (LeRobotParams(action="later"), "action 'later'"),
        (LeRobotParams(codec="vp9"), "codec 'vp9'"),
    ],
)
def test_bad_parameters_are_named(params: LeRobotParams, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        params.check()


def test_the_task_parameters_key_what_a_task_makes() -> None:
    a: dict[str, Any] = LeRobotParams(fps=20).task_params()
    assert a == LeRobotParams(fps=20, action="next", task="x").task_params(), "rows are not a task's"
    assert a != LeRobotParams(fps=30).task_params() and a != LeRobotParams(fps=20, codec="av1").task_params()
