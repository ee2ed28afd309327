"""First-time setup of a running stack: buckets on MinIO, the lakeFS admin and its repository.

Every step is idempotent, so `up` can run it again after a half-finished start, and the
Compose runtime's setup container and `scripts/setup-buckets.sh` call the same functions.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from robolake.errors import AuthError, ConfigError, RobolakeError, ServiceUnavailableError
from robolake.versioning.client import LakeFSClient
from robolake.versioning.errors import Call, LakeFSError, translate_errors
from robolake.versioning.hooks import HookInstallError, install_validation_hook, validation_hook_url

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
    try:
        return Minio(host, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http)
    except ValueError as exc:
        raise ConfigError(f"{endpoint!r} is not a MinIO endpoint ({exc}); e.g. http://127.0.0.1:9001") from exc


@contextlib.contextmanager
def _minio_errors(endpoint: str, access_key: str, doing: str, hint: str = "") -> Iterator[None]:
    """Turn minio-py's and urllib3's exceptions inside the block into robolake errors."""
    try:
        yield
    except S3Error as exc:
        if exc.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            raise AuthError(
                f"MinIO at {endpoint} rejected user {access_key!r} ({exc.code}); use the root "
                "credentials the cluster was started with (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD)"
            ) from exc
        raise RobolakeError(f"{doing} on {endpoint} failed: {exc.code}: {exc.message}{hint}") from exc
    except ServerError as exc:  # a 5xx without an S3 error body: a node still starting, or overloaded
        raise ServiceUnavailableError(
            f"{doing} on {endpoint} failed: MinIO answered HTTP {exc.status_code}; try again shortly"
        ) from exc
    except InvalidResponseError as exc:
        raise RobolakeError(f"{doing} on {endpoint} failed: {exc}; is {endpoint} a MinIO S3 endpoint?") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ServiceUnavailableError(
            f"MinIO at {endpoint} does not answer ({exc}); is the cluster running? (`robolake stack status`)"
        ) from exc


def ensure_buckets(endpoint: str, access_key: str, secret_key: str) -> list[str]:
    """Create the robolake buckets and their prefix markers; return the buckets created now."""
    client = minio_client(endpoint, access_key, secret_key)
    created: list[str] = []
    with _minio_errors(endpoint, access_key, "creating buckets"):
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
    return created


def ensure_notifications(endpoint: str, access_key: str, secret_key: str, arn: str, buckets: tuple[str, ...]) -> None:
    """Subscribe `buckets` to object created/removed events for the webhook target `arn`."""
    from minio.notificationconfig import NotificationConfig, QueueConfig

    client = minio_client(endpoint, access_key, secret_key)
    events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    config = NotificationConfig(queue_config_list=[QueueConfig(events, config_id="robolake-accelerator", queue=arn)])
    hint = "; the MinIO nodes must be started with the robolake webhook settings (`robolake stack up`)"
    with _minio_errors(endpoint, access_key, f"subscribing bucket notifications to {arn}", hint):
        for bucket in buckets:
            client.set_bucket_notification(bucket, config)


class LakeFSAdmin:
    """The few lakeFS API calls the stack's setup needs (the versioning package has the rest).

    Its answers go through the versioning package's one status table, like the client's.
    """

    def __init__(self, endpoint: str, access_key: str = "", secret_key: str = "") -> None:
        self.endpoint = endpoint.rstrip("/")
        self.auth = (access_key, secret_key)

    def _call(
        self, method: str, path: str, call: Call, *, auth: bool = True, accept: tuple[int, ...] = (), **kwargs: Any
    ) -> requests.Response:
        """One request; a 4xx/5xx answer not in `accept` becomes the table's exception for it."""
        with translate_errors(self.endpoint, call, self.auth[0]):
            response = requests.request(
                method, f"{self.endpoint}/api/v1{path}", auth=self.auth if auth else None, timeout=30, **kwargs
            )
            if response.status_code not in accept:
                response.raise_for_status()
        return response

    def is_set_up(self) -> bool:
        response = self._call("GET", "/setup_lakefs", Call("read lakeFS's setup state"), auth=False)
        return bool(response.json().get("state") == "initialized")

    def set_up(self, username: str) -> bool:
        """Create the admin user with our key pair; False when lakeFS was already set up."""
        body = {"username": username, "key": {"access_key_id": self.auth[0], "secret_access_key": self.auth[1]}}
        call = Call(f"set up lakeFS with admin user {username!r} (POST /api/v1/setup_lakefs)")
        return self._call("POST", "/setup_lakefs", call, auth=False, json=body, accept=(409,)).status_code != 409

    def ensure_repository(self, name: str, storage_namespace: str, default_branch: str = "main") -> bool:
        """Create repository `name` unless it exists; True when it was created now."""
        if self.repository_exists(name):
            return False
        body = {"name": name, "storage_namespace": storage_namespace, "default_branch": default_branch}
        call = Call(f"create repository {name!r} at {storage_namespace!r}")
        return self._call("POST", "/repositories", call, json=body, accept=(409,)).status_code != 409

    def repository_exists(self, name: str) -> bool:
        call = Call(f"read repository {name!r}", name)
        return self._call("GET", f"/repositories/{quote(name, safe='')}", call, accept=(404,)).status_code == 200


def install_main_hook(
    client: LakeFSClient, repo: str, hooks_endpoint: str, report: Callable[[str], object], attempts: int = 4
) -> None:
    """Guard `repo`'s main with the UMI validation hook at `hooks_endpoint` (idempotent).

    The action file names the token by lakeFS's environment (LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN);
    it never holds it.
    """
    url = validation_hook_url(hooks_endpoint)
    for attempt in range(1, attempts + 1):
        try:
            if install_validation_hook(client, repo, "main", url) is not None:
                report(f"installed the UMI validation hook on {repo}/main")
            return
        except HookInstallError as exc:
            # Someone's staged work on main must not be committed by setup; the stack still runs.
            report(f"warning: {exc}")
            return
        except LakeFSError as exc:
            # Right after a fresh start a MinIO node can answer NoSuchKey for an object just
            # written (its connections to the peers' drives are still coming up); lakeFS
            # reports that as 410 when it loads the action file. It passes within seconds.
            if exc.status != 410 or attempt == attempts:
                raise
            report(f"lakeFS could not read back the hook's action file yet (attempt {attempt}); retrying")
            time.sleep(attempt)
