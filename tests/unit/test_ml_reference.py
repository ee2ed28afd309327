"""robolake.ml's windows against a reference of UMI's SequenceSampler, on a generated buffer read locally.

The reference (``reference_*`` below, also used by tests/integration/test_ml_lake.py) follows UMI's
``diffusion_policy/common/sampler.py`` loop by loop, in our own words: the index loop of
``SequenceSampler.__init__`` (episode mask, action-window fit), and ``sample_sequence`` per key.
rgb windows come from tests/umi_training_loader.py (``rgb_window``) on arrays zarr 2 decodes with
UMI's codec; for ``task/umi.yaml``'s settings the index list is that module's ``sampler_windows``.
Low-dim keys: UMI evaluates ``interp1d``/``Slerp`` at ``current - k*ds + latency`` clipped to the
episode; with whole-step latencies those are knots, i.e. the stored samples (scipy is not
installed here, so the reference takes the samples at those steps, as UMI's loop computes them).

Here the dataset reads the zip through a local file in place of the S3 range source (a fake of
the transport only; the integration test reads the same bytes out of lakeFS via the accelerator).
"""

from __future__ import annotations

import pickle
import threading
import zipfile
from pathlib import Path
from typing import Any

import numcodecs.registry
import numpy as np
import pytest

from robolake.errors import ConfigError
from robolake.ml import KeyWindow, LakeDataset, Located, SamplerConfig
from robolake.ml.blocks import BlockCache
from robolake.ml.dataset import check_arrays
from robolake.ml.remote import RangeSource, RemoteZip
from robolake.storage.s3 import S3Target
from robolake.umi import generate_dataset
from robolake.umi.errors import DatasetFormatError
from robolake.versioning import ObjectStat
from tests.umi_training_loader import UmiJpegXl, copy_from_store, rgb_window, sampler_windows, to_obs

BUFFER = "replay_buffer/dataset.zarr.zip"


# ---------------------------------------------------------------- the reference


def latency_config() -> SamplerConfig:
    """Per-key horizons, latencies and down-sampling, a validation split, and action padding."""
    return SamplerConfig(
        rgb={"camera0_rgb": KeyWindow(horizon=3, down_sample_steps=2)},
        lowdim={
            "robot0_eef_pos": KeyWindow(horizon=4, latency_steps=5, down_sample_steps=2),
            "robot0_eef_rot_axis_angle": KeyWindow(horizon=2, latency_steps=3, down_sample_steps=3),
            "robot0_gripper_width": KeyWindow(horizon=3, latency_steps=1, down_sample_steps=1),
        },
        action=KeyWindow(horizon=8, down_sample_steps=2),
        val_ratio=0.34,
        split_seed=3,
        split="train",
    )


def reference_val_mask(n_episodes: int, val_ratio: float, seed: int) -> np.ndarray[Any, Any]:
    """UMI's get_val_mask."""
    mask = np.zeros(n_episodes, dtype=bool)
    if val_ratio <= 0:
        return mask
    n_val = min(max(1, round(n_episodes * val_ratio)), n_episodes - 1)
    rng = np.random.default_rng(seed=seed)
    mask[rng.choice(n_episodes, size=n_val, replace=False)] = True
    return mask


def reference_indices(episode_ends: Any, config: SamplerConfig) -> list[tuple[int, int, int]]:
    """SequenceSampler.__init__'s index loop, with UmiDataset's train/val masks."""
    held_out = reference_val_mask(len(episode_ends), config.val_ratio, config.split_seed)
    mask = {"train": ~held_out, "val": held_out, "all": np.ones_like(held_out)}[config.split]
    horizon, ds = config.action.horizon, config.action.down_sample_steps
    indices = []
    for i in range(len(episode_ends)):
        if not mask[i]:
            continue
        start_idx = 0 if i == 0 else int(episode_ends[i - 1])
        end_idx = int(episode_ends[i])
        for current_idx in range(start_idx, end_idx):
            if not config.action_padding and end_idx < current_idx + (horizon - 1) * ds + 1:
                continue
            indices.append((current_idx, start_idx, end_idx))
    return indices


def reference_sample(root: Any, window: tuple[int, int, int], config: SamplerConfig) -> dict[str, Any]:
    """SequenceSampler.sample_sequence for one (current, start, end)."""
    current_idx, start_idx, end_idx = window
    data = root["data"]
    result: dict[str, Any] = {}
    for key, w in config.rgb.items():
        result[key] = rgb_window(data[key], current_idx, start_idx, w.horizon, w.down_sample_steps)
    for key, w in config.lowdim.items():
        steps = [current_idx - k * w.down_sample_steps + w.latency_steps for k in range(w.horizon)][::-1]
        steps = [min(max(s, start_idx), end_idx - 1) for s in steps]
        result[key] = np.asarray(data[key][:])[steps]
    parts = ("eef_pos", "eef_rot_axis_angle", "gripper_width")
    action = np.concatenate([np.asarray(data[f"robot0_{p}"][:]) for p in parts], axis=-1)
    horizon, ds = config.action.horizon, config.action.down_sample_steps
    out = action[current_idx : min(end_idx, current_idx + (horizon - 1) * ds + 1) : ds]
    if config.action_padding and out.shape[0] < horizon:
        out = np.concatenate([out, np.repeat(out[-1:], horizon - out.shape[0], axis=0)], axis=0)
    result["action"] = out
    return result


def assert_same(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == value.dtype, key
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


# ---------------------------------------------------------------- a buffer read from a local file


class FileSource(RangeSource):
    """The range source over a local file (the transport only; the zip logic is the real one).

    It logs every range read, so tests can say which bytes were read how often.
    """

    def __init__(self, path: Path) -> None:
        self.path, self.requests, self.bytes_read = path, 0, 0
        self.ranges: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def read(self, start: int, length: int) -> bytes:
        with self.path.open("rb") as fh:
            fh.seek(start)
            body = fh.read(length)
        with self._lock:
            self.requests += 1
            self.bytes_read += len(body)
            self.ranges.append((start, len(body)))
        return body


def local_dataset(
    path: Path,
    config: SamplerConfig,
    output: str = "window",
    cache_dir: Path | None = None,
    block_bytes: int = 256 * 1024,
) -> LakeDataset:
    stat = ObjectStat(BUFFER, "", path.stat().st_size, 0, "s3://lakefs-storage/x")
    found = Located(repo="robotics-data", ref="main", commit_id="c" * 64, path=BUFFER, stat=stat)
    blocks = BlockCache(cache_dir, found.where, stat.size_bytes, block_bytes=block_bytes) if cache_dir else None
    zf = RemoteZip(FileSource(path), stat.size_bytes, found.where, blocks=blocks)
    return LakeDataset(found, zf, config, output)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def buffer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("umi")
    generate_dataset(out, profile="tiny", episodes=3, seed=11)
    return out / BUFFER


@pytest.fixture
def umi_root(buffer: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(numcodecs.registry.codec_registry, "imagecodecs_jpegxl", UmiJpegXl)
    return copy_from_store(str(buffer))


def test_umi_yaml_windows_equal_umis(buffer: Path, umi_root: Any) -> None:
    config = SamplerConfig.umi(val_ratio=0.0)
    ds = local_dataset(buffer, config)
    windows = sampler_windows(umi_root["meta/episode_ends"][:])
    assert [tuple(int(x) for x in row) for row in ds.indices] == windows == reference_indices(ds.episode_ends, config)
    for i, window in enumerate(windows):
        assert_same(ds[i], reference_sample(umi_root, window, config))


def test_latency_and_val_split_windows_equal_umis(buffer: Path, umi_root: Any) -> None:
    for config in (latency_config(), SamplerConfig.umi(split="val", val_ratio=0.34, action_padding=True)):
        ds = local_dataset(buffer, config)
        windows = reference_indices(umi_root["meta/episode_ends"][:], config)
        assert len(windows) > 0 and len(ds) == len(windows)
        for i, window in enumerate(windows):
            assert_same(ds[i], reference_sample(umi_root, window, config))


def test_policy_output_matches_umi_dataset_conversion(buffer: Path, umi_root: Any) -> None:
    config = SamplerConfig.umi()
    ds = local_dataset(buffer, config, output="policy")
    window = reference_indices(umi_root["meta/episode_ends"][:], config)[5]
    raw = reference_sample(umi_root, window, config)
    sample = ds[5]
    image = sample["obs"]["camera0_rgb"]
    assert image.dtype == np.float32 and image.shape == (2, 3, 224, 224)
    assert image.min() >= 0.0 and image.max() <= 1.0
    np.testing.assert_array_equal(image, to_obs(raw["camera0_rgb"]))
    assert sample["action"].shape == (16, 7) and sample["action"].dtype == np.float32
    np.testing.assert_array_equal(sample["obs"]["robot0_eef_pos"], raw["robot0_eef_pos"].astype(np.float32))


def test_a_sample_reads_only_its_frames(buffer: Path) -> None:
    ds = local_dataset(buffer, SamplerConfig.umi())
    source = ds.zip.source
    before = source.requests, source.bytes_read
    ds[len(ds) - 1]
    frame_bytes = sum(ds.zip.infos[f"data/camera0_rgb/{i}.0.0.0"].file_size for i in range(2))
    assert source.requests - before[0] == 1  # two frames 3 steps apart: one coalesced ranged GET
    assert source.bytes_read - before[1] < 4 * frame_bytes + 2048


def test_block_cache_serves_later_epochs_and_other_processes(buffer: Path, tmp_path: Path) -> None:
    plain = local_dataset(buffer, SamplerConfig.umi())
    first = local_dataset(buffer, SamplerConfig.umi(), cache_dir=tmp_path)
    epoch = [first[i] for i in range(len(first))]
    for i, sample in enumerate(epoch):
        assert_same(sample, plain[i])
    assert first.zip.blocks is not None
    touched = {start for start, _ in first.zip.source.ranges}
    assert len(touched) == len(first.zip.source.ranges)  # no range was read twice
    again = local_dataset(buffer, SamplerConfig.umi(), cache_dir=tmp_path)  # another process, same commit
    opened = again.zip.source.requests  # the zip directory only: it is always read from the lake
    assert 1 <= opened <= 2
    for i, sample in enumerate(epoch):
        assert_same(again[i], sample)
    assert again.zip.source.requests == opened and again.zip.blocks is not None and again.zip.blocks.misses == 0
    other_size = local_dataset(buffer, SamplerConfig.umi(), cache_dir=tmp_path, block_bytes=128 * 1024)
    assert other_size.zip.blocks is not None and other_size.zip.blocks.dir != again.zip.blocks.dir


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed header"])
def test_a_damaged_block_file_is_read_again(buffer: Path, tmp_path: Path, damage: str) -> None:
    warm = local_dataset(buffer, SamplerConfig.umi(), cache_dir=tmp_path)
    epoch = [warm[i] for i in range(len(warm))]
    ds = local_dataset(buffer, SamplerConfig.umi(), cache_dir=tmp_path)
    blocks = ds.zip.blocks
    assert blocks is not None
    info = ds.zip.infos[ds._frame_names(5)[-1]]  # a frame the epoch reads
    under = blocks.blocks(info.header_offset, info.header_offset + 30 + len(info.filename) + info.file_size)
    k = under[0]
    victim = blocks.dir / f"{k:08d}"
    body = bytearray(victim.read_bytes())
    at = info.header_offset - blocks.span(k)[0]
    if damage == "garbage":
        body[at + 100 : at + 164] = bytes(64)  # same size, wrong bytes: only the CRC can tell
    elif damage == "truncated":
        body = body[: len(body) // 2]
    else:
        body[at : at + 4] = b"\0\0\0\0"  # the local header's signature
    victim.write_bytes(bytes(body))
    before = ds.zip.source.requests
    for i, sample in enumerate(epoch):
        assert_same(ds[i], sample)
    # a short file is not used at all: that block is fetched again. Wrong bytes fail the entry's check:
    # the blocks under it (one, or two where it crosses a boundary) are dropped and read again.
    dropped = 0 if damage == "truncated" else len(under)
    assert ds.zip.source.requests == before + max(1, dropped) and blocks.dropped == dropped
    whole = buffer.read_bytes()
    for j in under:
        start, length = blocks.span(j)
        assert blocks.has(j) and (blocks.dir / f"{j:08d}").read_bytes() == whole[start : start + length]


def test_bytes_damaged_in_the_lake_itself_are_an_error(buffer: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zarr.zip"
    body = bytearray(buffer.read_bytes())
    ds = local_dataset(buffer, SamplerConfig.umi())
    info = ds.zip.infos["data/camera0_rgb/10.0.0.0"]
    body[info.header_offset + 200] ^= 0xFF
    bad.write_bytes(bytes(body))
    for cache_dir in (None, tmp_path / "cache"):
        damaged = local_dataset(bad, SamplerConfig.umi(), cache_dir=cache_dir)
        with pytest.raises(DatasetFormatError, match=r"camera0_rgb/10.0.0.0' fails its CRC-32"):
            damaged.zip.read_entries(["data/camera0_rgb/10.0.0.0"])


def test_missing_array_is_named_before_any_sample(buffer: Path, tmp_path: Path) -> None:
    stripped = tmp_path / "no_gripper.zarr.zip"
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(stripped, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if not info.filename.startswith("data/robot0_gripper_width/"):
                dst.writestr(info, src.read(info))
    zf = RemoteZip(FileSource(stripped), stripped.stat().st_size, "lakefs://x")
    assert "data/robot0_gripper_width/.zarray" not in zf.infos
    with pytest.raises(ConfigError, match="robot0_gripper_width"):
        check_arrays(zf, SamplerConfig.umi(), "lakefs://x")


def test_horizon_longer_than_every_episode(buffer: Path) -> None:
    config = SamplerConfig.umi(action=KeyWindow(horizon=40, down_sample_steps=3))
    with pytest.raises(ConfigError, match=r"action horizon 40 .* longer than every episode"):
        local_dataset(buffer, config)


def test_a_dataset_pickles_for_loader_workers_without_its_connections(buffer: Path) -> None:
    ds = local_dataset(buffer, SamplerConfig.umi())
    assert_same(pickle.loads(pickle.dumps(ds))[7], ds[7])
    source = RangeSource(S3Target(endpoint="http://127.0.0.1:1", access_key="k", secret_key="s"), "b", "k")
    source._client = object()  # a live boto3 client would not pickle; each worker opens its own
    assert pickle.loads(pickle.dumps(source))._client is None
