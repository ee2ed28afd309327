"""Health probes for MinIO and lakeFS over HTTP, independent of how the servers were started."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from robolake.config import Settings
from robolake.errors import AuthError, ServiceUnavailableError
from robolake.httpauth import ADMIN_USER
from robolake.state import StateDir

_TIMEOUT_S = 3.0


def http_ok(
    url: str, *, expect: tuple[int, ...] = (200,), timeout_s: float = _TIMEOUT_S, auth: tuple[str, str] | None = None
) -> bool:
    """True when `url` answers with one of the `expect` status codes."""
    try:
        return requests.get(url, timeout=timeout_s, auth=auth).status_code in expect
    except requests.RequestException:
        return False


def prometheus_ready(settings: Settings) -> bool:
    """Prometheus answers /-/ready to the stack's admin user (it asks every caller for it)."""
    creds = StateDir(settings.state_dir).load_credentials()
    if creds is None or not creds.admin_token:
        return False
    return http_ok(f"{settings.prometheus_endpoint}/-/ready", auth=(ADMIN_USER, creds.admin_token))


def minio_live(endpoint: str) -> bool:
    """The node process serves HTTP (it may still wait for its peers)."""
    return http_ok(f"{endpoint}/minio/health/live")


def minio_cluster_ok(endpoint: str) -> bool:
    """The node sees enough drives for write quorum (MinIO answers 200, else 503)."""
    return http_ok(f"{endpoint}/minio/health/cluster")


def accelerator_healthy(admin_endpoint: str) -> bool:
    return http_ok(f"{admin_endpoint}/health")


def lakefs_healthy(endpoint: str) -> bool:
    return http_ok(f"{endpoint}/api/v1/healthcheck", expect=(204, 200))


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """What one MinIO node reports about the cluster it belongs to."""

    deployment_id: str
    servers_online: int
    servers_total: int
    drives_online: int
    drives_offline: int
    standard_parity: int | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def signed_get(url: str, access_key: str, secret_key: str, *, timeout_s: float = 10.0) -> requests.Response:
    """GET `url` signed with AWS SigV4 (service s3), as MinIO's admin API expects."""
    request = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": _EMPTY_SHA256})
    SigV4Auth(Credentials(access_key, secret_key), "s3", "us-east-1").add_auth(request)
    try:
        return requests.get(url, headers=dict(request.headers.items()), timeout=timeout_s)
    except requests.RequestException as exc:
        raise ServiceUnavailableError(f"MinIO at {url} does not answer: {exc}") from exc


_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def minio_cluster_info(endpoint: str, access_key: str, secret_key: str) -> ClusterInfo:
    """Ask one node (admin API, root credentials) which cluster it is part of."""
    response = signed_get(f"{endpoint}/minio/admin/v3/info", access_key, secret_key)
    if response.status_code in (401, 403):
        raise AuthError(
            f"MinIO at {endpoint} rejected the root credentials of user {access_key!r} "
            f"(HTTP {response.status_code}); the cluster was started with other credentials: "
            "use the MINIO_ROOT_USER / MINIO_ROOT_PASSWORD it was created with"
        )
    if response.status_code != 200:
        raise ServiceUnavailableError(
            f"MinIO at {endpoint} answered HTTP {response.status_code} to the admin info request"
        )
    info = json.loads(response.content)
    servers = info.get("servers") or []
    drives = [d for s in servers for d in (s.get("drives") or [])]
    online = sum(1 for d in drives if d.get("state") == "ok")
    parity = (info.get("backend") or {}).get("standardSCParity")
    return ClusterInfo(
        deployment_id=str(info.get("deploymentID", "")),
        servers_online=sum(1 for s in servers if s.get("state") == "online"),
        servers_total=len(servers),
        drives_online=online,
        drives_offline=len(drives) - online,
        standard_parity=int(parity) if parity is not None else None,
    )
