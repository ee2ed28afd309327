"""First-time setup of a running stack: buckets on MinIO, the lakeFS admin and its repository.

Every step is idempotent, so `up` can run it again after a half-finished start, and the
Compose runtime's setup container and `scripts/setup-buckets.sh` call the same functions.
"""

from __future__ import annotations

import io
from typing import Any

import requests
import urllib3
from minio import Minio
from minio.error import S3Error

from robolake.errors import AuthError, RobolakeError, ServiceUnavailableError

# Buckets and the "folders" a user expects to see in them (zero-byte `prefix/` markers).
BUCKET_LAYOUT: dict[str, tuple[str, ...]] = {
    "umi-raw": ("pose/", "gripper/", "video/"),
    "umi-processed": ("compressed/", "features/"),
    "umi-experiments": ("benchmarks/", "results/"),
    "lakefs-storage": (),
}


def minio_client(endpoint: str, access_key: str, secret_key: str) -> Minio:
    """A minio-py client for an `http://host:port` endpoint, failing fast when it is down."""
    secure = endpoint.startswith("https://")
    host = endpoint.split("://", 1)[-1].rstrip("/")
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3, read=30),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
    )
    return Minio(host, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http)


def ensure_buckets(endpoint: str, access_key: str, secret_key: str) -> list[str]:
    """Create the robolake buckets and their prefix markers; return the buckets created now."""
    client = minio_client(endpoint, access_key, secret_key)
    created: list[str] = []
    try:
        for bucket, prefixes in BUCKET_LAYOUT.items():
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
                created.append(bucket)
            for prefix in prefixes:
                try:
                    client.stat_object(bucket, prefix)
                except S3Error as exc:
                    if exc.code not in ("NoSuchKey", "NoSuchObject"):
                        raise
                    client.put_object(bucket, prefix, io.BytesIO(b""), 0)
    except S3Error as exc:
        if exc.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            raise AuthError(
                f"MinIO at {endpoint} rejected user {access_key!r} ({exc.code}); use the root "
                "credentials the cluster was started with (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD)"
            ) from exc
        raise RobolakeError(f"creating buckets on {endpoint} failed: {exc.code}: {exc.message}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ServiceUnavailableError(
            f"MinIO at {endpoint} does not answer ({exc}); is the cluster running? "
            "(`robolake stack status`)"
        ) from exc
    return created


def ensure_notifications(
    endpoint: str, access_key: str, secret_key: str, arn: str, buckets: tuple[str, ...],
) -> None:
    """Subscribe `buckets` to object created/removed events for the webhook target `arn`."""
    from minio.notificationconfig import NotificationConfig, QueueConfig

    client = minio_client(endpoint, access_key, secret_key)
    config = NotificationConfig(queue_config_list=[
        QueueConfig(["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], config_id="robolake-accelerator", queue=arn),
    ])
    try:
        for bucket in buckets:
            client.set_bucket_notification(bucket, config)
    except S3Error as exc:
        raise RobolakeError(
            f"subscribing bucket notifications on {endpoint} to {arn} failed: {exc.code}: {exc.message}; "
            "the MinIO nodes must be started with the robolake webhook settings (`robolake stack up`)"
        ) from exc


class LakeFSAdmin:
    """The few lakeFS API calls the stack's setup needs (the versioning package has the rest)."""

    def __init__(self, endpoint: str, access_key: str = "", secret_key: str = "") -> None:
        self.api = f"{endpoint.rstrip('/')}/api/v1"
        self.auth = (access_key, secret_key)

    def _call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        try:
            response = requests.request(
                method, f"{self.api}{path}", auth=self.auth if auth else None, timeout=30, **kwargs
            )
        except requests.RequestException as exc:
            raise ServiceUnavailableError(f"lakeFS at {self.api} does not answer: {exc}") from exc
        if response.status_code == 401:
            raise AuthError(
                f"lakeFS at {self.api} rejected access key {self.auth[0]!r} (HTTP 401); the "
                "stack's credentials are in the state directory (`robolake stack env`)"
            )
        return response

    def is_set_up(self) -> bool:
        response = self._call("GET", "/setup_lakefs", auth=False)
        response.raise_for_status()
        return bool(response.json().get("state") == "initialized")

    def set_up(self, username: str) -> bool:
        """Create the admin user with our key pair; False when lakeFS was already set up."""
        body = {
            "username": username,
            "key": {"access_key_id": self.auth[0], "secret_access_key": self.auth[1]},
        }
        response = self._call("POST", "/setup_lakefs", auth=False, json=body)
        if response.status_code == 409:
            return False
        if response.status_code >= 300:
            raise RobolakeError(
                f"lakeFS setup (POST {self.api}/setup_lakefs) failed: HTTP "
                f"{response.status_code}: {response.text.strip()[:300]}"
            )
        return True

    def ensure_repository(self, name: str, storage_namespace: str, default_branch: str = "main") -> bool:
        """Create repository `name` unless it exists; True when it was created now."""
        response = self._call("GET", f"/repositories/{name}")
        if response.status_code == 200:
            return False
        body = {"name": name, "storage_namespace": storage_namespace, "default_branch": default_branch}
        response = self._call("POST", "/repositories", json=body)
        if response.status_code == 409:
            return False
        if response.status_code >= 300:
            raise RobolakeError(
                f"creating lakeFS repository {name!r} at {storage_namespace!r} failed: HTTP "
                f"{response.status_code}: {response.text.strip()[:300]}"
            )
        return True

    def repository_exists(self, name: str) -> bool:
        return self._call("GET", f"/repositories/{name}").status_code == 200
