"""Prometheus, started with the stack, scrapes every component: each target is up and has data."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from robolake.stack.native import NativeStack

pytestmark = pytest.mark.integration

JOBS = ("minio-cluster", "minio-node", "minio-bucket", "lakefs", "accelerator", "hooks", "prometheus")
# Each job must yield series of its server's own metrics (names as the server exposes them).
SERIES = {
    "minio-cluster": "minio_cluster_.+",
    "minio-node": "minio_node_.+",
    "minio-bucket": "minio_bucket_.+",
    "lakefs": "api_request.+",
    "accelerator": "robolake_accelerator_.+",
    "hooks": "robolake_hooks_validations_total",
    "prometheus": "prometheus_tsdb_head_series",
}


def query(stack: NativeStack, promql: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{stack.settings.prometheus_endpoint}/api/v1/query", params={"query": promql}, timeout=10)
    answer.raise_for_status()
    doc = answer.json()
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def wait_for(stack: NativeStack, promql: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = query(stack, promql)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_prometheus_scrapes_every_component(stack: NativeStack) -> None:
    s = stack.settings
    status = {c.name: c for c in stack.status().components}
    assert status["prometheus"].healthy and status["prometheus"].endpoint == s.prometheus_endpoint

    deadline = time.monotonic() + 30  # targets appear once discovery has run, a moment after start
    by_job: dict[str, list[str]] = {}
    while len(by_job) < len(JOBS) and time.monotonic() < deadline:
        time.sleep(0.5)
        answer = requests.get(f"{s.prometheus_endpoint}/api/v1/targets", timeout=10).json()
        by_job = {}
        for target in answer["data"]["activeTargets"]:
            by_job.setdefault(target["labels"]["job"], []).append(target["scrapeUrl"])
    assert sorted(by_job) == sorted(JOBS)
    assert sorted(by_job["minio-node"]) == sorted(f"{e}/minio/v2/metrics/node" for e in s.minio_endpoints)
    assert by_job["accelerator"] == [f"{s.accelerator_admin_endpoint}/metrics"]

    up = wait_for(stack, 'up{stack="robolake"} == 1', count=3 * 3 + 4)
    assert sorted({r["metric"]["job"] for r in up}) == sorted(JOBS), up
    for job, metric in SERIES.items():
        assert wait_for(stack, f'{{__name__=~"{metric}", job="{job}"}}', count=1), f"no {metric} from job {job}"
    # The cluster's view: all three nodes online, as every node reports it.
    online = query(stack, 'max(minio_cluster_nodes_online_total{job="minio-cluster"})')
    assert online and float(online[0]["value"][1]) == 3.0


def test_retention_is_bounded_and_it_listens_on_loopback(stack: NativeStack) -> None:
    s = stack.settings
    flags = requests.get(f"{s.prometheus_endpoint}/api/v1/status/flags", timeout=10).json()["data"]
    assert flags["storage.tsdb.retention.time"] == f"{s.prometheus_retention_days}d"
    mb = s.prometheus_retention_mb  # Prometheus's MB are MiB, and it prints them in the largest whole unit
    assert flags["storage.tsdb.retention.size"] == (f"{mb // 1024}GiB" if mb % 1024 == 0 else f"{mb}MiB")
    assert flags["web.listen-address"] == f"127.0.0.1:{s.prometheus_port}"
    assert flags["storage.tsdb.path"].startswith(str(s.state_dir))
