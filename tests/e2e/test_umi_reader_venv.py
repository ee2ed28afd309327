"""A generated replay buffer read the way a UMI user reads it: zarr 2 + imagecodecs, NO robolake.

The reader runs in a separate virtualenv that holds only zarr 2.x, numcodecs and imagecodecs (cached
outside the checkout, keyed by those requirements), so nothing of robolake can help it along.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robolake.umi import generate_dataset

pytestmark = pytest.mark.e2e

READER_REQUIREMENTS = ["zarr>=2.16,<3", "numcodecs>=0.11", "imagecodecs>=2023.9.18", "numpy<3"]

READER = r"""
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


def reader_python() -> Path:
    key = hashlib.sha256(json.dumps(READER_REQUIREMENTS).encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "robolake" / f"umi-reader-{key}"
    python = base / "bin" / "python"
    if not (base / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(base)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        *READER_REQUIREMENTS], check=True, timeout=900)
        (base / ".complete").write_text("ok")
    return python


def test_replay_buffer_reads_in_a_separate_zarr2_virtualenv(tmp_path: Path) -> None:
    manifest = generate_dataset(tmp_path / "umi", profile="tiny", seed=11, episodes=3)
    path = tmp_path / "umi" / "replay_buffer" / "dataset.zarr.zip"
    python = reader_python()
    isolated = subprocess.run([str(python), "-I", "-c", "import robolake"], capture_output=True, text=True, check=False)
    assert isolated.returncode != 0, "the reader virtualenv must not see robolake"
    result = subprocess.run([str(python), "-I", "-c", READER, str(path)], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["zarr"].startswith("2.")
    n = manifest.frames_total
    arrays = doc["arrays"]
    assert arrays["data/camera0_rgb"] == [[n, 224, 224, 3], "uint8", [1, 224, 224, 3], "imagecodecs_jpegxl"]
    for name, width, dtype in (("robot0_eef_pos", 3, "float32"), ("robot0_eef_rot_axis_angle", 3, "float32"),
                               ("robot0_gripper_width", 1, "float32"), ("robot0_demo_start_pose", 6, "float64"),
                               ("robot0_demo_end_pose", 6, "float64")):
        shape, got_dtype, chunks, compressor = arrays[f"data/{name}"]
        assert shape == [n, width] and got_dtype == dtype and compressor is None, name
        assert chunks[1] == width and chunks[0] >= 1, name
    assert arrays["meta/episode_ends"][0] == [3] and arrays["meta/episode_ends"][1] == "int64"
    assert arrays["meta/episode_ends"][3] is None
    assert doc["episode_ends"][-1] == n and doc["episode_ends"] == sorted(doc["episode_ends"])
    assert min(doc["frame_std"]) > 5.0, "decoded frames must show a scene, not a constant image"
    low, high = doc["gripper_range"]
    assert 0.0 <= low < high <= 0.1
