"""Prometheus, started with the stack, scrapes every component: each target is up and has data."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from robolake.config import Settings
from robolake.httpauth import admin_auth
from robolake.stack.dashboards import ALERTS, PANELS
from robolake.stack.monitoring import SCRAPE_INTERVAL_S
from robolake.stack.native import NativeStack
from robolake.versioning import LakeFSClient
from tests.conftest import s3_client
from tests.stackutil import isolated_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    """A stack of this module's own: the panels' 5-minute rates must see only its traffic (another
    module's cold reads in the same minutes would move the hit ratio), and a frozen node here
    disturbs no other test."""
    native = NativeStack(isolated_settings(tmp_path_factory.mktemp("monitoring") / "state"))
    try:
        native.up()
        yield native
    finally:
        native.down(volumes=True)


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


def prometheus_get(s: Settings, path: str, **params: str) -> requests.Response:
    """GET Prometheus's HTTP API as the stack's admin user (Prometheus asks every caller)."""
    return requests.get(f"{s.prometheus_endpoint}{path}", params=params, timeout=10, auth=admin_auth(s))


def query(stack: NativeStack, promql: str) -> list[dict[str, Any]]:
    answer = prometheus_get(stack.settings, "/api/v1/query", query=promql)
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
        answer = prometheus_get(s, "/api/v1/targets").json()
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
    flags = prometheus_get(s, "/api/v1/status/flags").json()["data"]
    assert flags["storage.tsdb.retention.time"] == f"{s.prometheus_retention_days}d"
    mb = s.prometheus_retention_mb  # Prometheus's MB are MiB, and it prints them in the largest whole unit
    assert flags["storage.tsdb.retention.size"] == (f"{mb // 1024}GiB" if mb % 1024 == 0 else f"{mb}MiB")
    assert flags["web.listen-address"] == f"127.0.0.1:{s.prometheus_port}"
    assert flags["storage.tsdb.path"].startswith(str(s.state_dir))


def _traffic(stack: NativeStack, round_: int) -> None:
    """Reads and writes through the accelerator, 404s on every node, a lakeFS commit."""
    s = stack.settings
    accel = s3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password)
    for i in range(12):
        accel.put_object(Bucket="umi-raw", Key=f"it-monitoring/{i}", Body=b"x" * 2048)
        for _ in range(3):
            accel.get_object(Bucket="umi-raw", Key=f"it-monitoring/{i}")["Body"].read()
    for endpoint in s.minio_endpoints:
        node = s3_client(endpoint, s.minio_root_user, s.minio_root_password)
        with contextlib.suppress(ClientError):
            node.head_object(Bucket="umi-raw", Key="it-monitoring/no-such-key")
        node.get_object(Bucket="umi-raw", Key="it-monitoring/0")["Body"].read()
    lakefs = LakeFSClient.from_settings(s)
    try:
        lakefs.upload_object(s.lakefs_repo, "main", f"it-monitoring/{round_}.txt", b"round %d" % round_)
        lakefs.commit(s.lakefs_repo, "main", f"monitoring test round {round_}", {})
    finally:
        lakefs.close()


def test_every_dashboard_panel_returns_data_on_a_stack_with_traffic(stack: NativeStack) -> None:
    hits = 'sum(robolake_accelerator_cache_requests_total{job="accelerator", result="hit"})'
    before = float(wait_for(stack, hits, count=1)[0]["value"][1])
    # Two rounds a scrape apart, so every rate() and histogram_quantile() sees an increase.
    _traffic(stack, 1)
    time.sleep(SCRAPE_INTERVAL_S + 2)
    _traffic(stack, 2)
    time.sleep(SCRAPE_INTERVAL_S + 2)
    empty = []
    for panel in PANELS:
        for expr, _legend in panel.exprs:
            found = wait_for(stack, expr, count=1, timeout_s=SCRAPE_INTERVAL_S * 2)
            values = [float(r["value"][1]) for r in found]
            if not values or all(math.isnan(v) for v in values):
                empty.append(f"{panel.title}: {expr} -> {found}")
    for alert in ALERTS:  # each rule's quantity is there to compare, on a healthy stack
        found = wait_for(stack, alert.signal, count=1, timeout_s=SCRAPE_INTERVAL_S * 2)
        if not found or all(math.isnan(float(r["value"][1])) for r in found):
            empty.append(f"alert {alert.name}: {alert.signal} -> {found}")
    assert empty == []
    hit_ratio = query(stack, next(p for p in PANELS if p.title == "Cache hit ratio").exprs[0][0])
    assert 0.5 < float(hit_ratio[0]["value"][1]) <= 1.0  # 3 GETs per object, the first one a miss
    assert float(query(stack, hits)[0]["value"][1]) >= before + 2 * 12 * 2  # 2 rounds x 12 objects x 2 hits


def test_alert_rules_are_loaded_and_a_node_down_fires(stack: NativeStack) -> None:
    answer = prometheus_get(stack.settings, "/api/v1/rules").json()
    rules = {r["name"]: r for group in answer["data"]["groups"] for r in group["rules"]}
    assert sorted(rules) == sorted(a.name for a in ALERTS)
    assert all(r["health"] == "ok" for r in rules.values()), rules
    assert all(r["state"] == "inactive" for r in rules.values()), "an alert is active on a healthy stack"

    pid = stack._process("minio-3").pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # frozen: its scrape times out, as a dead node's would
    try:
        deadline = time.monotonic() + 6 * SCRAPE_INTERVAL_S
        alerts: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not alerts:
            time.sleep(2)
            doc = prometheus_get(stack.settings, "/api/v1/alerts").json()
            alerts = [a for a in doc["data"]["alerts"] if a["labels"]["alertname"] == "MinioNodeDown"]
        assert alerts, "MinioNodeDown did not become pending or firing with a node frozen"
        assert alerts[0]["labels"]["instance"] == f"{stack.settings.host}:{stack.settings.minio_ports[2]}"
        assert alerts[0]["state"] in ("pending", "firing")
    finally:
        os.kill(pid, signal.SIGCONT)
    stack.up()  # waits until every node answers healthy again
