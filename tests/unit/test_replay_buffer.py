"""The replay-buffer writer against zarr 2 and UMI's own codec, and the validator against damaged files.

UMI's codec, ReplayBuffer.copy_from_store and SequenceSampler come from tests/umi_training_loader.py,
a fixture of their published behaviour (that module says why a fixture). Its codec is put into
numcodecs' registry with monkeypatch only, so other tests keep imagecodecs' own codec.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import imagecodecs
import numcodecs.registry
import numpy as np
import pytest
import zarr
from imagecodecs.numcodecs import register_codecs

from robolake.errors import RobolakeError
from robolake.ingest.sources import plan_replay_buffer
from robolake.umi.errors import DatasetFormatError
from robolake.umi.replay_buffer import (
    JPEGXL_CONFIG,
    ReplayBufferWriter,
    encode_frame,
    episode_ends_chunking,
    open_replay_buffer,
    optimal_chunks,
    validate_replay_buffer,
)
from robolake.umi.zarr_store import ZarrZip
from tests.umi_training_loader import UMI_RECORDED_CONFIG, UmiJpegXl, copy_from_store, rgb_window, sampler_windows
from tests.umidata import random_lowdim

LENGTHS = (7, 5, 6, 4)  # four episodes: episode_ends is re-chunked twice, as in UMI
IMG = 32  # the layout does not depend on the image size; small frames keep the tests fast
# What imagecodecs 2023.9.18 .. 2026.3 record for their Jpegxl(level=99, lossless=False, numthreads=1):
# UMI's keys plus two that UMI's JpegXl.__init__ does not take.
NEWER_IMAGECODECS_CONFIG = {**UMI_RECORDED_CONFIG, "bitspersample": None, "squeeze": None}
CAMERA_ZARRAY = "data/camera0_rgb/.zarray"


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


@pytest.fixture
def umi_codecs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``imagecodecs_jpegxl`` means UMI's vendored class for this test only (UMI's register_codecs())."""
    monkeypatch.setitem(numcodecs.registry.codec_registry, UmiJpegXl.codec_id, UmiJpegXl)


def _umi_flow(path: Path) -> None:
    """Build the same buffer the way UMI's ReplayBuffer + 07_generate_replay_buffer.py do, with zarr 2.

    Needs the ``umi_codecs`` fixture: zarr reopens the camera array from its .zarray while writing.
    """
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
    codec = UmiJpegXl(level=99, numthreads=1)  # 07_generate_replay_buffer.py's img_compressor
    img = data.require_dataset(
        "camera0_rgb", shape=(n, IMG, IMG, 3), chunks=(1, IMG, IMG, 3), compressor=codec, dtype=np.uint8
    )
    frames = [f for k, t in enumerate(LENGTHS) for f in _frames(t, seed=k)]
    for i, frame in enumerate(frames):
        img[i] = frame
    with zarr.ZipStore(str(path), mode="w") as zs:
        zarr.group(zs)
        zarr.copy_store(mem, zs, source_path="/meta", dest_path="/meta")
        zarr.group(zs).create_group("data", overwrite=True)
        for key in sorted(data.keys()):
            zarr.copy_store(mem, zs, source_path=f"/data/{key}", dest_path=f"/data/{key}")


@pytest.mark.usefixtures("umi_codecs")
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
                assert mine == ref, name  # the camera's compressor included: UMI's codec recorded it
            else:
                assert a == b, name
        for info in ours.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.date_time == (1980, 1, 1, 0, 0, 0)


def test_zarr2_reads_it_with_imagecodecs_own_codecs(buffer: Path) -> None:
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
        (n, IMG, IMG, 3),
        (1, IMG, IMG, 3),
        np.uint8,
        "imagecodecs_jpegxl",
    )
    first = _frames(LENGTHS[0], seed=0)[0]
    assert np.abs(cam[0].astype(int) - first.astype(int)).mean() < 3  # lossy but close (distance 0.19)


def test_camera_compressor_is_what_umis_jpegxl_records(buffer: Path, umi_codecs: None) -> None:
    with zipfile.ZipFile(buffer) as z:
        recorded = json.loads(z.read(CAMERA_ZARRAY))["compressor"]
    assert recorded == JPEGXL_CONFIG == UMI_RECORDED_CONFIG == UmiJpegXl(level=99, numthreads=1).get_config()
    assert isinstance(numcodecs.registry.get_codec(recorded), UmiJpegXl)  # what zarr does on opening the array
    with pytest.raises(TypeError, match="unexpected keyword argument 'bitspersample'"):  # issue 10's failure
        numcodecs.registry.get_codec(NEWER_IMAGECODECS_CONFIG)


@pytest.mark.usefixtures("umi_codecs")
def test_umi_training_loader_opens_and_samples_it(buffer: Path) -> None:
    root = copy_from_store(str(buffer))
    frames = root["data/camera0_rgb"]
    assert type(frames.compressor) is UmiJpegXl
    # UMI's action horizon of 16 needs longer episodes than these; 2 keeps t - 3 windows per episode.
    windows = sampler_windows(root["meta/episode_ends"][:], action_horizon=2)
    assert len(windows) == sum(t - 3 for t in LENGTHS)
    sources = [f for k, t in enumerate(LENGTHS) for f in _frames(t, seed=k)]
    for current, start, _ in windows:
        window = rgb_window(frames, current, start)
        assert window.shape == (2, IMG, IMG, 3) and window.dtype == np.uint8
        assert window.reshape(2, -1).std(axis=1).min() > 5.0, f"window at {current}: a constant image"
        assert np.abs(window[-1].astype(int) - sources[current].astype(int)).mean() < 3


@pytest.mark.parametrize(
    "compressor",
    [UMI_RECORDED_CONFIG, NEWER_IMAGECODECS_CONFIG],
    ids=["written-by-umi", "written-by-newer-imagecodecs"],
)
def test_ingest_accepts_either_shape_of_jpegxl_config(buffer: Path, tmp_path: Path, compressor: dict[str, Any]) -> None:
    patched = _patched_zarray(buffer, CAMERA_ZARRAY, compressor=compressor)
    path = _rewrite(buffer, tmp_path / "cup.zarr.zip", patch={CAMERA_ZARRAY: patched})
    plan = plan_replay_buffer(path, "cup", tmp_path / "staging", lambda _: None)
    assert (plan.kind, plan.episodes, plan.info["cameras"]) == ("replay_buffer", len(LENGTHS), ["camera0_rgb"])
    assert len(plan.objects) == 2 * len(LENGTHS) + 1  # pose + gripper per episode, and the original
    frame = open_replay_buffer(path)["data/camera0_rgb"][0]  # robolake's own zarr reader takes either shape too
    assert np.abs(frame.astype(int) - _frames(LENGTHS[0], seed=0)[0].astype(int)).mean() < 3


def test_writer_is_byte_deterministic(buffer: Path, tmp_path: Path) -> None:
    again = _write(tmp_path / "again.zarr.zip")
    assert again.read_bytes() == buffer.read_bytes()
    assert not list(tmp_path.glob(".spool-*")) and not list(tmp_path.glob("*.partial"))


def test_chunking_rules_follow_umi() -> None:
    assert optimal_chunks((468, 3), 4) == (468, 3)
    assert optimal_chunks((468, 6), 8) == (468, 6)
    assert optimal_chunks((500_000, 3), 4) == (166_667, 3)  # capped near 2 MB per chunk
    assert [episode_ends_chunking(e) for e in (1, 2, 3, 4, 7)] == [
        (1, False),
        (3, True),
        (3, True),
        (6, True),
        (10, True),
    ]


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


CASES = (
    "truncated",
    "not a zip",
    "not zarr",
    "missing eef_pos",
    "missing camera",
    "ends decrease",
    "ends != N",
    "unknown codec",
    "wrong dtype",
    "wrong shape",
    "missing chunk",
)


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


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("../../evil.txt", "not a relative zarr key"),
        ("/tmp/evil.txt", "not a relative zarr key"),
        ("data/./x", "not a relative zarr key"),
        ("data\\x", "not a relative zarr key"),
        ("data/link", "is a symbolic link"),
    ],
)
def test_a_zip_entry_outside_the_store_or_a_link_is_refused(tmp_path: Path, entry: str, said: str) -> None:
    path = tmp_path / "bad.zarr.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(".zgroup", b'{"zarr_format": 2}')
        info = zipfile.ZipInfo(entry)
        if said == "is a symbolic link":
            info.external_attr = 0o120777 << 16
        zf.writestr(info, b"/etc/passwd")
    with pytest.raises(DatasetFormatError, match=said) as caught:
        ZarrZip(path)
    assert repr(entry) in str(caught.value)
