"""The benchmark suite run as a user runs it (smoke size): `robolake bench ...` and download_umi_data.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from robolake.stack.native import NativeStack
from tests.e2e.test_seed_cli import ROBOLAKE, ROOT, run
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e
REPORT_FILES = {"results.json", "report.md", "throughput.png", "latency_cdf.png"}


def _run_dir(out: Path, doc: dict[str, Any], client: Any) -> Path:
    """The run's local directory holds the four report files, and so does its bucket prefix."""
    run_dir = out / doc["run_id"]
    assert {p.name for p in run_dir.iterdir()} == REPORT_FILES
    for png in ("throughput.png", "latency_cdf.png"):
        assert (run_dir / png).read_bytes().startswith(b"\x89PNG\r\n")
    remote = client.list_objects_v2(Bucket="umi-experiments", Prefix=f"benchmarks/{doc['run_id']}/")
    assert {o["Key"].rsplit("/", 1)[1] for o in remote.get("Contents", [])} == REPORT_FILES
    stored = json.loads((run_dir / "results.json").read_text())
    assert stored["machine"]["cpus"] >= 1 and stored["versions"]["warp"].startswith("v")
    return run_dir


def test_large_file_streaming_smoke(stack: NativeStack, client: Any, tmp_path: Path) -> None:
    result = run(
        [ROBOLAKE, "bench", "large-file-streaming", "--smoke", "--out", str(tmp_path), "--json"],
        settings_env(stack.settings),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    cells = {(c["path"], c["op"], c["concurrency"]): c for c in doc["series"]}
    for size in ("6MiB", "16MiB"):
        upload = cells[("robolake uploader", f"PUT multipart {size}", 4)]
        assert upload["count"] == 2 and upload["mib_per_s"] > 0
        for level in (1, 2):
            for path in ("direct", "accelerator"):
                stream = cells[(path, f"GET stream {size}", level)]
                assert stream["errors"] == 0 and stream["count"] > 0 and stream["ttfb_ms"]["p50"] > 0
                assert stream["bytes"] == stream["count"] * int(size.removesuffix("MiB")) * 2**20
            ranged = cells[("direct", f"GET range 1MiB of {size}", level)]
            assert ranged["unit"] == "ranges" and ranged["bytes"] == ranged["count"] * 2**20
    warp = cells[("warp", "GET stream 16MiB", 2)]
    assert warp["measured_by"] == "warp" and warp["mib_per_s"] > 0 and "--secret-key ***" in warp["command"]
    sizes = doc["summary"]["sizes"]
    assert sizes["16MiB"]["ours_vs_warp_c2"] == pytest.approx(
        sizes["16MiB"]["direct_c2_mib_per_s"] / sizes["16MiB"]["warp_c2_mib_per_s"], rel=0.01
    )
    assert "ours_vs_warp_c1" not in sizes["6MiB"]  # smoke: warp only for the largest size
    run_dir = _run_dir(tmp_path, doc, client)
    report = (run_dir / "report.md").read_text()
    assert "## robolake streaming GET vs warp" in report and "| 16MiB | 2 |" in report
    assert "[18/18]" in result.stderr
    leftovers = client.list_objects_v2(Bucket="robolake-bench-stream", Prefix=doc["run_id"])
    assert leftovers.get("KeyCount", 0) == 0


def test_warp_check_smoke_runs_both_drivers_on_the_same_objects(
    stack: NativeStack, client: Any, tmp_path: Path
) -> None:
    result = run(
        [ROBOLAKE, "bench", "warp-check", "--smoke", "--out", str(tmp_path), "--json"],
        settings_env(stack.settings),
        timeout=400,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    s = doc["summary"]
    for name, metric in (("small", "objects/s"), ("large", "MiB/s")):
        assert s[name]["metric"] == metric and s[name]["ours"] > 0 and s[name]["warp"] > 0
        assert s[name]["ratio"] == pytest.approx(s[name]["ours"] / s[name]["warp"], rel=0.01)
        # Not the tolerance (a loaded CI machine is noisy): a driver that measures itself lands far outside.
        assert 0.33 < s[name]["ratio"] < 3, s
        assert s[name]["within"] == (abs(s[name]["ratio"] - 1) <= s[name]["tolerance"])
    paths = [(c["path"], c["op"]) for c in doc["series"]]
    assert paths == [
        ("warp", "GET 4KiB"),
        ("robolake driver", "GET 4KiB"),
        ("warp (again)", "GET 4KiB"),
        ("warp", "GET 16MiB"),
        ("robolake driver", "GET 16MiB"),
        ("warp (again)", "GET 16MiB"),
    ]
    run_dir = _run_dir(tmp_path, doc, client)
    assert "| small GET | 4KiB | 8 | objects/s |" in (run_dir / "report.md").read_text()
    leftovers = client.list_objects_v2(Bucket="robolake-bench-warpcheck", Prefix=doc["run_id"])
    assert leftovers.get("KeyCount", 0) == 0


def test_dataloader_via_the_seed_flag_then_compare_two_runs(stack: NativeStack, client: Any, tmp_path: Path) -> None:
    env = settings_env(stack.settings)
    seeded = run(
        [sys.executable, str(ROOT / "download_umi_data.py"), "--benchmark", "dataloader", "--smoke", "--json"],
        env,
        cwd=tmp_path,
        timeout=180,
    )
    assert seeded.returncode == 0, seeded.stderr
    first = json.loads(seeded.stdout)["benchmark"]
    assert first["benchmark"] == "dataloader"
    _run_dir(tmp_path / "benchmarks", first, client)
    again = run(
        [ROBOLAKE, "bench", "dataloader", "--smoke", "--paths", "direct", "--concurrency", "4", "--json"],
        env,
        cwd=tmp_path,
        timeout=180,
    )
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert {(c["path"], c["concurrency"]) for c in second["series"]} == {("direct", 4)}

    compared = run([ROBOLAKE, "bench", "compare", first["run_id"], second["run_id"]], env, cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    rows = [line for line in compared.stdout.splitlines() if line.startswith("| direct |")]
    assert len(rows) == 2 and all(line.split("|")[3].strip() == "4" for line in rows)  # episodes and samples
    a = next(c for c in first["series"] if (c["path"], c["concurrency"], c["unit"]) == ("direct", 4, "episodes"))
    b = next(c for c in second["series"] if c["unit"] == "episodes")
    assert f"{b['per_s'] / a['per_s']:.2f}x" in compared.stdout

    by_path = run(
        [
            ROBOLAKE,
            "bench",
            "compare",
            str(tmp_path / "benchmarks" / first["run_id"]),
            str(tmp_path / "benchmarks" / second["run_id"] / "results.json"),
        ],
        env,
    )
    assert by_path.returncode == 0 and by_path.stdout == compared.stdout
    missing = run([ROBOLAKE, "bench", "compare", first["run_id"], "20990101T000000Z-nothing-000000"], env, cwd=tmp_path)
    assert missing.returncode == 2 and "no benchmark run '20990101T000000Z-nothing-000000'" in missing.stderr


def test_bad_workload_options_are_refused_before_anything_runs(stack: NativeStack) -> None:
    env = settings_env(stack.settings)
    cases = [
        (["mixed-workload", "--mix", "loader=12,robots=2"], "unknown kind 'robots'"),
        (["mixed-workload", "--concurrency", "0"], "--concurrency '0': give 1 to 1024 per level"),
        (["large-file-streaming", "--sizes", "8MB"], "object size '8MB'"),
        (["dataloader", "--frames", "5000"], "--frames 5000 must be between 1 and 3600"),
        (["warp-check", "--duration", "2"], "--duration 2 is too short"),
    ]
    for args, message in cases:
        result = run([ROBOLAKE, "bench", *args], env)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    seeded = run(
        [
            sys.executable,
            str(ROOT / "download_umi_data.py"),
            "--benchmark",
            "mixed_workload",
            "--minio-endpoint",
            "127.0.0.1:9001",
        ],
        env,
    )
    assert seeded.returncode == 2 and "--minio-endpoint does not apply to --benchmark mixed_workload" in seeded.stderr


def test_bench_accelerator_writes_the_same_reports(stack: NativeStack, client: Any, tmp_path: Path) -> None:
    result = run(
        [
            ROBOLAKE,
            "bench",
            "accelerator",
            "--duration",
            "6",
            "--objects",
            "200",
            "--batch-size",
            "50",
            "--concurrency",
            "8",
            "--cold-objects",
            "600",
            "--large-size",
            "3MiB",
            "--large-objects",
            "4",
            "--large-concurrency",
            "2",
            "--out",
            str(tmp_path),
        ],
        settings_env(stack.settings),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = list(tmp_path.iterdir())
    doc = json.loads((run_dir / "results.json").read_text())
    _run_dir(tmp_path, doc, client)
    assert [(s["path"], s["op"]) for s in doc["series"]] == [
        ("direct", "GET"),
        ("accelerator warm", "GET"),
        ("direct (again)", "GET"),
        ("accelerator batch", "GET"),
    ]
    summary = doc["summary"]
    assert summary["direct_get_objects_per_s"] > 0 and summary["batch_get_objects_per_s"] > 0
    assert summary["warm_get_speedup"] == pytest.approx(
        summary["accelerator_warm_get_objects_per_s"] / summary["direct_get_objects_per_s"], rel=0.02
    )
    assert "| accelerator warm GET (warp) |" in result.stdout
    without = doc["without_cache"]
    assert set(without) == {"cold", "large_get", "large_put"}
    for name, part in without.items():
        runs = [part[r] for r in ("direct_1", "accelerator", "direct_2")]
        assert all(r["mib_per_s"] > 0 for r in runs), name
        base = (runs[0]["objects_per_s"] + runs[2]["objects_per_s"]) / 2
        assert part["ratio_objects_per_s"] == pytest.approx(runs[1]["objects_per_s"] / base, rel=0.01)
        assert part["what"] in result.stdout
    assert 0 < without["cold"]["miss_share"] <= 1
    assert summary["large_get"]["ratio_mib_per_s"] == without["large_get"]["ratio_mib_per_s"]
