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

Every scrape of the native stack authenticates (``Auth``): MinIO's metrics with the bearer JWT
MinIO itself verifies (HS512, signed with the root secret, what ``mc admin prometheus generate``
makes), the accelerator, the hooks server and Prometheus itself with basic auth (user
``robolake.httpauth.ADMIN_USER``, the stack's admin token); Prometheus asks the same of every
caller (``web.yml``, a bcrypt hash). The token files are 0600 in STATE_DIR/prometheus/. lakeFS's
``/metrics`` needs none: lakeFS serves it without auth and has no setting for it. The Compose
files keep MinIO's metrics public (``MINIO_PROMETHEUS_AUTH_TYPE=public``) and scrape without
auth. Everything listens on loopback only. Retention is bounded twice, by age and by size
(``ROBOLAKE_PROMETHEUS_RETENTION_DAYS``, ``..._MB``): whichever is reached first drops the oldest
blocks. The binary is built from the pinned Go module (tools/versions.env); that module holds no
compiled web UI, so ``/`` serves no pages, while the HTTP API (``/api/v1/query``) and ``/metrics``
work -- which is what robolake's dashboards, alert rules and console use. Debian's ``prometheus``
package (2.42 on bookworm) would start faster on a first run, but is older, not on every system,
and a version robolake would not pin.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from robolake.config import Settings
from robolake.errors import StateError
from robolake.httpauth import ADMIN_USER
from robolake.stack.dashboards import render_rules
from robolake.state import Credentials, StateDir

SCRAPE_INTERVAL_S = 10
RULES_FILE = "rules.yml"
MINIO_JWT_FILE, ADMIN_TOKEN_FILE, WEB_CONFIG_FILE = "minio.jwt", "admin.token", "web.yml"
MINIO_JWT_LIFETIME_S = 100 * 365 * 86400  # as long as mc's; a new one is written on every `stack up`
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


@dataclasses.dataclass(frozen=True)
class Auth:
    """How the scrapes authenticate: files beside prometheus.yml (None: scrape without auth)."""

    minio_jwt_file: Path
    admin_token_file: Path

    def minio(self) -> dict[str, Any]:
        return {"authorization": {"type": "Bearer", "credentials_file": str(self.minio_jwt_file)}}

    def admin(self) -> dict[str, Any]:
        return {"basic_auth": {"username": ADMIN_USER, "password_file": str(self.admin_token_file)}}


def _job(name: str, path: str, targets: tuple[str, ...], auth: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "job_name": name,
        "metrics_path": path,
        **(auth or {}),
        "static_configs": [{"targets": list(targets), "labels": {"stack": "robolake"}}],
    }


def scrape_config(t: Targets, auth: Auth | None = None) -> dict[str, Any]:
    """Prometheus's configuration document for the stack at `t`."""
    minio, admin = (auth.minio(), auth.admin()) if auth else (None, None)
    return {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "rule_files": [RULES_FILE],  # beside this file: robolake.stack.dashboards' alert rules
        "scrape_configs": [
            _job("minio-cluster", "/minio/v2/metrics/cluster", t.minio, minio),
            _job("minio-node", "/minio/v2/metrics/node", t.minio, minio),
            _job("minio-bucket", "/minio/v2/metrics/bucket", t.minio, minio),
            _job("lakefs", "/metrics", (t.lakefs,)),
            _job("accelerator", "/metrics", (t.accelerator_admin,), admin),
            *([_job("hooks", "/metrics", (t.hooks,), admin)] if t.hooks else []),
            _job("prometheus", "/metrics", (t.prometheus,), admin),
        ],
    }


def minio_jwt(access_key: str, secret_key: str, *, now: float | None = None) -> str:
    """The bearer token MinIO accepts on its metrics paths for `access_key` (HS512 JWT, issuer prometheus)."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    expires = int(now if now is not None else time.time()) + MINIO_JWT_LIFETIME_S
    claims: dict[str, object] = {"exp": expires, "sub": access_key, "iss": "prometheus"}
    head = part(json.dumps({"alg": "HS512", "typ": "JWT"}).encode()) + b"." + part(json.dumps(claims).encode())
    return (head + b"." + part(hmac.new(secret_key.encode(), head, hashlib.sha512).digest())).decode()


def web_config(admin_token: str) -> dict[str, Any]:
    """Prometheus's --web.config.file: basic auth for every caller (bcrypt, cost 10)."""
    hashed = bcrypt.hashpw(admin_token.encode(), bcrypt.gensalt(rounds=10)).decode()
    return {"basic_auth_users": {ADMIN_USER: hashed}}


def render(config: dict[str, Any], *, compose: bool = False) -> str:
    head = "# Prometheus for the robolake stack, made by robolake.stack.monitoring.scrape_config.\n"
    if compose:
        head += (
            "# For the Compose files (targets are service names; MinIO's metrics are public). Made with\n"
            "#   python -c 'from robolake.stack.monitoring import *; print(render(scrape_config(Targets.compose()), "
            'compose=True), end="")\'\n'
        )
    return head + yaml.safe_dump(config, sort_keys=False)


def write_config(settings: Settings, creds: Credentials) -> Path:
    """Write STATE_DIR/prometheus/prometheus.yml, its rules, web config and token files; return the first."""
    path = StateDir(settings.state_dir).root / "prometheus" / "prometheus.yml"
    auth = Auth(path.with_name(MINIO_JWT_FILE), path.with_name(ADMIN_TOKEN_FILE))
    files = {
        path: render(scrape_config(Targets.native(settings), auth)),
        path.with_name(RULES_FILE): render_rules(),
        path.with_name(WEB_CONFIG_FILE): yaml.safe_dump(web_config(creds.admin_token)),
        auth.minio_jwt_file: minio_jwt(settings.minio_root_user, settings.minio_root_password),
        auth.admin_token_file: creds.admin_token,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, text in files.items():
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # two of them are secrets
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(partial, target)
    except OSError as exc:
        raise StateError(f"cannot write Prometheus's configuration in {str(path.parent)!r}: {exc.strerror}") from exc
    return path


def prometheus_argv(settings: Settings, binary: Path, config: Path) -> list[str]:
    s = settings
    return [
        str(binary),
        f"--config.file={config}",
        f"--web.config.file={config.with_name(WEB_CONFIG_FILE)}",
        f"--web.listen-address={s.host}:{s.prometheus_port}",
        f"--storage.tsdb.path={config.parent / 'data'}",
        f"--storage.tsdb.retention.time={s.prometheus_retention_days}d",
        f"--storage.tsdb.retention.size={s.prometheus_retention_mb}MB",
    ]
