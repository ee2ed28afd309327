"""The dataloader benchmark against the real stack: every path decodes every episode it counts;
the training path runs its three loaders on the same samples, reads as each says, and cleans up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from robolake.bench import core, dataloader, loaders, report, results, training
from robolake.config import Settings
from robolake.ml import SamplerConfig
from robolake.versioning import LakeFSClient, NotFoundError
from tests.conftest import s3_client
from tests.integration.conftest import REPO
from tests.stackutil import settings_env

pytestmark = pytest.mark.integration
LINES: list[str] = []


@pytest.fixture(scope="module")
def doc(settings: Settings) -> dict[str, Any]:
    return dataloader.run(settings, dataloader.SMOKE_SPEC, dataloader.SMOKE_PARAMS, LINES.append)


def cells(doc: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {(s["path"], s["concurrency"], s["unit"]): s for s in doc["series"]}


def test_every_path_loads_episodes_and_samples_at_every_level(doc: dict[str, Any]) -> None:
    found = cells(doc)
    frames = dataloader.SMOKE_PARAMS.frames
    assert len(doc["series"]) == 2 * len(dataloader.PATHS) * len(dataloader.SMOKE_SPEC.concurrency)
    for path in dataloader.PATHS:
        for level in dataloader.SMOKE_SPEC.concurrency:
            episodes, samples = found[(path, level, "episodes")], found[(path, level, "samples")]
            assert episodes["count"] > 0 and episodes["errors"] == 0 and samples["errors"] == 0
            # samples are counted from the decoded arrays: equality proves every episode was decoded
            assert samples["count"] == episodes["count"] * frames == episodes["samples"]
            assert episodes["per_s"] > 0 and samples["per_s"] == pytest.approx(episodes["per_s"] * frames, rel=1e-3)
            assert episodes["bytes"] > 0


def test_batch_requests_carry_the_configured_number_of_episodes(doc: dict[str, Any]) -> None:
    per_request = dataloader.SMOKE_PARAMS.batch_episodes
    for level in dataloader.SMOKE_SPEC.concurrency:
        batch = cells(doc)[("accelerator batch", level, "episodes")]
        assert batch["count"] == batch["requests"] * per_request
        assert batch["episodes_per_request"] == per_request and batch["op"] == f"load {per_request}/request"


def test_document_shape(doc: dict[str, Any]) -> None:
    doc = json.loads(results.as_json(doc))  # as saved: plain JSON
    assert doc["benchmark"] == "dataloader" and "-dataloader-" in doc["run_id"]
    assert doc["machine"]["cpus"] >= 1 and "python" in doc["machine"]
    assert {"robolake", "minio"} <= set(doc["versions"])
    params = doc["params"]
    assert params["episodes"] == dataloader.SMOKE_PARAMS.episodes and params["frames"] == dataloader.SMOKE_PARAMS.frames
    assert params["spec"]["seed"] == dataloader.SMOKE_SPEC.seed and params["spec"]["concurrency"] == [1, 4]
    for s in doc["series"]:
        if s["unit"] == "episodes":
            assert {"p50", "p90", "p99", "p99.9", "mean"} <= set(s["latency_ms"])
            assert len(s["latency_cdf_ms"]) >= core.CDF_POINTS and s["latency_cdf_ms"][-1][1] == 1.0
    summary = doc["summary"]
    assert summary["concurrency"] == max(dataloader.SMOKE_SPEC.concurrency)
    assert set(summary["paths"]) == set(dataloader.PATHS)
    assert all(row["episodes_per_s"] > 0 and row["samples_per_s"] > 0 for row in summary["paths"].values())
    assert summary["accelerator_vs_direct"] > 0 and summary["batch_vs_direct"] > 0
    assert 0 < summary["object_bytes"]["gripper"] < summary["object_bytes"]["pose"] < 1_000_000


def test_progress_lines_number_every_cell(doc: dict[str, Any]) -> None:
    total = len(dataloader.PATHS) * len(dataloader.SMOKE_SPEC.concurrency)
    numbered = [line for line in LINES if line.startswith("[")]
    assert len(numbered) == total and numbered[-1].startswith(f"[{total}/{total}] accelerator batch, 4 workers")


def test_nothing_is_left_in_the_bench_bucket(doc: dict[str, Any], settings: Settings) -> None:
    client = s3_client(settings.minio_endpoints[0], settings.minio_root_user, settings.minio_root_password)
    listed = client.list_objects_v2(Bucket=dataloader.BENCH_BUCKET, Prefix=doc["run_id"] + "/")
    assert listed.get("KeyCount", 0) == 0


def test_markdown_and_plots(doc: dict[str, Any]) -> None:
    text = dataloader.markdown(doc)
    assert text.startswith(f"# {dataloader.TITLE}")
    assert "| path | op | concurrency | rate |" in text and "episodes/s" in text and "samples/s" in text
    assert "| accelerator batch |" in text and "*sample*" in text
    pngs = report.plots(doc, dataloader.TITLE)
    assert set(pngs) == {"throughput.png", "latency_cdf.png"}
    assert all(data.startswith(b"\x89PNG") for data in pngs.values())


# ---- the training path (--mode training), at smoke size ------------------------------------------

TRAINING_LINES: list[str] = []


@pytest.fixture(scope="module")
def trained(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`robolake bench dataloader --mode training --smoke --json`, as a user runs it."""
    out = tmp_path_factory.mktemp("bench")
    cli = [str(Path(sys.executable).parent / "robolake"), "bench", "dataloader", "--mode", "training", "--smoke"]
    done = subprocess.run(
        [*cli, "--json", "--out", str(out)],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    TRAINING_LINES.extend(line.strip() for line in done.stderr.splitlines())
    doc: dict[str, Any] = json.loads(done.stdout)
    assert (out / doc["run_id"] / "report.md").is_file() and (out / doc["run_id"] / "throughput.png").is_file()
    return doc


def test_training_path_runs_every_loader_every_epoch_on_the_same_samples(trained: dict[str, Any]) -> None:
    smoke, s = training.SMOKE, trained["summary"]
    n = s["samples_per_epoch"]
    assert trained["benchmark"] == "dataloader" and trained["params"]["mode"] == "training" and n > 0
    assert [(r["path"], r["epoch"]) for r in trained["series"]] == [
        (kind, e) for kind in loaders.LOADERS for e in range(1, smoke.epochs + 1)
    ]
    for row in trained["series"]:
        runs = 2 if row["path"] == "umi" else 1  # UMI's loader brackets robolake's epoch: a run before, one after
        assert row["count"] == runs * n and row["per_s"] > 0 and row["unit"] == "samples"
        assert len(row.get("runs_per_s", [row["per_s"]])) == runs
        assert row["concurrency"] == smoke.workers and row["latency_ms"]["samples"] > 0
    # check_samples compared every sample's CRC-32 with UMI's loader's, or the run would have failed
    assert s["samples_equal"] is True and set(s["loaders"]) == set(loaders.LOADERS)
    assert set(s["vs_umi"]) == {"robolake", "naive"} and all(len(v) == smoke.epochs for v in s["vs_umi"].values())
    assert isinstance(s["robolake_meets_goal"], bool) and s["goal"] == training.GOAL


def test_training_path_reads_as_each_loader_says(trained: dict[str, Any]) -> None:
    s, smoke = trained["summary"], training.SMOKE
    rows = s["loaders"]
    assert rows["umi"]["gets"] == [0] * smoke.epochs  # from local disk, into memory
    horizon = SamplerConfig.umi().rgb["camera0_rgb"].horizon
    assert rows["naive"]["gets"] == [s["samples_per_epoch"] * horizon] * smoke.epochs  # one GET per frame
    blocks = -(-s["dataset"]["zip_bytes"] // smoke.block_bytes)
    assert sum(rows["robolake"]["gets"]) <= blocks and rows["robolake"]["gets"][1:] == [0] * (smoke.epochs - 1)
    assert 0 < s["cache_bytes"] <= s["dataset"]["zip_bytes"]
    # CPU per sample: the workers always; the servers' share comes from the GETs (the naive loader's many)
    assert set(s["servers_measured"]) == {"minio-1", "minio-2", "minio-3", "accelerator", "lakefs"}
    assert all(c["loader"] > 0 for row in rows.values() for c in row["cpu_ms_per_sample"])
    assert min(c["servers"] for c in rows["naive"]["cpu_ms_per_sample"]) > 0
    assert all(r is not None and r > 0 for r in s["cpu_vs_umi"]["naive"])
    for row in rows.values():
        assert row["processes"] == smoke.workers + 1 and row["peak_rss_bytes"] >= row["peak_pss_bytes"] > 0
        assert row["setup_s"] > 0


def test_training_path_cleans_up_its_branch(trained: dict[str, Any], settings: Settings) -> None:
    with LakeFSClient.from_settings(settings) as lakefs, pytest.raises(NotFoundError):
        lakefs.get_branch(REPO, trained["summary"]["dataset"]["branch"])


def test_training_path_report(trained: dict[str, Any], settings: Settings) -> None:
    client = s3_client(settings.minio_endpoints[0], settings.minio_root_user, settings.minio_root_password)
    stored = client.get_object(Bucket="umi-experiments", Key=f"benchmarks/{trained['run_id']}/results.json")
    assert json.loads(stored["Body"].read())["summary"]["samples_per_epoch"] == trained["summary"]["samples_per_epoch"]
    text = dataloader.markdown(trained)
    assert text.startswith(f"# {training.TITLE}") and "| robolake | epoch 1 cold |" in text
    assert "| loader | setup s | peak RSS MiB (all processes) | peak PSS MiB | processes |" in text
    assert "Goal: robolake >= 0.70x UMI's loader in every epoch" in text
    numbered = [line for line in TRAINING_LINES if line.startswith("[")]
    assert len(numbered) == training.SMOKE.epochs * (len(loaders.LOADERS) + 1)
    assert numbered[2].startswith("[3/8] umi, epoch 1") and "robolake, epoch 2 (warm cache)" in numbered[5]
    pngs = report.plots(json.loads(results.as_json(trained)), training.TITLE)
    assert all(data.startswith(b"\x89PNG") for data in pngs.values())
