"""Prometheus with the stack: one scrape configuration for both runtimes, and the native process.

    config = scrape_config(Targets.native(settings))   # what `stack up` writes to STATE_DIR/prometheus/
    config = scrape_config(Targets.compose())          # deploy/prometheus.yml, the Compose services' names

What is scraped (every job also gets the label ``stack="robolake"``):

    job             path                          targets
    minio-cluster   /minio/v2/metrics/cluster     each MinIO node (any one answers for the cluster;
                                                  all three, so the series survive a node loss)
    minio-node      /minio/v2/metrics/node        each MinIO node: its drives, requests, errors
    minio-bucket    /minio/v2/metrics/bucket      each MinIO node: per-bucket usage and traffic
    lakefs          /metrics                      lakeFS (API, S3 gateway and blockstore latency)
    accelerator     /metrics                      the accelerator's admin port (hits, latency,
                                                  prefetch, evictions, node health)
    hooks           /metrics                      the validation hook server (outcomes, duration)
    prometheus      /metrics                      Prometheus itself

MinIO's metrics are public on its S3 port (``MINIO_PROMETHEUS_AUTH_TYPE=public``, set by the
stack); everything listens on loopback only. Retention is bounded twice, by age and by size
(``ROBOLAKE_PROMETHEUS_RETENTION_DAYS``, ``..._MB``): whichever is reached first drops the oldest
blocks. The binary is built from the pinned Go module (tools/versions.env); that module holds no
compiled web UI, so ``/`` serves no pages, while the HTTP API (``/api/v1/query``) and ``/metrics``
work -- which is what robolake's dashboards, alert rules and console use. Debian's ``prometheus``
package (2.42 on bookworm) would start faster on a first run, but is older, not on every system,
and a version robolake would not pin.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from robolake.config import Settings
from robolake.errors import StateError
from robolake.stack.dashboards import render_rules
from robolake.state import StateDir

SCRAPE_INTERVAL_S = 10
RULES_FILE = "rules.yml"
# Compose service names and ports (docker-compose.local.yml); the native stack uses its settings.
COMPOSE_MINIO = ("minio1:9000", "minio2:9000", "minio3:9000")
COMPOSE_LAKEFS, COMPOSE_ACCELERATOR_ADMIN, COMPOSE_PROMETHEUS = "lakefs:8000", "accelerator:9010", "localhost:9090"


@dataclasses.dataclass(frozen=True)
class Targets:
    """host:port of everything Prometheus scrapes."""

    minio: tuple[str, ...]
    lakefs: str
    accelerator_admin: str
    hooks: str | None  # None: no hooks server (the Compose files run none)
    prometheus: str

    @classmethod
    def native(cls, s: Settings) -> Targets:
        return cls(
            minio=tuple(f"{s.host}:{p}" for p in s.minio_ports),
            lakefs=f"{s.host}:{s.lakefs_port}",
            accelerator_admin=f"{s.host}:{s.accelerator_admin_port}",
            hooks=f"{s.host}:{s.hooks_port}",
            prometheus=f"{s.host}:{s.prometheus_port}",
        )

    @classmethod
    def compose(cls) -> Targets:
        return cls(COMPOSE_MINIO, COMPOSE_LAKEFS, COMPOSE_ACCELERATOR_ADMIN, None, COMPOSE_PROMETHEUS)


def _job(name: str, path: str, targets: tuple[str, ...]) -> dict[str, Any]:
    return {
        "job_name": name,
        "metrics_path": path,
        "static_configs": [{"targets": list(targets), "labels": {"stack": "robolake"}}],
    }


def scrape_config(t: Targets) -> dict[str, Any]:
    """Prometheus's configuration document for the stack at `t`."""
    return {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "rule_files": [RULES_FILE],  # beside this file: robolake.stack.dashboards' alert rules
        "scrape_configs": [
            _job("minio-cluster", "/minio/v2/metrics/cluster", t.minio),
            _job("minio-node", "/minio/v2/metrics/node", t.minio),
            _job("minio-bucket", "/minio/v2/metrics/bucket", t.minio),
            _job("lakefs", "/metrics", (t.lakefs,)),
            _job("accelerator", "/metrics", (t.accelerator_admin,)),
            *([_job("hooks", "/metrics", (t.hooks,))] if t.hooks else []),
            _job("prometheus", "/metrics", (t.prometheus,)),
        ],
    }


def render(config: dict[str, Any], *, compose: bool = False) -> str:
    head = "# Prometheus for the robolake stack, made by robolake.stack.monitoring.scrape_config.\n"
    if compose:
        head += (
            "# For the Compose files (targets are service names; MinIO's metrics are public). Made with\n"
            "#   python -c 'from robolake.stack.monitoring import *; print(render(scrape_config(Targets.compose()), "
            'compose=True), end="")\'\n'
        )
    return head + yaml.safe_dump(config, sort_keys=False)


def write_config(settings: Settings) -> Path:
    """Write STATE_DIR/prometheus/prometheus.yml and its rules.yml for the native stack; return the first."""
    path = StateDir(settings.state_dir).root / "prometheus" / "prometheus.yml"
    files = {path: render(scrape_config(Targets.native(settings))), path.with_name(RULES_FILE): render_rules()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, text in files.items():
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, target)
    except OSError as exc:
        raise StateError(f"cannot write Prometheus's configuration in {str(path.parent)!r}: {exc.strerror}") from exc
    return path


def prometheus_argv(settings: Settings, binary: Path, config: Path) -> list[str]:
    s = settings
    return [
        str(binary),
        f"--config.file={config}",
        f"--web.listen-address={s.host}:{s.prometheus_port}",
        f"--storage.tsdb.path={config.parent / 'data'}",
        f"--storage.tsdb.retention.time={s.prometheus_retention_days}d",
        f"--storage.tsdb.retention.size={s.prometheus_retention_mb}MB",
    ]
