"""The dataloader benchmark against the real stack: every path decodes every episode it counts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from robolake.bench import core, dataloader, report, results
from robolake.config import Settings
from tests.conftest import s3_client

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
