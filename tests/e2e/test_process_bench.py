"""`robolake bench process --compare-read-from` at smoke size against the session stack: three runs, one result.

The benchmark prints figures; this only checks that it runs as documented and that its runs agree
(the replay buffers byte-identical whether videos come through the accelerator or straight from
the MinIO nodes). The figures are not asserted: performance is not a test's to judge.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from robolake.stack.native import NativeStack
from tests.e2e.test_bad_input import ROBOLAKE
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e


def test_bench_process_compares_reading_videos_from_the_nodes(stack: NativeStack, tmp_path: Path) -> None:
    env = {k: v for k, v in settings_env(stack.settings).items() if k != "DASK_SCHEDULER_ADDRESS"}
    args = ["bench", "process", "--episodes", "3", "--workers", "2", "--compare-read-from", "--out", str(tmp_path)]
    done = subprocess.run(
        [ROBOLAKE, *args, "--json"], env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    doc = json.loads(done.stdout)
    runs = doc["runs"]
    assert set(runs) == {"single_process", "dask", "dask_nodes"} and doc["outputs_identical"] is True
    assert runs["dask_nodes"]["read_from"] == "nodes" and runs["dask"]["read_from"] == "accelerator"
    assert all(r["video_read_s"] > 0 and r["video_read_mb_per_s"] > 0 for r in runs.values())
    assert doc["ratio_nodes_task_phase"] > 0 and doc["ratio_nodes_video_read"] > 0
    reads = doc["read_paths"]
    for label in ("videos", "large_object"):
        assert reads[label]["accelerator_mb_per_s"] > 0 and reads[label]["nodes_mb_per_s"] > 0, label
    assert reads["large_object"]["mean_bytes"] == 48 << 20
    ratios = {k: v for k, v in doc.items() if k.startswith("ratio")}
    print(json.dumps(reads), json.dumps(ratios), json.dumps(runs))  # the figures, for whoever runs it with -s
    report = next(tmp_path.glob("*-process-*/report.md")).read_text()
    assert "straight from the MinIO nodes" in report
