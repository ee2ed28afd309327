"""robolake.ml against the real stack: a replay buffer in lakeFS, read through the accelerator.

The reference windows are UMI's SequenceSampler as tests/unit/test_ml_reference.py reproduces it,
over the same buffer read locally with zarr 2 and UMI's codec.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numcodecs.registry
import pytest

from robolake.accelerator.admin import read_stats
from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.ml import KeyWindow, LakeDataset, RunRecord, SamplerConfig, list_runs, write_run_record
from robolake.storage.boto import boto3_client
from robolake.storage.layout import EXPERIMENTS_BUCKET
from robolake.storage.s3 import S3Target
from robolake.umi import generate_dataset
from robolake.versioning import LakeFSClient, NotFoundError
from tests.integration.conftest import REPO, MakeBranch
from tests.stackutil import settings_env
from tests.umi_training_loader import UmiJpegXl, copy_from_store
from tests.unit.test_ml_reference import BUFFER, assert_same, latency_config, reference_indices, reference_sample

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def buffers(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two different tiny buffers (seeds 11 and 12), 3 episodes each."""
    out = {}
    for seed in (11, 12):
        where = tmp_path_factory.mktemp(f"umi{seed}")
        generate_dataset(where, profile="tiny", episodes=3, seed=seed)
        out[seed] = where / BUFFER
    return out


@pytest.fixture
def roots(buffers: dict[int, Path], monkeypatch: pytest.MonkeyPatch) -> dict[int, Any]:
    monkeypatch.setitem(numcodecs.registry.codec_registry, "imagecodecs_jpegxl", UmiJpegXl)
    return {seed: copy_from_store(str(path)) for seed, path in buffers.items()}


def put(client: LakeFSClient, branch: str, local: Path, path: str) -> str:
    body = local.read_bytes()
    client.upload_object(REPO, branch, path, body, md5_hex=hashlib.md5(body).hexdigest())
    return client.commit(REPO, branch, f"put {path}").id


def assert_equals_reference(ds: LakeDataset, root: Any, config: SamplerConfig) -> None:
    windows = reference_indices(root["meta/episode_ends"][:], config)
    assert len(ds) == len(windows) > 0
    for i, window in enumerate(windows):
        assert_same(ds[i], reference_sample(root, window, config))


@pytest.fixture
def record_cleanup(settings: Settings) -> Iterator[list[str]]:
    keys: list[str] = []
    yield keys
    client = boto3_client(S3Target.from_settings(settings))
    for key in keys:
        with contextlib.suppress(Exception):
            client.delete_object(Bucket=EXPERIMENTS_BUCKET, Key=key)


def test_windows_read_through_the_accelerator_equal_umis(
    settings: Settings, client: LakeFSClient, branch: MakeBranch, buffers: dict[int, Path], roots: dict[int, Any]
) -> None:
    name = branch("ml")
    path = f"ml/{name}/{BUFFER}"
    commit = put(client, name, buffers[11], path)
    for config in (SamplerConfig.umi(), latency_config()):
        ds = LakeDataset.open(settings, name, path, config, client=client)
        assert ds.commit_id == commit and ds.ref == name
        assert ds.zip.source.target.endpoint == settings.accelerator_endpoint
        assert ds.zip.source.bucket == "lakefs-storage"
        assert_equals_reference(ds, roots[11], config)
    # the sample reads are requests the accelerator answered
    before, made = accelerator_gets(settings), ds.zip.source.requests
    for i in range(5):
        ds[i]
    assert accelerator_gets(settings) - before >= ds.zip.source.requests - made > 0
    # lakeFS's S3 gateway serves the same bytes; a prefix finds the one buffer under it
    gateway = LakeDataset.open(settings, commit, f"ml/{name}/", SamplerConfig.umi(), via="gateway")
    assert gateway.path == path and gateway.zip.source.bucket == REPO
    assert_equals_reference(gateway, roots[11], SamplerConfig.umi())


def accelerator_gets(settings: Settings) -> int:
    """Requests the accelerator has answered (every kind: reads of a large object are relayed, not cached)."""
    events = read_stats(settings)["events"]
    return sum(count for name, count in events.items() if name.startswith("requests_"))


def test_a_tag_keeps_its_bytes_and_the_run_record_names_the_commit(
    settings: Settings,
    client: LakeFSClient,
    branch: MakeBranch,
    buffers: dict[int, Path],
    roots: dict[int, Any],
    record_cleanup: list[str],
) -> None:
    name = branch("mltag")
    path = f"ml/{name}/{BUFFER}"
    first = put(client, name, buffers[11], path)
    tag = f"t-ml-{uuid.uuid4().hex[:8]}"
    client.create_tag(REPO, tag, first)
    try:
        at_tag = LakeDataset.open(settings, tag, path, SamplerConfig.umi())
        second = put(client, name, buffers[12], path)  # the branch moves on to different bytes
        assert second != first
        assert_equals_reference(
            LakeDataset.open(settings, name, path, SamplerConfig.umi()), roots[12], SamplerConfig.umi()
        )
        again = LakeDataset.open(settings, tag, path, SamplerConfig.umi())
        assert at_tag.commit_id == again.commit_id == first
        assert_equals_reference(again, roots[11], SamplerConfig.umi())
        assert_equals_reference(at_tag, roots[11], SamplerConfig.umi())  # opened before the move, read after

        record = RunRecord.for_dataset(again, seed=7)
        record_cleanup.append(record.key)
        uri = write_run_record(settings, record)
        assert uri == f"s3://umi-experiments/results/{record.run_id}/run.json"
        stored = boto3_client(S3Target.from_settings(settings)).get_object(Bucket=EXPERIMENTS_BUCKET, Key=record.key)
        saved = json.loads(stored["Body"].read())
        assert (saved["commit_id"], saved["ref"], saved["path"], saved["seed"]) == (first, tag, path, 7)
        assert saved["sampler"]["action"]["horizon"] == 16 and saved["created"]
        assert [r.run_id for r in list_runs(settings, commit=first[:12])] == [record.run_id]
        assert list(list_runs(settings, commit=second)) == []

        cli = [str(Path(sys.executable).parent / "robolake"), "runs", "list", "--commit", first, "--json"]
        out = subprocess.run(cli, env=settings_env(settings), capture_output=True, text=True, timeout=60, check=True)
        assert [r["run_id"] for r in json.loads(out.stdout)] == [record.run_id]
        table = subprocess.run(
            cli[:-1], env=settings_env(settings), capture_output=True, text=True, timeout=60, check=True
        )
        assert record.run_id in table.stdout and first[:12] in table.stdout
    finally:
        client.delete_tag(REPO, tag)


def test_bad_input_is_one_clear_error_before_any_read(
    settings: Settings, client: LakeFSClient, branch: MakeBranch, buffers: dict[int, Path]
) -> None:
    name = branch("mlbad")
    path = f"ml/{name}/{BUFFER}"
    put(client, name, buffers[11], path)
    with pytest.raises(NotFoundError, match=r"ref 'no-such-ref-x' is not a branch, tag or commit of repository"):
        LakeDataset.open(settings, "no-such-ref-x", path)
    with pytest.raises(NotFoundError, match=r"no replay buffer at path 'ml/nothing/dataset.zarr.zip' in"):
        LakeDataset.open(settings, name, "ml/nothing/dataset.zarr.zip")
    with pytest.raises(NotFoundError, match=r"path 'ml/nothing/' holds no replay buffer"):
        LakeDataset.open(settings, name, "ml/nothing/")
    obs = KeyWindow(horizon=2, down_sample_steps=3)
    two_cams = SamplerConfig.umi(rgb={"camera0_rgb": obs, "camera1_rgb": obs})
    with pytest.raises(ConfigError, match=r"lacks 'data/camera1_rgb', which the sampler config needs"):
        LakeDataset.open(settings, name, path, two_cams)
    too_long = SamplerConfig.umi(action=KeyWindow(horizon=60, down_sample_steps=3))
    with pytest.raises(ConfigError, match=r"action horizon 60 .* longer than every episode"):
        LakeDataset.open(settings, name, path, too_long)


def test_blocks_read_through_the_accelerator_once_then_from_disk(
    settings: Settings,
    client: LakeFSClient,
    branch: MakeBranch,
    buffers: dict[int, Path],
    roots: dict[int, Any],
    tmp_path: Path,
) -> None:
    name = branch("mlblocks")
    path = f"ml/{name}/{BUFFER}"
    put(client, name, buffers[11], path)
    config = SamplerConfig.umi()
    ds = LakeDataset.open(settings, name, path, config, client=client, cache_dir=tmp_path, block_bytes=1 << 20)
    assert ds.zip.blocks is not None
    ds.schedule(list(range(len(ds)))[::-1])
    assert ds._ahead is not None and ds._ahead.wait_idle(60)
    fetched = ds.zip.blocks.fetched
    assert 0 < fetched <= ds.zip.blocks.n_blocks and ds.zip.source.requests <= fetched + 2  # + the directory
    made = ds.zip.source.requests
    assert_equals_reference(ds, roots[11], config)
    assert ds.zip.blocks.fetched == fetched and ds.zip.source.requests == made  # every frame from local disk
    again = LakeDataset.open(settings, name, path, config, client=client, cache_dir=tmp_path, block_bytes=1 << 20)
    assert again.zip.blocks is not None
    windows = reference_indices(roots[11]["meta/episode_ends"][:], config)
    batch = [0, len(windows) - 1, 7, 7]
    for got, i in zip(again.__getitems__(batch), batch, strict=True):
        assert_same(got, reference_sample(roots[11], windows[i], config))
    assert again.zip.blocks.fetched == 0 and again.zip.blocks.misses == 0
