"""The LeRobot v3.0 format without lerobot: our writer's folders, the checks that refuse broken ones,
the statistics, and the resampling of UMI's 59.94 Hz steps to a whole-number fps.

Whether lerobot itself reads what we write (and we read what it writes) is tests/e2e/test_lerobot.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robolake.errors import ConfigError
from robolake.ingest.lerobot import Feature, check_folder, is_lerobot_folder
from robolake.ingest.lerobot_write import (
    LeRobotWriter,
    VideoCodec,
    aggregate_stats,
    feature_stats,
    image_stats,
    sampled_frames,
)
from robolake.ingest.sources import detect_kind
from robolake.ml.lerobot_export import SOURCE_RATE, ExportOptions, error_bound_s, resample_steps, time_errors
from robolake.umi.errors import DatasetFormatError

LENGTHS = (9, 14)


def _write(root: Path, lengths: tuple[int, ...] = LENGTHS, **options: object) -> Path:
    features = [
        Feature("observation.state", "float32", (3,), ["x", "y", "z"]),
        Feature("observation.images.cam", "video", (16, 24, 3), ["height", "width", "channels"]),
    ]
    writer = LeRobotWriter(root, fps=10, features=features, video=VideoCodec.h264(), **options)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    for e, n in enumerate(lengths):
        frames = (np.full((16, 24, 3), (15 * i + 40 * e) % 256, dtype=np.uint8) for i in range(n))
        state = rng.standard_normal((n, 3)).astype(np.float32)
        writer.add_episode({"observation.state": state}, {"observation.images.cam": frames}, f"task {e % 2}")
    writer.finish("test")
    return root


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("lerobot") / "ds")


@pytest.fixture
def folder(written: Path, tmp_path: Path) -> Path:
    """A fresh copy to break."""
    return Path(shutil.copytree(written, tmp_path / "ds"))


def _info(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / "meta/info.json").read_text())


def _set_info(folder: Path, **changes: object) -> None:
    (folder / "meta/info.json").write_text(json.dumps({**_info(folder), **changes}))


def test_what_the_writer_writes_passes_the_check(written: Path) -> None:
    checked = check_folder(written)
    info = checked.info
    assert (info.fps, info.total_episodes, info.total_frames, info.total_tasks) == (10, 2, sum(LENGTHS), 2)
    assert info.video_keys == ["observation.images.cam"] and checked.tasks == ("task 0", "task 1")
    assert [(e.index, e.length, e.from_index, e.to_index) for e in checked.episodes] == [(0, 9, 0, 9), (1, 14, 9, 23)]
    file, t0, t1 = checked.episodes[1].videos["observation.images.cam"]
    assert file == "videos/observation.images.cam/chunk-000/file-000.mp4" and (t0, t1) == (0.9, 2.3)
    assert "meta/stats.json" in checked.files and is_lerobot_folder(written) and detect_kind(written) == "lerobot"
    data = pq.read_table(written / "data/chunk-000/file-000.parquet")
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 3)
    assert data.column("timestamp").to_pylist()[9:11] == [0.0, pytest.approx(0.1)]
    tasks = pq.read_table(written / "meta/tasks.parquet")
    assert tasks.to_pylist() == [
        {"task_index": 0, "__index_level_0__": "task 0"},
        {"task_index": 1, "__index_level_0__": "task 1"},
    ]
    stats = json.loads((written / "meta/stats.json").read_text())
    assert stats["observation.state"]["count"] == [23] and len(stats["observation.images.cam"]["mean"]) == 3


def test_files_roll_over_between_episodes_and_chunks(tmp_path: Path) -> None:
    """Tiny size limits: every episode opens a new data and video file, two files per chunk folder."""
    checked = check_folder(_write(tmp_path / "ds", (4, 5, 6), chunks_size=2, file_mb=(1e-6, 1e-6)))
    assert [e.data_file for e in checked.episodes] == [
        "data/chunk-000/file-000.parquet",
        "data/chunk-000/file-001.parquet",
        "data/chunk-001/file-000.parquet",
    ]
    videos = [e.videos["observation.images.cam"] for e in checked.episodes]
    assert [v[0].split("/", 2)[2] for v in videos] == [
        "chunk-000/file-000.mp4",
        "chunk-000/file-001.mp4",
        "chunk-001/file-000.mp4",
    ]
    assert [(v[1], v[2]) for v in videos] == [(0.0, 0.4), (0.0, 0.5), (0.0, 0.6)]  # each file starts at 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"codebase_version": "v3.0", "fps": 10,', "is not valid JSON"),
        ("[1, 2]", "holds a JSON list, expected an object"),
    ],
)
def test_a_broken_info_json_is_one_line(folder: Path, text: str, problem: str) -> None:
    (folder / "meta/info.json").write_text(text)
    with pytest.raises(DatasetFormatError) as err:
        check_folder(folder)
    message = str(err.value)
    assert message.startswith(str(folder / "meta/info.json")) and problem in message and "\n" not in message


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"fps": 29.97}, "fps is 29.97, expected a positive whole number"),
        ({"fps": "30"}, "fps is '30'"),
        ({"fps": 0}, "fps is 0"),
        ({"codebase_version": "v2.1"}, "codebase_version is 'v2.1', expected 'v3.0'; convert it first"),
        ({"total_frames": 24}, "episode lengths add up to 23 frames, meta/info.json says total_frames = 24"),
        ({"total_episodes": 3}, "lists 2 episodes, meta/info.json says total_episodes = 3"),
        ({"total_tasks": 1}, "holds 2 tasks, meta/info.json says total_tasks = 1"),
        ({"total_frames": -1}, "total_frames is -1 (int), expected a whole number >= 0"),
        ({"features": {}}, "features is missing or empty"),
        ({"data_path": "../{chunk_index}"}, "data_path is '../{chunk_index}'"),
    ],
)
def test_bad_info_fields_name_the_field(folder: Path, changes: dict[str, object], problem: str) -> None:
    _set_info(folder, **changes)
    with pytest.raises(DatasetFormatError, match="^.*" + problem.replace("(", r"\(").replace(")", r"\)")):
        check_folder(folder)


def test_a_feature_without_its_frame_columns_is_refused(folder: Path) -> None:
    features = _info(folder)["features"]
    del features["task_index"]
    _set_info(folder, features=features)
    with pytest.raises(DatasetFormatError, match=r"feature 'task_index' is missing, every v3\.0 dataset has it"):
        check_folder(folder)


VIDEO = "videos/observation.images.cam/chunk-000/file-000.mp4"


@pytest.mark.parametrize(
    ("remove", "named", "problem"),
    [
        ("data/chunk-000/file-000.parquet", None, "is missing, but meta/episodes places episode 0 in it"),
        (VIDEO, None, "is missing, but meta/episodes places episode 1 in it"),
        ("meta/tasks.parquet", None, "no such file"),
        ("meta/episodes/chunk-000/file-000.parquet", "meta/episodes", "holds no episode files"),
    ],
)
def test_a_missing_file_is_named(folder: Path, remove: str, named: str | None, problem: str) -> None:
    (folder / remove).unlink()
    with pytest.raises(DatasetFormatError) as err:
        check_folder(folder)
    assert str(err.value).startswith(f"{folder / (named or remove)}: {problem}"), str(err.value)


def test_rows_that_disagree_with_the_episodes_are_refused(folder: Path) -> None:
    data = folder / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data)
    pq.write_table(table.slice(0, table.num_rows - 1), data)
    with pytest.raises(DatasetFormatError, match=r"holds 22 frames, its episodes 0\.\.1 have 23 by meta/episodes"):
        check_folder(folder)


def test_frames_filed_under_the_wrong_episode_are_refused(folder: Path) -> None:
    data = folder / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data)
    episodes = table.column("episode_index").to_pylist()
    episodes[9] = 0  # the first frame of episode 1, filed under episode 0
    column = table.schema.get_field_index("episode_index")
    pq.write_table(table.set_column(column, "episode_index", pa.array(episodes, pa.int64())), data)
    with pytest.raises(DatasetFormatError, match="holds 10 frames of episode 0, meta/episodes says 9"):
        check_folder(folder)


def test_a_stray_data_file_is_refused(folder: Path) -> None:
    shutil.copy(folder / "data/chunk-000/file-000.parquet", folder / "data/chunk-000/file-001.parquet")
    with pytest.raises(DatasetFormatError, match=r"file-001\.parquet: is named by no episode"):
        check_folder(folder)


def test_a_video_shorter_than_its_episodes_is_refused(folder: Path, tmp_path: Path) -> None:
    short = _write(tmp_path / "short", (9, 5))
    shutil.copy(short / VIDEO, folder / VIDEO)
    with pytest.raises(DatasetFormatError, match=r"holds 14 frames \(1.400 s\), but episode 1 ends at 2.300 s"):
        check_folder(folder)


def test_a_bad_parquet_file_is_named(folder: Path) -> None:
    (folder / "meta/tasks.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DatasetFormatError, match=r"tasks.parquet: is not a readable parquet file \(Arrow"):
        check_folder(folder)


# ---- statistics ----------------------------------------------------------------------------


def test_stats_of_episodes_aggregate_to_the_stats_of_all_frames() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 4)) * (1 + i) + i for i, n in enumerate((5, 40, 13))]
    agg = aggregate_stats([{"x": feature_stats(p)} for p in parts])["x"]
    whole = feature_stats(np.concatenate(parts))
    for key in ("min", "max", "mean", "std", "count"):
        np.testing.assert_allclose(agg[key], whole[key], rtol=1e-12)
    scalar = feature_stats(np.arange(6, dtype=np.int64))
    assert scalar["mean"].shape == (1,) and scalar["min"].tolist() == [0] and scalar["q50"].tolist() == [2.5]


def test_image_stats_are_exact_per_channel_and_sample_as_lerobot_does() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (6, 20, 30, 3), dtype=np.uint8)
    frames[..., 1] = 17
    stats = image_stats(frames)
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255
    for key in ("min", "max", "mean", "std", "q01", "q10", "q50", "q90", "q99"):
        assert stats[key].shape == (3, 1, 1)
        np.testing.assert_allclose(stats[key].ravel(), feature_stats(pixels)[key], atol=1e-12)
    assert stats["count"].tolist() == [6]
    assert sampled_frames(40).tolist() == list(range(40)) and len(sampled_frames(5000)) == int(5000**0.75)
    assert sampled_frames(5000)[[0, -1]].tolist() == [0, 4999]


# ---- time ----------------------------------------------------------------------------------


def _nearest_by_fractions(n: int, fps: int) -> list[int]:
    """The definition, in exact arithmetic: every output time i/fps up to the last step's, its nearest step."""
    out, i = [], 0
    while Fraction(i, fps) <= Fraction(n - 1) / SOURCE_RATE:
        out.append(math.floor(Fraction(i, fps) * SOURCE_RATE + Fraction(1, 2)))  # halves up
        i += 1
    return out


@pytest.mark.parametrize("fps", [1, 7, 15, 20, 30, 59, 60, 61, 120])
def test_each_frame_takes_the_step_nearest_in_time(fps: int) -> None:
    for n in (1, 2, 3, 61, 466, 1001):
        assert resample_steps(n, fps).tolist() == _nearest_by_fractions(n, fps), (n, fps)


def test_the_time_error_is_bounded_by_half_a_step_and_does_not_drift() -> None:
    bound = error_bound_s()
    assert bound == pytest.approx(1001 / 120000) and bound * 1000 == pytest.approx(8.3417, abs=1e-4)
    for fps in (10, 20, 30, 60, 90):
        steps = resample_steps(100_000, fps)  # half an hour of recording
        errors = time_errors(steps, fps)
        assert errors.max() <= bound + 1e-12
        assert errors[-1000:].max() <= bound + 1e-12  # as small at the end as anywhere


def test_what_60_and_20_fps_keep() -> None:
    at60 = resample_steps(2000, 60)
    assert at60[:500].tolist() == list(range(500))  # one for one at first
    assert np.all(np.diff(at60) <= 1) and int(np.sum(np.diff(at60) == 0)) == 2  # then one step in 1000 shown twice
    at20 = resample_steps(2000, 20)
    assert set(np.diff(at20).tolist()) == {2, 3} and int(np.sum(np.diff(at20) == 2)) == 2  # every 3rd, 2 once in 333
    assert len(resample_steps(66, 20)) == 22 and len(resample_steps(66, 60)) == 66


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (ExportOptions(fps=0), "fps 0 must be a whole number"),
        (ExportOptions(action="later"), "action 'later' is not one of"),
        (ExportOptions(codec="vp9"), "video codec 'vp9' is not"),
        (ExportOptions(task=" "), "task text must not be empty"),
    ],
)
def test_export_options_are_checked(options: ExportOptions, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        options.check()


# SVT-AV1 run as root makes its threads and the one that opens it SCHED_FIFO 99: the encoder then
# starves the machine, and everything the process starts later inherits it (found when MinIO
# nodes started after an AV1 export spun at real-time priority and froze a 2-core machine).
_SCHEDULING_AFTER_AV1 = r"""
import os, sys
from pathlib import Path
import numpy as np
from robolake.ingest.lerobot_write import VideoCodec, VideoFile
from robolake.processing.transcode import TranscodeParams, transcode_file
out = Path(sys.argv[1])
video = VideoFile(out / "a.mp4", 10, 64, 48, VideoCodec.av1())
for i in range(3):
    video.add(np.full((48, 64, 3), 40 * i, np.uint8))
during = {int(t): os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}
video.close()
transcode_file(out / "a.mp4", out / "b.mp4", TranscodeParams(codec="av1", width=32, height=24), "a.mp4")
after = os.sched_getscheduler(0)
print(sorted(set(during.values())), after)
"""


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="scheduling policies are Linux's")
def test_av1_encoding_leaves_no_thread_real_time(tmp_path: Path) -> None:
    import av

    if "libsvtav1" not in av.codecs_available:
        pytest.skip("this PyAV build has no libsvtav1 encoder")
    if os.geteuid() != 0:
        pytest.skip("SVT-AV1 changes scheduling only when run as root")
    done = subprocess.run(
        [sys.executable, "-c", _SCHEDULING_AFTER_AV1, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == f"[{os.SCHED_OTHER}] {os.SCHED_OTHER}", done.stdout
