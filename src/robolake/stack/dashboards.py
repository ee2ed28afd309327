"""The stack's Grafana dashboard and Prometheus alert rules, made from one table of PromQL.

    grafana_dashboard()   -> deploy/grafana/robolake.json (import it in Grafana; datasource: Prometheus)
    alert_rules()         -> deploy/prometheus-rules.yml, and STATE_DIR/prometheus/rules.yml natively

Grafana is not packaged with robolake. What keeps the panels honest is the test suite: it runs
every panel's expression and every rule's signal (what its condition compares) against the
Prometheus that ``stack up`` starts, on a stack with traffic, and requires data from each, and a
node-down rule to fire when a node is frozen. Metric names are those the pinned servers expose
(MinIO's v2 cluster and node metrics; lakeFS's ``api_request_duration_seconds``; the
accelerator's ``robolake_accelerator_*``). MinIO's node metrics carry ``server`` (the node); its
cluster metrics are reported by every node, so cluster panels take ``max`` over the three reports.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import yaml

HIT = 'op=~"hit_memory|hit_disk"'
LOOKUP = 'op=~"hit_memory|hit_disk|miss"'


@dataclasses.dataclass(frozen=True)
class Panel:
    row: str
    title: str
    unit: str  # Grafana unit id: short, bytes, s, percentunit, reqps
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)


PANELS: tuple[Panel, ...] = (
    Panel(
        "Cluster",
        "MinIO nodes online / offline",
        "short",
        (
            ('max(minio_cluster_nodes_online_total{job="minio-cluster"})', "online"),
            ('max(minio_cluster_nodes_offline_total{job="minio-cluster"})', "offline"),
        ),
    ),
    Panel(
        "Cluster",
        "Drives online / offline",
        "short",
        (
            ('max(minio_cluster_drive_online_total{job="minio-cluster"})', "online"),
            ('max(minio_cluster_drive_offline_total{job="minio-cluster"})', "offline"),
        ),
    ),
    Panel(
        "Cluster",
        "Usable capacity",
        "bytes",
        (
            ('max(minio_cluster_capacity_usable_total_bytes{job="minio-cluster"})', "total"),
            (
                'max(minio_cluster_capacity_usable_total_bytes{job="minio-cluster"})'
                ' - max(minio_cluster_capacity_usable_free_bytes{job="minio-cluster"})',
                "used",
            ),
        ),
    ),
    Panel(
        "Cluster",
        "Drive space used per node",
        "bytes",
        (('sum by (server) (minio_node_drive_used_bytes{job="minio-node"})', "{{server}}"),),
    ),
    Panel(
        "S3 per node",
        "Requests per second per node",
        "reqps",
        (('sum by (server) (rate(minio_s3_requests_total{job="minio-node"}[1m]))', "{{server}}"),),
    ),
    Panel(
        "S3 per node",
        "Time to first byte p95 per node",
        "s",
        (
            (
                "histogram_quantile(0.95, sum by (server, le) "
                '(rate(minio_s3_requests_ttfb_seconds_distribution{job="minio-node"}[5m])))',
                "{{server}}",
            ),
        ),
    ),
    Panel(
        "S3 per node",
        "Errors per second per node (4xx, 5xx)",
        "reqps",
        (
            ('sum by (server) (rate(minio_s3_requests_4xx_errors_total{job="minio-node"}[5m]))', "4xx {{server}}"),
            (
                'sum by (server) (rate(minio_s3_requests_errors_total{job="minio-node"}[5m]))'
                ' - sum by (server) (rate(minio_s3_requests_4xx_errors_total{job="minio-node"}[5m]))',
                "5xx {{server}}",
            ),
        ),
    ),
    Panel(
        "lakeFS",
        "API requests per second by status",
        "reqps",
        (('sum by (code) (rate(api_requests_total{job="lakefs"}[5m]))', "{{code}}"),),
    ),
    Panel(
        "lakeFS",
        "API latency p95 by operation",
        "s",
        (
            (
                "histogram_quantile(0.95, sum by (operation, le) "
                '(rate(api_request_duration_seconds_bucket{job="lakefs"}[5m])))',
                "{{operation}}",
            ),
        ),
    ),
    Panel(
        "lakeFS",
        "Commit latency (p50, p95)",
        "s",
        (
            (
                "histogram_quantile(0.5, sum by (le) "
                '(rate(api_request_duration_seconds_bucket{job="lakefs", operation="Commit"}[15m])))',
                "p50",
            ),
            (
                "histogram_quantile(0.95, sum by (le) "
                '(rate(api_request_duration_seconds_bucket{job="lakefs", operation="Commit"}[15m])))',
                "p95",
            ),
        ),
    ),
    Panel(
        "Accelerator",
        "Cache hit ratio",
        "percentunit",
        (
            (
                f'sum(rate(robolake_accelerator_client_latency_seconds_count{{job="accelerator", {HIT}}}[5m]))'
                f' / sum(rate(robolake_accelerator_client_latency_seconds_count{{job="accelerator", {LOOKUP}}}[5m]))',
                "hits / lookups",
            ),
        ),
    ),
    Panel(
        "Accelerator",
        "Client latency p50 / p99 by path",
        "s",
        (
            (
                "histogram_quantile(0.5, sum by (op, le) "
                '(rate(robolake_accelerator_client_latency_seconds_bucket{job="accelerator"}[5m])))',
                "p50 {{op}}",
            ),
            (
                "histogram_quantile(0.99, sum by (op, le) "
                '(rate(robolake_accelerator_client_latency_seconds_bucket{job="accelerator"}[5m])))',
                "p99 {{op}}",
            ),
        ),
    ),
    Panel(
        "Accelerator",
        "Prefetch: issued, used, wasted per second",
        "reqps",
        (
            (
                'sum by (kind) (rate(robolake_accelerator_events_total{job="accelerator", kind=~"prefetch_.*"}[5m]))',
                "{{kind}}",
            ),
        ),
    ),
    Panel(
        "Accelerator",
        "Evictions per second by tier",
        "reqps",
        (('sum by (tier) (rate(robolake_accelerator_cache_evictions_total{job="accelerator"}[5m]))', "{{tier}}"),),
    ),
    Panel(
        "Accelerator",
        "Cache memory used / budget",
        "bytes",
        (
            ('robolake_accelerator_memory_used_bytes{job="accelerator"}', "used"),
            ('robolake_accelerator_memory_max_bytes{job="accelerator"}', "budget"),
        ),
    ),
    Panel(
        "Accelerator",
        "Healthy MinIO nodes seen by the accelerator",
        "short",
        (('robolake_accelerator_healthy_nodes{job="accelerator"}', "healthy"),),
    ),
)


@dataclasses.dataclass(frozen=True)
class Alert:
    """An alert on `signal` (a quantity a healthy stack reports) crossing `condition`."""

    name: str
    signal: str
    condition: str  # appended to the signal: "== 0", "> 0.01 and <gate>"
    for_: str
    severity: str
    summary: str

    @property
    def expr(self) -> str:
        return f"{self.signal} {self.condition}"


_LOOKUPS = f'sum(rate(robolake_accelerator_client_latency_seconds_count{{job="accelerator", {LOOKUP}}}[10m]))'
ALERTS: tuple[Alert, ...] = (
    Alert(
        "MinioNodeDown",
        'up{job="minio-node"}',
        "== 0",
        "1m",
        "critical",
        "MinIO node {{ $labels.instance }} does not answer; the cluster runs on the other two",
    ),
    Alert(
        "MinioNodesOffline",
        'max(minio_cluster_nodes_offline_total{job="minio-cluster"})',
        "> 0",
        "1m",
        "critical",
        "{{ $value }} MinIO node(s) offline as the cluster sees it",
    ),
    Alert(
        "MinioDriveOffline",
        'max(minio_cluster_drive_offline_total{job="minio-cluster"})',
        "> 0",
        "2m",
        "warning",
        "{{ $value }} drive(s) offline; the erasure set has less parity left",
    ),
    Alert(
        "AcceleratorHitRatioCollapse",
        f'(sum(rate(robolake_accelerator_client_latency_seconds_count{{job="accelerator", {HIT}}}[10m])) / {_LOOKUPS})',
        f"< 0.2 and {_LOOKUPS} > 1",  # only under steady traffic (a lookup a second)
        "10m",
        "warning",
        "accelerator hit ratio {{ $value | humanizePercentage }} under steady traffic",
    ),
    Alert(
        "S3ServerErrors",
        '(sum(rate(minio_s3_requests_errors_total{job="minio-node"}[5m]))'
        ' - sum(rate(minio_s3_requests_4xx_errors_total{job="minio-node"}[5m])))'
        ' / sum(rate(minio_s3_requests_total{job="minio-node"}[5m]))',
        "> 0.01",
        "5m",
        "warning",
        "more than 1% of S3 requests answer 5xx",
    ),
    Alert(
        "LakeFSServerErrors",
        '(sum(rate(api_requests_total{job="lakefs", code=~"5.."}[5m])) or vector(0))'
        ' / sum(rate(api_requests_total{job="lakefs"}[5m]))',
        "> 0.01",
        "5m",
        "warning",
        "more than 1% of lakeFS API requests answer 5xx",
    ),
    Alert(
        "ComponentDown",
        'up{job=~"lakefs|accelerator|hooks"}',
        "== 0",
        "1m",
        "critical",
        "{{ $labels.job }} does not answer its metrics scrape",
    ),
)


def alert_rules() -> dict[str, Any]:
    """Prometheus's rule file document."""
    return {
        "groups": [
            {
                "name": "robolake",
                "rules": [
                    {
                        "alert": a.name,
                        "expr": a.expr,
                        "for": a.for_,
                        "labels": {"severity": a.severity},
                        "annotations": {"summary": a.summary},
                    }
                    for a in ALERTS
                ],
            }
        ]
    }


def render_rules() -> str:
    head = "# robolake's alert rules, made by robolake.stack.dashboards.alert_rules (a test keeps them equal).\n"
    return head + yaml.safe_dump(alert_rules(), sort_keys=False, width=200)


def grafana_dashboard() -> dict[str, Any]:
    """A Grafana dashboard model (schema 39): one row per group, two panels across, a Prometheus input."""
    panels: list[dict[str, Any]] = []
    y, row, column = 0, None, 0
    for number, panel in enumerate(PANELS, start=1):
        if panel.row != row:
            if column:
                y += 8
            row, column = panel.row, 0
            panels.append(
                {"type": "row", "title": row, "id": 1000 + number, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}
            )
            y += 1
        panels.append(
            {
                "type": "timeseries",
                "title": panel.title,
                "id": number,
                "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                "gridPos": {"x": 12 * column, "y": y, "w": 12, "h": 8},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(panel.exprs)
                ],
            }
        )
        column = (column + 1) % 2
        if column == 0:
            y += 8
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus"}],
        "title": "robolake",
        "uid": "robolake-stack",
        "tags": ["robolake", "minio", "lakefs"],
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "panels": panels,
    }


def render_dashboard() -> str:
    return json.dumps(grafana_dashboard(), indent=2) + "\n"
