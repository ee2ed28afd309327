"""download_umi_data.py and the data benchmarks, run as a user runs them, against the test stack."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from robolake.stack.native import NativeStack
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "download_umi_data.py"
ROBOLAKE = str(Path(sys.executable).parent / "robolake")


def run(
    cmd: list[str], env: dict[str, str], cwd: Path = ROOT, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def settings_env_free() -> dict[str, str]:
    """The environment without any stack settings (for runs that never reach a server)."""
    return {**os.environ, "ROBOLAKE_ENV_FILE": "/nonexistent/.env"}


def _dataset_state(client: Any, dataset: str) -> dict[tuple[str, str], tuple[str, Any]]:
    state = {}
    for bucket in ("umi-raw", "umi-experiments"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                if f"/{dataset}/" in obj["Key"] or obj["Key"] == f"manifests/{dataset}.json":
                    state[(bucket, obj["Key"])] = (obj["ETag"], obj["LastModified"])
    return state


def test_generate_upload_verifies_everything_and_a_second_run_changes_nothing(
    stack: NativeStack, client: Any, tmp_path: Path
) -> None:
    env = settings_env(stack.settings)
    accel = stack.settings.accelerator_endpoint.removeprefix("http://")
    dataset = f"e2e_{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--generate",
        "--upload",
        "--profile",
        "tiny",
        "--seed",
        "5",
        "--experiments",
        "--out",
        str(tmp_path / "umi_data"),
        "--minio-endpoint",
        accel,
        "--name",
        dataset,
    ]
    first = run([*cmd, "--json"], env)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    upload = doc["upload"]["upload"]
    assert doc["upload"]["dataset"] == dataset and upload["failures"] == []
    assert upload["objects"] == doc["upload"]["objects"] and upload["skipped"] == 0
    assert upload["endpoint"] == stack.settings.accelerator_endpoint

    manifest = json.loads(client.get_object(Bucket="umi-raw", Key=f"manifests/{dataset}.json")["Body"].read())
    assert len(manifest["objects"]) == upload["objects"] - 1  # every object but the manifest itself
    for obj in manifest["objects"]:  # read back every object and compare its sha256
        body = client.get_object(Bucket=obj["bucket"], Key=obj["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == obj["sha256"], obj["key"]
    kinds = {o["kind"] for o in manifest["objects"]}
    assert kinds == {"pose", "gripper", "video", "original", "config"}

    before = _dataset_state(client, dataset)
    assert len(before) == upload["objects"]
    second = run(cmd, env)
    assert second.returncode == 0, second.stderr
    assert "0 objects uploaded and verified" in " ".join(second.stderr.split())
    assert _dataset_state(client, dataset) == before  # same ETags and LastModified: nothing rewritten


def test_help_explains_every_flag_with_an_example() -> None:
    result = run([sys.executable, str(SCRIPT), "--help"], settings_env_free())
    assert result.returncode == 0
    text = result.stdout
    for flag in (
        "--generate",
        "--upload",
        "--experiments",
        "--benchmark",
        "--minio-endpoint",
        "--episodes",
        "--profile",
        "--seed",
        "--out",
    ):
        assert flag in text
    assert "small_file_performance" in text and "127.0.0.1:9000" in text and "examples:" in text


@pytest.mark.parametrize("endpoint", ["localhost", "127.0.0.1:port", "ftp://h:1"])
def test_bad_minio_endpoint_is_named(endpoint: str) -> None:
    result = run([sys.executable, str(SCRIPT), "--upload", "--minio-endpoint", endpoint], settings_env_free())
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--minio-endpoint: endpoint {endpoint!r} is not HOST:PORT" in result.stderr


def test_without_robolake_it_points_to_deploy_local() -> None:
    # -S: no site-packages, so robolake is not importable (as with a system python).
    result = run([sys.executable, "-S", str(SCRIPT), "--generate"], settings_env_free())
    assert result.returncode == 1
    assert "cannot import robolake" in result.stderr and "./deploy-local.sh" in result.stderr
    assert ".venv/bin/python download_umi_data.py" in result.stderr


def test_small_file_benchmark_via_the_seed_flag(stack: NativeStack, client: Any, tmp_path: Path) -> None:
    env = settings_env(stack.settings)
    node = stack.settings.minio_endpoints[1].removeprefix("http://")
    result = run(
        [
            sys.executable,
            str(SCRIPT),
            "--benchmark",
            "small_file_performance",
            "--smoke",
            "--minio-endpoint",
            node,
            "--json",
        ],
        env,
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)["benchmark"]
    assert doc["summary"]["direct_endpoint"] == stack.settings.minio_endpoints[1]
    cells = {(c["path"], c["op"], c["concurrency"]): c for c in doc["series"]}
    paths = ("direct", "accelerator cold", "accelerator warm", "accelerator batch")
    assert set(cells) == {(p, "GET", level) for p in paths for level in (1, 8)} | {
        ("accelerator", op, level) for op in ("PUT", "HEAD", "LIST") for level in (1, 8)
    }
    for cell in cells.values():
        assert cell["errors"] == 0 and cell["per_s"] > 0
        assert set(cell["latency_ms"]) >= {"p50", "p90", "p99", "p99.9"} and cell["latency_cdf_ms"]
    for level in (1, 8):  # every cold object was read exactly once, each a miss
        assert cells[("accelerator cold", "GET", level)]["count"] == 300
        assert (
            cells[("accelerator batch", "GET", level)]["count"]
            == 100 * cells[("accelerator batch", "GET", level)]["requests"]
        )
    assert "[14/14] LIST via accelerator, 8 concurrent" in result.stderr
    local = tmp_path / "benchmarks"
    (run_dir,) = list(local.iterdir())
    assert json.loads((run_dir / "results.json").read_text())["benchmark"] == "small_file_performance"
    assert "| accelerator warm | GET | 8 |" in (run_dir / "report.md").read_text()
    expected = {"results.json", "report.md", "throughput.png", "latency_cdf.png"}
    assert {p.name for p in run_dir.iterdir()} == expected
    assert (run_dir / "throughput.png").read_bytes().startswith(b"\x89PNG")
    remote = client.list_objects_v2(Bucket="umi-experiments", Prefix=f"benchmarks/{run_dir.name}/")
    assert {o["Key"].rsplit("/", 1)[1] for o in remote.get("Contents", [])} == expected
    for prefix in (doc["prefix"] + "/", doc["prefix"] + "-cold/"):
        leftovers = client.list_objects_v2(Bucket="robolake-bench-small", Prefix=prefix)
        assert leftovers.get("KeyCount", 0) == 0


def test_bench_small_files_command_puts_to_a_minio_node(stack: NativeStack, tmp_path: Path) -> None:
    node = stack.settings.minio_endpoints[0].removeprefix("http://")
    result = run(
        [
            ROBOLAKE,
            "bench",
            "small-files",
            "--endpoint",
            node,
            "--objects",
            "40",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--concurrency",
            "1,4",
            "--ops",
            "put,get,list",
            "--paths",
            "direct,accelerator warm",
            "--out",
            str(tmp_path),
            "--json",
        ],
        settings_env(stack.settings),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["summary"]["ops_endpoint"] == stack.settings.minio_endpoints[0]
    assert [(c["path"], c["op"], c["concurrency"]) for c in doc["series"]] == [
        ("direct", "GET", 1),
        ("accelerator warm", "GET", 1),
        ("direct", "GET", 4),
        ("accelerator warm", "GET", 4),
        (stack.settings.minio_endpoints[0], "PUT", 1),
        (stack.settings.minio_endpoints[0], "PUT", 4),
        (stack.settings.minio_endpoints[0], "LIST", 1),
        (stack.settings.minio_endpoints[0], "LIST", 4),
    ]
    bad = run([ROBOLAKE, "bench", "small-files", "--concurrency", "1,x"], settings_env(stack.settings))
    assert bad.returncode == 2 and "--concurrency '1,x'" in bad.stderr
    bad = run([ROBOLAKE, "bench", "small-files", "--paths", "direct,sideways"], settings_env(stack.settings))
    assert bad.returncode == 2 and "unknown paths ['sideways']" in bad.stderr


def test_bench_upload_smoke_compares_with_warp(stack: NativeStack, tmp_path: Path) -> None:
    result = run(
        [ROBOLAKE, "bench", "upload", "--smoke", "--out", str(tmp_path), "--json"],
        settings_env(stack.settings),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    summary = doc["summary"]
    assert doc["ours"]["objects"] == 500 and doc["ours"]["failures"] == []
    assert summary["ours_objects_per_s"] > 0 and summary["warp_put_objects_per_s"] > 0
    assert summary["ratio"] == pytest.approx(
        summary["ours_objects_per_s"] / summary["warp_put_objects_per_s"], rel=0.01
    )
    (run_dir,) = list(tmp_path.iterdir())
    report = (run_dir / "report.md").read_text()
    assert "Ratio ours / warp" in report and "warp put (before)" in report
