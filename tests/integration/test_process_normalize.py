"""The ml dataset normalized by the stats.json `process stats` committed beside its buffer, read from the stack.

A generated replay buffer is committed, `run_stats` commits its stats.json beside it, and
LakeDataset opens the buffer at that commit with ``normalize=``: with every step a sample's
current step once (split "all", action padding), the normalized low-dim values over all samples
span exactly [-1, 1] per dimension ("limits") or have mean 0 and std 1 ("gaussian"), and each
equals numpy's map of the raw value.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robolake.ml import LakeDataset, SamplerConfig
from robolake.processing import EngineOptions, run_stats
from robolake.stack.native import NativeStack
from robolake.umi import generate_dataset, open_replay_buffer
from robolake.versioning import LakeFSClient, NotFoundError
from tests.integration.conftest import REPO, MakeBranch

pytestmark = pytest.mark.integration
BUFFER = "datasets/norm/replay_buffer/dataset.zarr.zip"
KEYS = ("robot0_eef_pos", "robot0_eef_rot_axis_angle", "robot0_gripper_width")
CONFIG = SamplerConfig.umi(rgb={}, split="all", action_padding=True, val_ratio=0.0)


@pytest.fixture(scope="module")
def committed(stack: NativeStack, tmp_path_factory: pytest.TempPathFactory) -> Any:
    gen = tmp_path_factory.mktemp("gen")
    generate_dataset(gen, profile="tiny", seed=21, episodes=3)
    local = gen / "replay_buffer" / "dataset.zarr.zip"
    body = local.read_bytes()
    with LakeFSClient.from_settings(stack.settings) as client:
        name = f"t-norm-{hashlib.sha256(body).hexdigest()[:8]}"
        client.create_branch(REPO, name, "main")
        client.upload_object(REPO, name, BUFFER, body, md5_hex=hashlib.md5(body).hexdigest())
        bare = client.commit(REPO, name, "a replay buffer, no stats yet").id
        run_stats(stack.settings, name, BUFFER, engine=EngineOptions(inline=True))
        yield {"branch": name, "bare": bare, "local": local}
        client.delete_branch(REPO, name)


def _current_values(ds: LakeDataset) -> dict[str, np.ndarray]:
    """Every sample's current-step low-dim values (the last of its obs window) and its first action."""
    samples = ds.__getitems__(list(range(len(ds))))
    out = {k: np.stack([s[k][-1] for s in samples]) for k in KEYS}
    out["action"] = np.stack([s["action"][0] for s in samples])
    return out


def test_limits_maps_every_dimension_onto_minus_one_to_one(stack: NativeStack, committed: dict[str, Any]) -> None:
    ds = LakeDataset.open(stack.settings, committed["branch"], BUFFER, CONFIG, normalize="limits")
    assert ds.lineage()["normalize"]["mode"] == "limits"
    got = _current_values(ds)
    raw = open_replay_buffer(committed["local"])
    assert len(ds) == int(raw["meta/episode_ends"][-1]), "every step is a current step once"
    for key, values in got.items():
        assert values.dtype == np.float32
        np.testing.assert_allclose(values.min(axis=0), -1.0, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(values.max(axis=0), 1.0, atol=1e-5, err_msg=key)
    pos = raw["data/robot0_eef_pos"][:].astype(np.float64)
    want = (pos - pos.min(axis=0)) / (pos.max(axis=0) - pos.min(axis=0)) * 2 - 1
    np.testing.assert_allclose(got["robot0_eef_pos"], want, atol=1e-5)


def test_gaussian_gives_zero_mean_unit_std_and_the_plain_read_is_unchanged(
    stack: NativeStack, committed: dict[str, Any]
) -> None:
    normalized = _current_values(
        LakeDataset.open(stack.settings, committed["branch"], BUFFER, CONFIG, normalize="gaussian")
    )
    plain = _current_values(LakeDataset.open(stack.settings, committed["branch"], BUFFER, CONFIG))
    raw = open_replay_buffer(committed["local"])
    for key in KEYS:
        values = normalized[key].astype(np.float64)
        np.testing.assert_allclose(values.mean(axis=0), 0.0, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(values.std(axis=0), 1.0, atol=1e-4, err_msg=key)
        source = raw[f"data/{key}"][:]
        np.testing.assert_array_equal(plain[key], source, err_msg=f"{key} without normalize is the stored array")
        wide = source.astype(np.float64)
        expected = (wide - wide.mean(axis=0)) / wide.std(axis=0)
        np.testing.assert_allclose(values, expected, atol=1e-5, err_msg=key)


def test_a_commit_without_stats_json_is_one_clear_error(stack: NativeStack, committed: dict[str, Any]) -> None:
    with pytest.raises(NotFoundError, match=r"no statistics at .*replay_buffer/stats\.json.*process stats"):
        LakeDataset.open(stack.settings, committed["bare"], BUFFER, CONFIG, normalize="limits")


def test_stats_at_another_path_are_used_when_named(
    stack: NativeStack, committed: dict[str, Any], branch: MakeBranch, tmp_path: Path
) -> None:
    with LakeFSClient.from_settings(stack.settings) as client:
        stats = json.loads(client.get_object(REPO, committed["branch"], "datasets/norm/replay_buffer/stats.json"))
        name = branch("norm-moved", committed["branch"])
        body = json.dumps(stats).encode()
        client.upload_object(REPO, name, "elsewhere/s.json", body, md5_hex=hashlib.md5(body).hexdigest())
        client.commit(REPO, name, "stats elsewhere")
    ds = LakeDataset.open(stack.settings, name, BUFFER, CONFIG, normalize="limits", stats_path="elsewhere/s.json")
    assert ds.normalizer is not None and ds.normalizer.source.endswith("/elsewhere/s.json")
