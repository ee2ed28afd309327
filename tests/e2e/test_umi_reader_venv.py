"""A generated replay buffer read the way UMI users read it, in a separate zarr 2.16 virtualenv, NO robolake.

The reader virtualenv holds only UMI's pinned zarr, numcodecs, imagecodecs and numpy (cached outside
the checkout, keyed by those requirements), so nothing of robolake can help it along. Two readers:
a plain zarr user (imagecodecs' own codecs), and UMI's training loader -- its vendored JPEG XL codec,
``ReplayBuffer.copy_from_store`` and ``SequenceSampler`` -- taken from tests/umi_training_loader.py,
a fixture of UMI's published behaviour (why a fixture and not UMI's files: see that module).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robolake.umi import generate_dataset
from tests.umi_training_loader import UMI_RECORDED_CONFIG

pytestmark = pytest.mark.e2e

# UMI's conda_environment.yaml pins (it runs Python 3.9; these have wheels up to CPython 3.11).
READER_REQUIREMENTS = ["zarr==2.16.1", "numcodecs==0.11.0", "imagecodecs==2023.9.18", "numpy==1.24.4"]
LOADER = Path(__file__).resolve().parents[1] / "umi_training_loader.py"

ZARR_READER = r"""
import json, sys
import zarr
from imagecodecs.numcodecs import register_codecs
register_codecs()
root = zarr.open_group(zarr.ZipStore(sys.argv[1], mode="r"), mode="r")
out = {"zarr": zarr.__version__, "arrays": {}}
for group in ("data", "meta"):
    for name, arr in root[group].arrays():
        comp = arr.compressor.get_config()["id"] if arr.compressor is not None else None
        out["arrays"][f"{group}/{name}"] = [list(arr.shape), str(arr.dtype), list(arr.chunks), comp]
frames = root["data/camera0_rgb"]
ends = root["meta/episode_ends"][:]
first, last = frames[0], frames[len(frames) - 1]
out["episode_ends"] = ends.tolist()
out["frame_std"] = [float(first.std()), float(last.std())]
width = root["data/robot0_gripper_width"][:]
out["gripper_range"] = [float(width.min()), float(width.max())]
print(json.dumps(out))
"""

# argv: the fixture's folder, the replay buffer. Prints one JSON document.
UMI_LOADER_READER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import base64, imagecodecs, numcodecs, numpy, zarr
import umi_training_loader as umi
umi.register_umi_codecs()
root = umi.copy_from_store(sys.argv[2])
cameras = sorted(k for k in root["data"] if k.startswith("camera"))
out = {"versions": [zarr.__version__, numcodecs.__version__, imagecodecs.__version__, numpy.__version__],
       "umi_config": umi.UmiJpegXl(level=99, numthreads=1).get_config(), "cameras": {}}
windows = umi.sampler_windows(root["meta/episode_ends"][:])
out["windows"] = len(windows)
out["window_list"] = [list(map(int, w)) for w in windows]
for cam in cameras:
    frames = root["data"][cam]
    picks = sorted({0, 1, len(windows) // 2, len(windows) - 1})
    samples = []
    for k in picks:
        current, start, _ = windows[k]
        window = umi.rgb_window(frames, current, start)
        obs = umi.to_obs(window)
        samples.append({"index": k, "window_b64": base64.b64encode(window.tobytes()).decode(),
                        "current": current, "start": start, "obs_shape": list(obs.shape),
                        "obs_range": [float(obs.min()), float(obs.max())],
                        "frame_std": [float(f.std()) for f in window],
                        "frames_differ": bool(numpy.any(window[0] != window[-1]))})
    codec = frames.compressor
    out["cameras"][cam] = {"codec": f"{type(codec).__module__}.{type(codec).__qualname__}",
                           "zarray_compressor": json.loads(root.store[f"data/{cam}/.zarray"])["compressor"],
                           "samples": samples}
print(json.dumps(out))
"""


def reader_python() -> Path:
    key = hashlib.sha256(json.dumps(READER_REQUIREMENTS).encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "robolake" / f"umi-reader-{key}"
    python = base / "bin" / "python"
    if not (base / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(base)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *READER_REQUIREMENTS],
            check=True,
            timeout=900,
        )
        (base / ".complete").write_text("ok")
    return python


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A tiny ``robolake generate`` dataset: (its replay buffer, its frame count)."""
    out = tmp_path_factory.mktemp("umi")
    manifest = generate_dataset(out, profile="tiny", seed=11, episodes=3)
    return out / "replay_buffer" / "dataset.zarr.zip", manifest.frames_total


@pytest.fixture(scope="module")
def python() -> Path:
    python = reader_python()
    isolated = subprocess.run([str(python), "-I", "-c", "import robolake"], capture_output=True, text=True, check=False)
    assert isolated.returncode != 0, "the reader virtualenv must not see robolake"
    return python


def _run_umi_loader(python: Path, buffer: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    fixture_dir = tmp_path / "umi_fixture"  # only the fixture module, not the rest of tests/
    fixture_dir.mkdir(exist_ok=True)
    shutil.copy(LOADER, fixture_dir / LOADER.name)
    return subprocess.run(
        [str(python), "-I", "-c", UMI_LOADER_READER, str(fixture_dir), str(buffer)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_replay_buffer_reads_in_a_separate_zarr2_virtualenv(generated: tuple[Path, int], python: Path) -> None:
    path, n = generated
    result = subprocess.run(
        [str(python), "-I", "-c", ZARR_READER, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["zarr"].startswith("2.16.")
    arrays = doc["arrays"]
    assert arrays["data/camera0_rgb"] == [[n, 224, 224, 3], "uint8", [1, 224, 224, 3], "imagecodecs_jpegxl"]
    for name, width, dtype in (
        ("robot0_eef_pos", 3, "float32"),
        ("robot0_eef_rot_axis_angle", 3, "float32"),
        ("robot0_gripper_width", 1, "float32"),
        ("robot0_demo_start_pose", 6, "float64"),
        ("robot0_demo_end_pose", 6, "float64"),
    ):
        shape, got_dtype, chunks, compressor = arrays[f"data/{name}"]
        assert shape == [n, width] and got_dtype == dtype and compressor is None, name
        assert chunks[1] == width and chunks[0] >= 1, name
    assert arrays["meta/episode_ends"][0] == [3] and arrays["meta/episode_ends"][1] == "int64"
    assert arrays["meta/episode_ends"][3] is None
    assert doc["episode_ends"][-1] == n and doc["episode_ends"] == sorted(doc["episode_ends"])
    assert min(doc["frame_std"]) > 5.0, "decoded frames must show a scene, not a constant image"
    low, high = doc["gripper_range"]
    assert 0.0 <= low < high <= 0.1


def test_umi_training_loader_opens_and_samples_it(generated: tuple[Path, int], python: Path, tmp_path: Path) -> None:
    path, _ = generated
    result = _run_umi_loader(python, path, tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["versions"] == ["2.16.1", "0.11.0", "2023.9.18", "1.24.4"]
    assert doc["umi_config"] == UMI_RECORDED_CONFIG  # the fixture records what UMI's JpegXl records
    assert doc["windows"] > 0 and set(doc["cameras"]) == {"camera0_rgb"}
    for cam, found in doc["cameras"].items():
        assert found["codec"] == "umi_training_loader.UmiJpegXl", cam  # UMI's class decoded, not imagecodecs'
        assert found["zarray_compressor"] == UMI_RECORDED_CONFIG, cam
        for sample in found["samples"]:
            assert sample["obs_shape"] == [2, 3, 224, 224], sample
            assert 0.0 <= sample["obs_range"][0] < sample["obs_range"][1] <= 1.0, sample
            assert min(sample["frame_std"]) > 5.0, f"{cam} window at {sample['current']}: a constant image"
            if sample["current"] - sample["start"] >= 3:  # two real frames, not one padded twice
                assert sample["frames_differ"], sample


def _with_compressor(src: Path, dst: Path, compressor: dict[str, Any]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.startswith("data/camera") and info.filename.endswith("/.zarray"):
                meta = json.loads(data)
                meta["compressor"] = compressor
                data = json.dumps(meta, indent=4, sort_keys=True).encode()
            zout.writestr(info, data)
    return dst


def test_umi_training_loader_rejects_newer_imagecodecs_keys(
    generated: tuple[Path, int], python: Path, tmp_path: Path
) -> None:
    """The control: the fixture has UMI's teeth, so a config with today's imagecodecs keys fails as in issue 10."""
    newer = {**UMI_RECORDED_CONFIG, "bitspersample": None, "squeeze": None}
    path = _with_compressor(generated[0], tmp_path / "newer.zarr.zip", newer)
    result = _run_umi_loader(python, path, tmp_path)
    assert result.returncode != 0
    assert "TypeError" in result.stderr and "unexpected keyword argument 'bitspersample'" in result.stderr


def test_robolake_windows_equal_umis_sampler_in_its_own_environment(
    generated: tuple[Path, int], python: Path, tmp_path: Path
) -> None:
    """The same file, the same indices: robolake.ml's windows are those UMI's code (zarr 2.16) makes."""
    from robolake.ml import SamplerConfig
    from tests.unit.test_ml_reference import local_dataset

    path, _ = generated
    result = _run_umi_loader(python, path, tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    ds = local_dataset(path, SamplerConfig.umi(split="all"))  # the fixture's windows ignore the val split
    assert [list(map(int, row)) for row in ds.indices] == doc["window_list"]
    for sample in doc["cameras"]["camera0_rgb"]["samples"]:
        theirs = np.frombuffer(base64.b64decode(sample["window_b64"]), dtype=np.uint8)
        ours = ds[sample["index"]]["camera0_rgb"]
        assert ours.shape == (2, 224, 224, 3) and theirs.size == ours.size
        # The same frames, decoded by two libjxl builds (UMI's pinned imagecodecs 2023.9.18 and ours),
        # which round a few pixels differently by one level; another frame differs by far more.
        diff = np.abs(ours.reshape(-1).astype(np.int16) - theirs.astype(np.int16))
        assert diff.max() <= 2 and diff.mean() < 0.5, (sample["index"], int(diff.max()), float(diff.mean()))
    other = ds[doc["cameras"]["camera0_rgb"]["samples"][-1]["index"]]["camera0_rgb"].reshape(-1).astype(np.int16)
    first = np.frombuffer(base64.b64decode(doc["cameras"]["camera0_rgb"]["samples"][0]["window_b64"]), np.uint8)
    assert np.abs(other - first.astype(np.int16)).mean() > 2.0, "the tolerance must tell frames apart"
