"""What the console's stack, versions and metrics pages show, read through the library.

Each function returns plain JSON-ready data; the pages and the ``/api/...`` routes share them.
All are blocking (requests, boto3): the server runs them in its thread pool.

    stack_view(lake)                     components, cluster, nodes and drives, buckets
    versions_view(lake, repo, ref)       repositories, branches, tags, the log of `ref`
    diff_view(lake, repo, left, right)   a diff summarized per episode (versioning.diff_summary)
    metrics_view(lake, minutes)          a few dashboard panels over time (Prometheus query_range)
    bench_runs(lake)                     benchmark runs in s3://umi-experiments/benchmarks/
    jobs_view(lake)                      processing jobs on the job board (s3://umi-experiments/jobs/)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from typing import Any

import requests

from robolake.bench.results import RESULTS_BUCKET, results_target
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError, ServiceUnavailableError
from robolake.httpauth import admin_auth
from robolake.processing.board import JOBS_BUCKET, JOBS_PREFIX, read_board
from robolake.stack import health
from robolake.stack.dashboards import PANELS, Panel
from robolake.stack.native import NativeStack
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.s3 import S3Target
from robolake.versioning import LakeFSClient, diff_summary

MAX_LISTED_OBJECTS = 200_000  # per bucket: beyond this the count is shown as a lower bound
MAX_DIFF_ENTRIES = 20_000
LOG_LIMIT = 30
METRIC_PANELS = (
    "MinIO nodes online / offline",
    "Usable capacity",
    "Requests per second per node",
    "API requests per second by status",
    "Cache hit ratio",
    "Client latency p50 / p99 by path",
)


@dataclasses.dataclass
class Lake:
    """The stack the console reads: its settings and one lakeFS client (thread-safe)."""

    settings: Settings
    client: LakeFSClient

    @classmethod
    def open(cls, settings: Settings) -> Lake:
        return cls(settings, LakeFSClient.from_settings(settings))

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------- stack


def stack_view(lake: Lake) -> dict[str, Any]:
    s = lake.settings
    status = NativeStack(s).status().as_dict()
    nodes, drive_error = _nodes(s)
    return {
        "healthy": status["healthy"],
        "components": status["components"],
        "cluster": status["cluster"],
        "repository": status["repository"],
        "nodes": nodes,
        "nodes_error": drive_error,
        "capacity": _capacity(nodes),
        "buckets": _buckets(s),
    }


def _nodes(s: Settings) -> tuple[list[dict[str, Any]], str | None]:
    """Every MinIO server and its drives, as the first node that answers reports them."""
    problem: str | None = "no MinIO node answers"
    for endpoint in s.minio_endpoints:
        try:
            answer = health.signed_get(f"{endpoint}/minio/admin/v3/info", s.minio_root_user, s.minio_root_password)
        except RobolakeError as exc:
            problem = str(exc)
            continue
        if answer.status_code != 200:
            problem = f"MinIO at {endpoint} answered HTTP {answer.status_code} to the admin info request"
            continue
        servers = json.loads(answer.content).get("servers") or []
        return [_server(server) for server in servers], None
    return [], problem


def _server(server: dict[str, Any]) -> dict[str, Any]:
    drives = [
        {
            "path": d.get("drivePath") or d.get("endpoint", ""),
            "state": d.get("state", ""),
            "total_bytes": int(d.get("totalspace") or 0),
            "used_bytes": int(d.get("usedspace") or 0),
        }
        for d in server.get("drives") or []
    ]
    return {"endpoint": server.get("endpoint", ""), "state": server.get("state", ""), "drives": drives}


def _capacity(nodes: list[dict[str, Any]]) -> dict[str, int]:
    drives = [d for n in nodes for d in n["drives"]]
    return {
        "raw_total_bytes": sum(d["total_bytes"] for d in drives),
        "raw_used_bytes": sum(d["used_bytes"] for d in drives),
        "drives_ok": sum(1 for d in drives if d["state"] == "ok"),
        "drives": len(drives),
    }


def _buckets(s: Settings) -> list[dict[str, Any]]:
    """Each bucket with its object count and bytes (listed through MinIO node 1)."""
    target = results_target(s)
    client = boto3_client(target)
    with boto_errors("LIST", "", "", target, hint="is the stack up? `robolake stack status`"):
        names = sorted(b["Name"] for b in client.list_buckets().get("Buckets", []))
    rows = []
    for name in names:
        count = size = 0
        with boto_errors("LIST", name, "", target):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                for obj in page.get("Contents", []):
                    count += 1
                    size += int(obj["Size"])
                if count >= MAX_LISTED_OBJECTS:
                    break
        rows.append({"name": name, "objects": count, "bytes": size, "at_least": count >= MAX_LISTED_OBJECTS})
    return rows


# ---------------------------------------------------------------- versions


def versions_view(lake: Lake, repo: str, ref: str) -> dict[str, Any]:
    c = lake.client
    repos = [r.id for r in c.list_repositories()]
    if repo not in repos:
        raise ConfigError(f"repository {repo!r} does not exist in lakeFS; choose one of {repos!r}")
    branches = [dataclasses.asdict(b) for b in c.list_branches(repo)]
    tags = [dataclasses.asdict(t) for t in c.list_tags(repo)]
    head = c.get_commit(repo, ref)
    commits = [_commit(commit) for commit in c.log(repo, head.id, limit=LOG_LIMIT)]
    return {
        "repositories": repos,
        "repo": repo,
        "ref": ref,
        "commit_id": head.id,
        "branches": branches,
        "tags": tags,
        "commits": commits,
    }


def _commit(commit: Any) -> dict[str, Any]:
    return {
        "id": commit.id,
        "message": commit.message,
        "committer": commit.committer,
        "creation_date": commit.creation_date,
        "parents": list(commit.parents),
        "metadata": commit.metadata,
    }


def diff_view(lake: Lake, repo: str, left: str, right: str) -> dict[str, Any]:
    """What changed from `left` to `right`, per episode; both refs resolved to commits first."""
    c = lake.client
    left_id, right_id = c.get_commit(repo, left).id, c.get_commit(repo, right).id
    entries = list(itertools.islice(c.diff(repo, left_id, right_id), MAX_DIFF_ENTRIES + 1))
    summary = diff_summary(entries[:MAX_DIFF_ENTRIES]).as_dict()
    return {
        "repo": repo,
        "left": left,
        "right": right,
        "left_commit": left_id,
        "right_commit": right_id,
        "truncated": len(entries) > MAX_DIFF_ENTRIES,
        **summary,
    }


# ---------------------------------------------------------------- metrics


def metric_panels() -> list[Panel]:
    return [p for p in PANELS if p.title in METRIC_PANELS]


def metrics_view(lake: Lake, minutes: int = 60, step_s: int = 30) -> dict[str, Any]:
    """The chosen panels over the last `minutes`, each series as [[unix_s, value], ...]."""
    end = time.time()
    start = end - minutes * 60
    panels = []
    for panel in metric_panels():
        series = []
        for expr, legend in panel.exprs:
            for result in _query_range(lake.settings, expr, start, end, step_s):
                labels = result.get("metric", {})
                series.append({"legend": _legend(legend, labels), "points": _points(result.get("values", []))})
        panels.append({"row": panel.row, "title": panel.title, "unit": panel.unit, "series": series})
    return {"start": start, "end": end, "step_s": step_s, "panels": panels}


def _query_range(s: Settings, expr: str, start: float, end: float, step_s: int) -> list[dict[str, Any]]:
    url = f"{s.prometheus_endpoint}/api/v1/query_range"
    try:
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step_s}
        answer = requests.get(url, params=params, timeout=10, auth=admin_auth(s))
    except requests.RequestException as exc:
        raise ServiceUnavailableError(
            f"Prometheus at {s.prometheus_endpoint} does not answer ({type(exc).__name__}); is it on? "
            "(ROBOLAKE_PROMETHEUS, `robolake stack status`)"
        ) from exc
    if answer.status_code != 200:
        raise ServiceUnavailableError(f"Prometheus refused the query {expr!r}: HTTP {answer.status_code}")
    result: list[dict[str, Any]] = answer.json().get("data", {}).get("result", [])
    return result


def _legend(template: str, labels: dict[str, str]) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def _points(values: list[list[Any]]) -> list[list[float]]:
    points = []
    for stamp, raw in values:
        value = float(raw)
        if math.isfinite(value):  # NaN and Inf do not plot
            points.append([float(stamp), value])
    return points


# ---------------------------------------------------------------- benchmark runs


def _results_client(s: Settings) -> tuple[Any, S3Target]:
    target = results_target(s)
    return boto3_client(target), target


def bench_runs(lake: Lake, limit: int = 20) -> list[dict[str, Any]]:
    """The newest benchmark runs (run ids sort by time) with their files, plots first."""
    client, target = _results_client(lake.settings)
    runs: dict[str, list[dict[str, Any]]] = {}
    with boto_errors("LIST", RESULTS_BUCKET, "benchmarks/", target):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=RESULTS_BUCKET, Prefix="benchmarks/"):
            for obj in page.get("Contents", []):
                run, _, name = obj["Key"].removeprefix("benchmarks/").partition("/")
                if name and "/" not in name:
                    runs.setdefault(run, []).append({"name": name, "bytes": int(obj["Size"])})
    newest = sorted(runs, reverse=True)[:limit]
    return [
        {"run": run, "files": sorted(runs[run], key=lambda f: (not f["name"].endswith(".png"), f["name"]))}
        for run in newest
    ]


def bench_file(lake: Lake, run: str, name: str) -> bytes:
    """One file of a benchmark run (a plot, report.md, results.json)."""
    for part, what in ((run, "run id"), (name, "file name")):
        if not part or "/" in part or part in (".", ".."):
            raise ConfigError(f"{what} {part!r} is not a benchmark run's name; pick one on the metrics page")
    client, target = _results_client(lake.settings)
    key = f"benchmarks/{run}/{name}"
    with boto_errors("GET", RESULTS_BUCKET, key, target, hint="list the runs on the metrics page"):
        body: bytes = client.get_object(Bucket=RESULTS_BUCKET, Key=key)["Body"].read()
    return body


# ---------------------------------------------------------------- jobs


def jobs_view(lake: Lake, limit: int = 20) -> dict[str, Any]:
    """The newest processing jobs from the job board (robolake.processing.board), newest first."""
    now = time.time()
    jobs = [
        {**p.record, "stale": p.stale, "age_s": round(now - float(p.record.get("updated_at") or now), 1)}
        for p in read_board(lake.settings, limit)
    ]
    return {
        "jobs": jobs,
        "board": f"s3://{JOBS_BUCKET}/{JOBS_PREFIX}",
        "running": any(j["state"] == "running" and not j["stale"] for j in jobs),
    }
