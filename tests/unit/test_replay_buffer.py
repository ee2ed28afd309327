"""The replay-buffer writer against zarr 2 itself, and the validator against damaged files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import zarr
from imagecodecs.numcodecs import Jpegxl, register_codecs

from robolake.errors import RobolakeError
from robolake.umi.errors import DatasetFormatError
from robolake.umi.replay_buffer import (
    JPEGXL_CONFIG,
    ReplayBufferWriter,
    encode_frame,
    episode_ends_chunking,
    optimal_chunks,
    validate_replay_buffer,
)
from tests.umidata import random_lowdim

LENGTHS = (7, 5, 6, 4)  # four episodes: episode_ends is re-chunked twice, as in UMI
IMG = 32  # the layout does not depend on the image size; small frames keep the tests fast


def _frames(n: int, seed: int = 0) -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMG, 0:IMG]
    return [
        np.clip(np.stack([xx * 7 + i, yy * 5, (xx + yy) * 3], -1) + rng.integers(0, 6, (IMG, IMG, 3)), 0, 255).astype(
            np.uint8
        )
        for i in range(n)
    ]


def _write(path: Path, robots: int = 1, cameras: int = 1, poses: bool = True) -> Path:
    cams = tuple(f"camera{c}_rgb" for c in range(cameras))
    with ReplayBufferWriter(path, cameras=cams, image_size=(IMG, IMG)) as writer:
        for k, ep in enumerate(random_lowdim(LENGTHS, robots=robots, poses=poses, seed=5)):
            frames = {
                cam: [encode_frame(f) for f in _frames(LENGTHS[k], seed=k + 10 * c)] for c, cam in enumerate(cams)
            }
            writer.add_episode(ep, frames)
    return path


@pytest.fixture(scope="module")
def buffer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("rb") / "dataset.zarr.zip")


def _umi_flow(path: Path) -> None:
    """Build the same buffer the way UMI's ReplayBuffer + 07_generate_replay_buffer.py do, with zarr 2."""
    register_codecs(verbose=False)
    mem = zarr.MemoryStore()
    root = zarr.group(store=mem)
    data, meta = root.require_group("data"), root.require_group("meta")
    meta.zeros("episode_ends", shape=(0,), dtype=np.int64, compressor=None)
    n = 0
    for ep in random_lowdim(LENGTHS, seed=5):
        t = next(iter(ep.values())).shape[0]
        for key, value in ep.items():
            if key not in data:
                chunks = optimal_chunks(value.shape, value.dtype.itemsize)
                data.zeros(key, shape=(n + t, *value.shape[1:]), chunks=chunks, dtype=value.dtype, compressor=None)
            else:
                data[key].resize((n + t, *value.shape[1:]))
            data[key][-t:] = value
        n += t
        ends = meta["episode_ends"]
        ends.resize(ends.shape[0] + 1)
        ends[-1] = n
        if ends.chunks[0] < ends.shape[0]:  # UMI's rechunk_recompress_array
            meta.move("episode_ends", "_temp")
            zarr.copy(meta["_temp"], meta, name="episode_ends", chunks=(int(ends.shape[0] * 1.5),), compressor=None)
            del meta["_temp"]
    codec = Jpegxl(level=99, lossless=False, numthreads=1)
    img = data.require_dataset("camera0_rgb", shape=(n, IMG, IMG, 3), chunks=(1, IMG, IMG, 3), compressor=codec,
                               dtype=np.uint8)  # fmt: skip
    frames = [f for k, t in enumerate(LENGTHS) for f in _frames(t, seed=k)]
    for i, frame in enumerate(frames):
        img[i] = frame
    with zarr.ZipStore(str(path), mode="w") as zs:
        zarr.group(zs)
        zarr.copy_store(mem, zs, source_path="/meta", dest_path="/meta")
        zarr.group(zs).create_group("data", overwrite=True)
        for key in sorted(data.keys()):
            zarr.copy_store(mem, zs, source_path=f"/data/{key}", dest_path=f"/data/{key}")


def test_bytes_match_what_zarr2_writes_for_umi(buffer: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference.zarr.zip"
    _umi_flow(reference)
    with zipfile.ZipFile(buffer) as ours, zipfile.ZipFile(reference) as theirs:
        assert ours.namelist() == theirs.namelist()
        for name in ours.namelist():
            a, b = ours.read(name), theirs.read(name)
            if name.endswith(".zarray"):
                mine, ref = json.loads(a), json.loads(b)
                ref.pop("dimension_separator", None)  # zarr >= 2.17 adds it on resize; UMI's 2.16 never did
                if name == "data/camera0_rgb/.zarray":
                    assert mine["compressor"] == JPEGXL_CONFIG  # today's imagecodecs names other keys
                    mine["compressor"] = ref["compressor"]
                assert mine == ref, name
            else:
                assert a == b, name
        for info in ours.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.date_time == (1980, 1, 1, 0, 0, 0)


def test_zarr2_reads_it_like_umi_loader(buffer: Path) -> None:
    register_codecs(verbose=False)
    root = zarr.open_group(zarr.ZipStore(str(buffer), mode="r"), mode="r")
    n = sum(LENGTHS)
    assert list(root["meta/episode_ends"][:]) == list(np.cumsum(LENGTHS))
    eps = random_lowdim(LENGTHS, seed=5)
    assert np.array_equal(root["data/robot0_eef_pos"][:], np.concatenate([e["robot0_eef_pos"] for e in eps]))
    assert root["data/robot0_gripper_width"].shape == (n, 1)
    assert root["data/robot0_demo_start_pose"].dtype == np.float64
    cam = root["data/camera0_rgb"]
    assert (cam.shape, cam.chunks, cam.dtype, cam.compressor.codec_id) == (
        (n, IMG, IMG, 3), (1, IMG, IMG, 3), np.uint8, "imagecodecs_jpegxl"
    )  # fmt: skip
    first = _frames(LENGTHS[0], seed=0)[0]
    assert np.abs(cam[0].astype(int) - first.astype(int)).mean() < 3  # lossy but close (distance 0.19)


def test_writer_is_byte_deterministic(buffer: Path, tmp_path: Path) -> None:
    again = _write(tmp_path / "again.zarr.zip")
    assert again.read_bytes() == buffer.read_bytes()
    assert not list(tmp_path.glob(".spool-*")) and not list(tmp_path.glob("*.partial"))


def test_chunking_rules_follow_umi() -> None:
    assert optimal_chunks((468, 3), 4) == (468, 3)
    assert optimal_chunks((468, 6), 8) == (468, 6)
    assert optimal_chunks((500_000, 3), 4) == (166_667, 3)  # capped near 2 MB per chunk
    assert [episode_ends_chunking(e) for e in (1, 2, 3, 4, 7)] == [(1, False), (3, True), (3, True), (6, True),
                                                                  (10, True)]  # fmt: skip


def test_validator_reports_a_good_buffer(buffer: Path) -> None:
    info = validate_replay_buffer(buffer)
    assert (info.n_steps, info.n_episodes, info.episode_lengths) == (sum(LENGTHS), 4, LENGTHS)
    assert (info.n_robots, info.cameras, info.image_shape) == (1, ("camera0_rgb",), (IMG, IMG, 3))
    assert info.has_demo_poses and info.all_entries_stored
    assert info.arrays["data/camera0_rgb"].compressor_id == "imagecodecs_jpegxl"


def test_validator_accepts_bimanual_without_demo_poses(tmp_path: Path) -> None:
    info = validate_replay_buffer(_write(tmp_path / "bi.zarr.zip", robots=2, cameras=2, poses=False))
    assert info.n_robots == 2 and info.cameras == ("camera0_rgb", "camera1_rgb") and not info.has_demo_poses


def test_validator_decodes_at_most_two_frames_per_camera(buffer: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = imagecodecs.jpegxl_decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(imagecodecs, "jpegxl_decode", counting)
    validate_replay_buffer(buffer)
    assert 1 <= len(calls) <= 2


def _rewrite(src: Path, dst: Path, drop: tuple[str, ...] = (), patch: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename.startswith(drop) and drop:
                continue
            zout.writestr(info, (patch or {}).get(info.filename, zin.read(info.filename)))
    return dst


def _patched_zarray(src: Path, key: str, **changes: Any) -> bytes:
    with zipfile.ZipFile(src) as z:
        meta = json.loads(z.read(key))
    meta.update(changes)
    return json.dumps(meta).encode()


def _bad_files(src: Path, d: Path) -> dict[str, tuple[Path, str]]:
    ends_key = "meta/episode_ends/0"
    with zipfile.ZipFile(src) as z:
        ends = np.frombuffer(z.read(ends_key), dtype="<i8").copy()
    decreasing, short = ends.copy(), ends.copy()
    decreasing[1] = 1
    short[len(LENGTHS) - 1] -= 1
    truncated = d / "truncated.zarr.zip"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    text = d / "text.zarr.zip"
    text.write_text("hello")
    notzarr = d / "notzarr.zarr.zip"
    with zipfile.ZipFile(notzarr, "w") as z:
        z.writestr("readme.txt", "not a store")
    cam = "data/camera0_rgb/.zarray"
    pos = "data/robot0_eef_pos/.zarray"
    return {
        "truncated": (truncated, "truncated"),
        "not a zip": (text, "not a zip archive"),
        "not zarr": (notzarr, "not a zarr v2 store"),
        "missing eef_pos": (_rewrite(src, d / "nopos.zarr.zip", drop=("data/robot0_eef_pos/",)), "robot0_eef_pos"),
        "missing camera": (_rewrite(src, d / "nocam.zarr.zip", drop=("data/camera0_rgb/",)), "camera0_rgb"),
        "ends decrease": (_rewrite(src, d / "dec.zarr.zip", patch={ends_key: decreasing.tobytes()}), "increasing"),
        "ends != N": (_rewrite(src, d / "short.zarr.zip", patch={ends_key: short.tobytes()}), "disagrees"),
        "unknown codec": (
            _rewrite(src, d / "codec.zarr.zip", patch={cam: _patched_zarray(src, cam, compressor={"id": "foo_v9"})}),
            "unknown codec id 'foo_v9'",
        ),
        "wrong dtype": (
            _rewrite(src, d / "dtype.zarr.zip", patch={pos: _patched_zarray(src, pos, dtype="<f8")}),
            "<f8",
        ),
        "wrong shape": (
            _rewrite(src, d / "shape.zarr.zip", patch={pos: _patched_zarray(src, pos, shape=[sum(LENGTHS), 4])}),
            "expected <f4",
        ),
        "missing chunk": (_rewrite(src, d / "chunk.zarr.zip", drop=("data/camera0_rgb/3.0.0.0",)), "3.0.0.0"),
    }


CASES = ("truncated", "not a zip", "not zarr", "missing eef_pos", "missing camera", "ends decrease", "ends != N",
         "unknown codec", "wrong dtype", "wrong shape", "missing chunk")  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_validator_rejects_bad_files_with_one_clear_line(buffer: Path, tmp_path: Path, case: str) -> None:
    path, expected = _bad_files(buffer, tmp_path)[case]
    with pytest.raises(DatasetFormatError) as err:
        validate_replay_buffer(path)
    message = str(err.value)
    assert isinstance(err.value, RobolakeError) and isinstance(err.value, ValueError)
    assert str(path) in message and expected in message and "\n" not in message


def test_validator_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="no such file"):
        validate_replay_buffer(tmp_path / "absent.zarr.zip")
