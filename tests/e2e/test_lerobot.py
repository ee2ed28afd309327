"""LeRobot both ways, checked by lerobot 0.4.4 itself in its own virtualenv (tests/sidevenv.py), NO robolake there.

- out: a generated replay buffer committed to lakeFS is exported at that commit with
  `robolake export lerobot`; `LeRobotDataset(repo_id, root=DIR)` loads it with no network, with
  the same episode and frame counts, the exact state values of the UMI steps the export says it
  took, and frames that decode at the right size and look like the source frames;
- in: a dataset made by lerobot's own writer (``LeRobotDataset.create``, ``add_frame``,
  ``save_episode``, ``finalize``; AV1 video, lerobot's default) is ingested with `robolake
  ingest`, read back from the lake at the new commit with `robolake version read`, and lerobot
  reads the same values from the copy as from the original.

Decoding: lerobot's default video backend is torchcodec, which loads FFmpeg's shared libraries
from the system (lerobot's install guide has users install FFmpeg). Where none is installed, the
test lends torchcodec the FFmpeg 7.1 libraries the side virtualenv's PyAV wheel bundles, under
the names torchcodec looks for; lerobot's other backend, PyAV, is checked as well.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robolake.ml.lerobot_export import resample_steps
from robolake.stack.native import NativeStack
from robolake.umi import generate_dataset
from robolake.umi.replay_buffer import open_replay_buffer
from robolake.versioning import LakeFSClient, NotFoundError
from tests.e2e.test_bad_input import ROBOLAKE
from tests.sidevenv import lerobot_python, run_script
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e
BUFFER = "replay_buffer/dataset.zarr.zip"
FPS = 20

# argv: JSON lists of dataset roots, backends ("default" or "pyav") and indices. Prints one JSON line:
# a list with one entry per root and backend, in that order (one interpreter: torch imports once).
LOAD = r"""
import base64, json, sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

def load(root, backend, picks):
    backend = None if backend == "default" else backend
    ds = LeRobotDataset("robolake/check", root=root, video_backend=backend)
    out = {"backend": ds.video_backend, "episodes": ds.num_episodes, "frames": ds.num_frames, "len": len(ds),
           "fps": ds.fps, "video_keys": ds.meta.video_keys, "items": []}
    for i in picks:
        item = ds[i]
        row = {k: item[k].numpy().tolist() for k in ("observation.state", "action", "timestamp", "frame_index",
                                                      "episode_index", "index", "task_index")}
        row["task"] = item["task"]
        for key in ds.meta.video_keys:
            frame = (item[key].numpy() * 255).round().astype(np.uint8)
            row[key] = {"shape": list(frame.shape), "b64": base64.b64encode(frame.tobytes()).decode()}
        out["items"].append(row)
    window = LeRobotDataset("robolake/check", root=root, video_backend=backend,
                            delta_timestamps={"action": [k / ds.fps for k in range(16)]})[picks[0]]
    out["action_window"] = window["action"].numpy().tolist()
    out["action_is_pad"] = window["action_is_pad"].numpy().tolist()
    return out

def stats_gap(root):  # how far meta/stats.json is from lerobot's own compute_episode_stats + aggregate_stats
    from lerobot.datasets.compute_stats import aggregate_stats, compute_episode_stats
    ds = LeRobotDataset("robolake/check", root=root, video_backend="pyav")
    table = ds.hf_dataset.data.table
    keys = [k for k, f in ds.features.items() if f["dtype"] not in ("video", "image", "string")]
    columns = {k: np.asarray(table.column(k).to_pylist()) for k in keys}
    episodes = columns["episode_index"]
    own = aggregate_stats([compute_episode_stats({k: v[episodes == e] for k, v in columns.items()}, ds.features)
                           for e in range(ds.num_episodes)])
    return {k: {s: float(np.max(np.abs(np.asarray(own[k][s], float) - np.asarray(ds.meta.stats[k][s], float))))
                for s in ("min", "max", "mean", "std", "count")} for k in keys}

roots, backends, picks = (json.loads(a) for a in sys.argv[1:4])
out = [load(root, backend, picks) for root in roots for backend in backends]
print(json.dumps({"loaded": out, "stats_gap": stats_gap(roots[0])}))
"""

# argv: dataset root to create. lerobot's own writer; prints one JSON line.
CREATE = r"""
import json, sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
features = {
    "observation.state": {"dtype": "float32", "shape": (6,), "names": [f"joint{i}" for i in range(6)]},
    "action": {"dtype": "float32", "shape": (6,), "names": [f"joint{i}" for i in range(6)]},
    "observation.images.wrist": {"dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]},
}
ds = LeRobotDataset.create("robolake/made-by-lerobot", fps=30, features=features, root=sys.argv[1])
rng = np.random.default_rng(7)
for episode, (length, task) in enumerate([(12, "pick the cup"), (17, "place the cup")]):
    for i in range(length):
        image = np.zeros((48, 64, 3), dtype=np.uint8)
        image[:, : 4 * (i + 1) % 64] = (40 * episode + 60, 10 * i % 255, 200)
        ds.add_frame({"observation.state": rng.standard_normal(6).astype(np.float32),
                      "action": rng.standard_normal(6).astype(np.float32),
                      "observation.images.wrist": image, "task": task})
    ds.save_episode()
ds.finalize()
print(json.dumps({"episodes": ds.num_episodes, "frames": ds.num_frames}))
"""


def _last_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _robolake(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROBOLAKE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _robolake_json(env: dict[str, str], *args: str) -> Any:
    done = _robolake(env, *args, "--json")
    assert done.returncode == 0, f"robolake {' '.join(args)}: exit {done.returncode}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def lerobot_py() -> Path:
    return lerobot_python()


@pytest.fixture(scope="module")
def side_env(lerobot_py: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the side scripts: Hugging Face caches in a temp dir, and FFmpeg for torchcodec.

    torchcodec loads FFmpeg's shared libraries; when the system has none, it gets the ones the
    side virtualenv's PyAV wheel bundles (FFmpeg 7.1), linked under the names torchcodec looks for.
    """
    env = {"HF_HOME": str(tmp_path_factory.mktemp("hf-home")), "HF_HUB_OFFLINE": "1"}
    if run_script(lerobot_py, "from torchcodec.decoders import VideoDecoder").returncode == 0:
        return env
    bundled = next(lerobot_py.parent.parent.glob("lib/python*/site-packages/av.libs"))
    libs = tmp_path_factory.mktemp("ffmpeg-libs")
    for lib in bundled.iterdir():  # the libraries' own dependencies, under their bundled names
        (libs / lib.name).symlink_to(lib)
        stem, _, version = lib.name.partition(".so.")
        base = stem.rsplit("-", 1)[0]
        if base in (
            "libavutil",
            "libavcodec",
            "libavformat",
            "libavdevice",
            "libavfilter",
            "libswscale",
            "libswresample",
        ):
            (libs / f"{base}.so.{version.split('.')[0]}").symlink_to(lib)
    return {**env, "LD_LIBRARY_PATH": str(libs)}


def _side(lerobot_py: Path, env: dict[str, str], mp: pytest.MonkeyPatch, script: str, *args: str) -> Any:
    """Run `script` in the lerobot virtualenv (isolated, no robolake) with `env`; its last stdout line as JSON."""
    with mp.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        return _last_json(run_script(lerobot_py, script, *args))


BACKENDS = ["default", "pyav"]  # lerobot's default (torchcodec) and its PyAV backend


def _load(lerobot_py: Path, env: dict[str, str], mp: pytest.MonkeyPatch, roots: list[Path], picks: list[int]) -> Any:
    """What lerobot reads at `picks` from each root with each of BACKENDS ("loaded", root-major), and
    "stats_gap": per feature and stat, how far the first root's stats.json is from lerobot's own."""
    args = (json.dumps([str(r) for r in roots]), json.dumps(BACKENDS), json.dumps(picks))
    return _side(lerobot_py, env, mp, LOAD, *args)


@pytest.fixture
def branches(stack: NativeStack) -> Iterator[tuple[LakeFSClient, list[str]]]:
    made: list[str] = []
    with LakeFSClient.from_settings(stack.settings) as lakefs:
        yield lakefs, made
        for name in made:
            with contextlib.suppress(NotFoundError):
                lakefs.delete_branch(stack.settings.lakefs_repo, name)


def _branch(lakefs: LakeFSClient, made: list[str], repo: str, label: str) -> str:
    name = f"t-lerobot-{label}-{uuid.uuid4().hex[:8]}"
    lakefs.create_branch(repo, name, "main")
    made.append(name)
    return name


def _frame(item: dict[str, Any], key: str) -> np.ndarray:
    shape = item[key]["shape"]
    return np.frombuffer(base64.b64decode(item[key]["b64"]), dtype=np.uint8).reshape(shape)


def test_an_export_at_a_commit_loads_in_lerobot_with_the_same_values(
    stack: NativeStack,
    tmp_path: Path,
    lerobot_py: Path,
    side_env: dict[str, str],
    branches: tuple[LakeFSClient, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lakefs, made = branches
    repo, env = stack.settings.lakefs_repo, settings_env(stack.settings)
    generate_dataset(tmp_path / "umi", profile="tiny", episodes=3, seed=11)
    local = tmp_path / "umi" / BUFFER
    name = _branch(lakefs, made, repo, "out")
    body = local.read_bytes()
    lakefs.upload_object(repo, name, f"e2e/{name}/{BUFFER}", body, md5_hex=hashlib.md5(body).hexdigest())
    commit = lakefs.commit(repo, name, "a replay buffer to export").id
    out = tmp_path / "exported"
    args = ["export", "lerobot", "--ref", commit, "--dataset", f"e2e/{name}/", "--out", str(out), "--fps", str(FPS)]
    result = _robolake_json(env, *args, "--into-branch", name, "--lake-path", f"exports/{name}")
    assert result["commit_id"] == commit and result["fps"] == FPS and result["cameras"] == ["camera0_rgb"]
    assert result["max_time_error_ms"] <= result["time_error_bound_ms"] == pytest.approx(1001 / 120, abs=1e-3)

    # what the export should hold, from the buffer read locally (zarr 2, UMI's codec)
    root = open_replay_buffer(local)
    ends = root["meta/episode_ends"][:]
    state = np.concatenate(
        [root[f"data/robot0_{k}"][:] for k in ("eef_pos", "eef_rot_axis_angle", "gripper_width")], axis=1
    )
    starts = np.concatenate([[0], ends[:-1]])
    steps = np.concatenate([s + resample_steps(int(e - s), FPS) for s, e in zip(starts, ends, strict=True)])
    episode_of = np.concatenate(
        [np.full(len(resample_steps(int(e - s), FPS)), i) for i, (s, e) in enumerate(zip(starts, ends, strict=True))]
    )
    assert result["episodes"] == 3 and result["frames"] == len(steps) < int(ends[-1])
    first = [int(np.flatnonzero(episode_of == e)[0]) for e in range(3)]
    picks = sorted({0, 1, first[1], first[1] - 1, len(steps) // 2, first[2] + 3, len(steps) - 1})

    read = _load(lerobot_py, side_env, monkeypatch, [out], picks)
    _assert_stats_as_lerobots(read["stats_gap"], {"observation.state", "action", "timestamp", "index"})
    for backend, loaded in zip(BACKENDS, read["loaded"], strict=True):
        assert loaded["backend"] == ("torchcodec" if backend == "default" else "pyav")
        assert (loaded["episodes"], loaded["frames"], loaded["len"], loaded["fps"]) == (3, len(steps), len(steps), FPS)
        assert loaded["video_keys"] == ["observation.images.camera0"]
        for i, item in zip(picks, loaded["items"], strict=True):
            want = state[steps[i]]
            assert np.array_equal(np.asarray(item["observation.state"], dtype=np.float32), want), i
            assert np.array_equal(np.asarray(item["action"], dtype=np.float32), want), i  # UMI: action[t] = pose at t
            assert item["episode_index"] == episode_of[i] and item["index"] == i and item["task"] == "dataset"
            assert item["timestamp"] == pytest.approx(item["frame_index"] / FPS, abs=1e-6)
            step_time = (steps[i] - starts[episode_of[i]]) * 1001 / 60000  # the source step's time in its episode
            assert abs(item["timestamp"] - step_time) <= 1001 / 120000 + 1e-6  # at most half a step off
            frame = _frame(item, "observation.images.camera0")
            assert frame.shape == (3, 224, 224)
            source = np.moveaxis(root["data/camera0_rgb"][steps[i]], -1, 0).astype(np.float64)
            psnr = 10 * np.log10(255**2 / np.mean((frame.astype(np.float64) - source) ** 2))
            assert psnr > 28, f"frame {i} (step {steps[i]}) decodes to another picture: PSNR {psnr:.1f} dB"
        # LeRobot's action window from the first pick is UMI's: the next 16 frames' poses, padded at the end
        window = [steps[min(picks[0] + k, first[1] - 1)] for k in range(16)]
        assert np.array_equal(np.asarray(loaded["action_window"], dtype=np.float32), state[window])

    # the same folder was committed, with its source named; reading it back gives the same files
    lake = result["lake"]
    meta = lakefs.get_commit(repo, lake["commit_id"]).metadata
    assert meta["source_commit"] == commit and meta["fps"] == str(FPS) and meta["format"] == "lerobot"
    back = tmp_path / "back"
    assert _robolake(env, "version", "read", lake["commit_id"], lake["path"], str(back)).returncode == 0
    assert _tree(back) == _tree(out)


def _assert_stats_as_lerobots(gap: dict[str, dict[str, float]], some: set[str]) -> None:
    """min, max, mean, std and count of every non-video feature as lerobot's own code computes them."""
    assert some <= set(gap)
    for key, stats in gap.items():
        assert all(v <= 1e-6 for v in stats.values()), (key, stats)


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_a_dataset_lerobot_wrote_is_ingested_and_reads_back_equal(
    stack: NativeStack,
    tmp_path: Path,
    lerobot_py: Path,
    side_env: dict[str, str],
    branches: tuple[LakeFSClient, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lakefs, made = branches
    repo, env = stack.settings.lakefs_repo, settings_env(stack.settings)
    source = tmp_path / "made"
    assert _side(lerobot_py, side_env, monkeypatch, CREATE, str(source)) == {"episodes": 2, "frames": 29}
    name = _branch(lakefs, made, repo, "in")
    dataset = f"made-{uuid.uuid4().hex[:6]}"
    ingested = _robolake_json(env, "ingest", str(source), "--branch", name, "--name", dataset)
    assert ingested["kind"] == "lerobot" and ingested["episodes"] == 2 and ingested["frames"] == 29
    commit = ingested["commit_id"]
    assert lakefs.get_commit(repo, name).id == commit
    meta = lakefs.get_commit(repo, commit).metadata
    assert (meta["format"], meta["fps"], meta["total_frames"]) == ("lerobot", "30", "29")

    back = tmp_path / "back"
    assert _robolake(env, "version", "read", commit, f"lerobot/{dataset}", str(back)).returncode == 0
    assert _tree(back) == _tree(source)
    picks = [0, 5, 11, 12, 20, 28]
    read = _load(lerobot_py, side_env, monkeypatch, [source, back], picks)
    _assert_stats_as_lerobots(read["stats_gap"], {"observation.state", "action", "timestamp", "index"})
    loaded = read["loaded"]
    for original, copy in zip(loaded[: len(BACKENDS)], loaded[len(BACKENDS) :], strict=True):
        assert copy == original and copy["episodes"] == 2 and copy["frames"] == 29
        assert [item["task"] for item in copy["items"]] == ["pick the cup"] * 3 + ["place the cup"] * 3


def test_a_lerobot_folder_with_a_broken_info_json_is_one_line_and_writes_nothing(
    stack: NativeStack, tmp_path: Path, branches: tuple[LakeFSClient, list[str]]
) -> None:
    lakefs, made = branches
    repo, env = stack.settings.lakefs_repo, settings_env(stack.settings)
    name = _branch(lakefs, made, repo, "bad")
    head = lakefs.get_commit(repo, name).id
    folder = tmp_path / "broken"
    (folder / "meta").mkdir(parents=True)
    (folder / "meta" / "info.json").write_text('{"codebase_version": "v3.0", "fps": 30,')
    (folder / "data").mkdir()
    done = _robolake(env, "ingest", str(folder), "--branch", name)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("  ")]  # no status
    assert done.returncode == 3 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: ") and "meta/info.json: is not valid JSON" in lines[0]
    assert lakefs.get_commit(repo, name).id == head and list(lakefs.uncommitted(repo, name)) == []
