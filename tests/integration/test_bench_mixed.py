"""The mixed-workload benchmark's smoke run against the session stack: every kind, both paths, no leftovers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from robolake.bench import mixed, report, results
from robolake.config import Settings
from tests.conftest import s3_client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smoke(settings: Settings) -> tuple[dict[str, Any], list[str], float]:
    messages: list[str] = []
    began = time.perf_counter()
    doc = mixed.run(settings, mixed.SMOKE_SPEC, mixed.SMOKE_PARAMS, messages.append)
    return doc, messages, time.perf_counter() - began


def test_every_kind_on_every_path_ran_without_errors(smoke: tuple[dict[str, Any], list[str], float]) -> None:
    doc, _, _ = smoke
    cells = {(s["path"], s["op"], s["concurrency"]): s for s in doc["series"]}
    level = mixed.SMOKE_SPEC.concurrency[0]
    expected = {(path, op, level) for path in mixed.PATHS for op in ("GET small", "GET video", "PUT episode", "LIST")}
    assert set(cells) == expected
    for key, s in cells.items():
        assert s["count"] > 0 and s["errors"] == 0, key
        assert s["workers"] == 1, key  # 4 workers over 4 kinds
    for path in mixed.PATHS:
        video = cells[(path, "GET video", level)]
        assert video["bytes"] == video["count"] * mixed.SMOKE_PARAMS.video_bytes
        assert video["ttfb_ms"]["p50"] <= video["latency_ms"]["p50"]
        per_dir = mixed.SMOKE_PARAMS.objects_per_dir // 2  # a directory holds one sensor: pose or gripper
        assert cells[(path, "LIST", level)]["count"] % per_dir == 0


def test_document_has_the_shared_shape(smoke: tuple[dict[str, Any], list[str], float]) -> None:
    doc, messages, seconds = smoke
    assert doc["benchmark"] == "mixed_workload" and "mixed-workload" in doc["run_id"]
    assert doc["params"]["prefix"] == doc["run_id"] + "/" and doc["started"]
    assert doc["machine"]["cpus"] >= 1 and doc["versions"]["robolake"]
    p = doc["params"]
    spec = p["spec"]
    assert spec["seed"] == 0 and spec["warmup_s"] == 0.5 and spec["duration_s"] == 1.5
    assert tuple(spec["concurrency"]) == (4,) and spec["operations"] is None
    assert p["mix"] == mixed.DEFAULT_MIX and p["workers"] == {"4": {"loader": 1, "stream": 1, "upload": 1, "list": 1}}
    for s in doc["series"]:
        assert {"p50", "p90", "p99", "p99.9", "mean", "samples"} <= set(s["latency_ms"])
        assert s["latency_cdf_ms"][-1][1] == 1.0 and s["per_s"] > 0
    summary = doc["summary"]
    assert summary["concurrency"] == 4 and summary["errors"] == 0
    assert set(summary["accelerator_vs_direct"]) == {"GET small", "GET video", "PUT episode", "LIST"}
    assert all(r["ratio"] is not None for r in summary["accelerator_vs_direct"].values())
    assert messages[0].startswith("prepare:")
    assert "[2/2] accelerator, 4 workers (loader 1, stream 1, upload 1, list 1): 1.5 s" in messages
    assert seconds < 25, f"the smoke run took {seconds:.1f} s; it must stay under 25 s"


def test_everything_created_is_deleted(settings: Settings, smoke: tuple[dict[str, Any], list[str], float]) -> None:
    doc, _, _ = smoke
    client = s3_client(settings.minio_endpoints[0], settings.minio_root_user, settings.minio_root_password)
    listed = client.list_objects_v2(Bucket=mixed.BENCH_BUCKET, Prefix=doc["params"]["prefix"])
    assert listed["KeyCount"] == 0, [o["Key"] for o in listed.get("Contents", [])][:5]


def test_plots_and_markdown(smoke: tuple[dict[str, Any], list[str], float]) -> None:
    doc = json.loads(results.as_json(smoke[0]))  # as read back from results.json
    pngs = report.plots(doc, mixed.TITLE)
    assert set(pngs) == {"throughput.png", "latency_cdf.png"}
    assert all(png.startswith(b"\x89PNG") for png in pngs.values())
    md = mixed.markdown(doc)
    assert md.startswith(f"# {mixed.TITLE}\n")
    assert "| path | op | concurrency | rate |" in md and "| accelerator | GET small | 4 |" in md
    assert "| 4 | 1 | 1 | 1 | 1 |" in md and "Accelerator vs direct at concurrency 4" in md
