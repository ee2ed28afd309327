"""How the accelerator runs: one frozen, keyword-only config object, checked when it is made."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

from robolake.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class AcceleratorConfig:
    """How the accelerator runs; build it from Settings (stack) or CLI flags."""

    upstreams: tuple[str, ...]
    credentials: dict[str, str] = dataclasses.field(repr=False)
    host: str = "127.0.0.1"
    port: int = 9000
    admin_port: int = 9010
    cache_dir: Path = Path("aistor/cache")
    max_object_bytes: int = 1024 * 1024
    memory_bytes: int = 256 * 1024 * 1024
    disk_bytes: int = 4 * 1024 * 1024 * 1024
    revalidate_after_s: float = 30.0
    webhook_token: str = dataclasses.field(default="", repr=False)
    # Basic-auth password (user ADMIN_USER) of the admin port's /metrics and /stats; "": open.
    admin_token: str = dataclasses.field(default="", repr=False)
    prefetch: bool = True
    prefetch_workers: int = 2
    prefetch_queue: int = 256
    region: str = "us-east-1"
    users_file: Path | None = None  # a team's users (robolake.accelerator.principals); None: root only
    access_ttl_s: float = 5.0  # how long MinIO's allow for a user and bucket answers cache hits
    # MinIO's webhook target for the accelerator (arn:minio:sqs::ID:webhook): every bucket is
    # subscribed to it and only covered buckets are cached (robolake.accelerator.subscriptions).
    notify_arn: str | None = None
    # TLS: served on both ports with this certificate and key; https upstreams verified with
    # ca_file (None: the system's trust store).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
        for name in ("tls_cert", "tls_key", "ca_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"--{name.replace('_', '-')} {str(path)!r} is not a file")
        if not self.upstreams:
            raise ConfigError("the accelerator needs at least one MinIO endpoint; give one with --upstream")
        if not self.credentials:
            raise ConfigError("the accelerator needs one access key and secret (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD)")
        for name in ("memory_bytes", "max_object_bytes", "prefetch_workers", "prefetch_queue"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"accelerator setting {name}={getattr(self, name)!r} must be positive")
        if self.disk_bytes < 0:
            raise ConfigError(f"accelerator setting disk_bytes={self.disk_bytes!r} must be 0 (no disk tier) or more")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"

    def server_ssl(self) -> ssl.SSLContext | None:
        """The context both ports serve TLS with, or None for plain HTTP."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate {str(self.tls_cert)!r} with its key: {exc}") from exc
        return context

    def client_ssl(self) -> ssl.SSLContext:
        """How https upstreams are verified: ca_file, else the system's trust store."""
        try:
            return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the CA file {str(self.ca_file)!r}: {exc}") from exc

    @property
    def own_principal(self) -> tuple[str, str]:
        """(access key, secret) the accelerator signs its own reads with (batch GET, prefetch)."""
        return next(iter(self.credentials.items()))
