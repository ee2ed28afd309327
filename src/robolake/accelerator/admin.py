"""The accelerator's admin port: Prometheus metrics, JSON stats, health, MinIO event webhook."""

from __future__ import annotations

import dataclasses
import hmac
import json
import time
from typing import Any
from urllib.parse import unquote_plus

import requests
from aiohttp import web

from robolake.accelerator.access import Gatekeeper
from robolake.accelerator.cache import TieredCache
from robolake.accelerator.config import AcceleratorConfig
from robolake.accelerator.metrics import CONTENT_TYPE, Metrics
from robolake.accelerator.prefetch import Prefetcher
from robolake.accelerator.subscriptions import Echoes
from robolake.accelerator.upstream import Upstream
from robolake.config import Settings
from robolake.errors import AuthError, ServiceUnavailableError
from robolake.httpauth import admin_auth, admin_guard, refusal

CREATED_OR_REMOVED = ("s3:ObjectCreated:", "s3:ObjectRemoved:")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Observed:
    """What the admin port reports on, and the cache the webhook invalidates."""

    config: AcceleratorConfig
    cache: TieredCache
    upstream: Upstream
    metrics: Metrics
    prefetcher: Prefetcher | None
    started_at: float
    restored_at_start: int  # disk-tier files re-indexed at start
    access: Gatekeeper | None = None
    echoes: Echoes | None = None  # our own PUTs, whose notifications are not news


def stats(o: Observed) -> dict[str, Any]:
    """The /stats document (its shape is what `robolake accelerator stats` and the tests read)."""
    config = o.config
    ratio = o.cache.hit_ratio()
    memory_objects, memory_used = o.cache.usage("memory")
    disk_objects, disk_used = o.cache.usage("disk")
    return {
        "uptime_s": round(time.time() - o.started_at, 1),
        "hit_ratio": round(ratio, 4) if ratio is not None else None,
        "tiers": {tier.name: dataclasses.asdict(tier.stats) for tier in o.cache.tiers},
        "memory": {"objects": memory_objects, "used_bytes": memory_used, "max_bytes": config.memory_bytes},
        "disk": {
            "objects": disk_objects,
            "used_bytes": disk_used,
            "max_bytes": config.disk_bytes,
            "dir": str(config.cache_dir),
            "restored_at_start": o.restored_at_start,
        },
        "events": dict(o.metrics.counters),
        "epochs": dict(zip(("keys", "buckets"), o.cache.epochs.tracked(), strict=True)),
        "prefetch": o.prefetcher.state() if o.prefetcher is not None else None,
        "nodes": [dataclasses.asdict(n) for n in o.upstream.nodes],
        "users": _users(o.access),
        "latency": o.metrics.latency_summary(),
        "config": {
            "max_object_bytes": config.max_object_bytes,
            "revalidate_after_s": config.revalidate_after_s,
            "prefetch": config.prefetch,
        },
    }


def read_stats(settings: Settings, admin_url: str | None = None, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """The /stats document of the accelerator at `admin_url` (the stack's admin port by default)."""
    url = (admin_url or settings.accelerator_admin_endpoint).rstrip("/") + "/stats"
    try:
        answer = requests.get(url, timeout=timeout_s, auth=admin_auth(settings))
    except requests.RequestException as exc:
        raise ServiceUnavailableError(
            f"the accelerator's admin endpoint {url} does not answer ({type(exc).__name__}); is the "
            "stack running? (`robolake stack status`)"
        ) from exc
    if answer.status_code == 401:
        raise AuthError(f"{url} refused the stack's admin token; is ROBOLAKE_STATE_DIR this stack's state directory?")
    if answer.status_code != 200:
        raise ServiceUnavailableError(f"{url} answered HTTP {answer.status_code}: {answer.text[:200]}")
    doc: dict[str, Any] = answer.json()
    return doc


def _users(access: Gatekeeper | None) -> dict[str, Any] | None:
    """What /stats says of the users file in force (None: the accelerator reads none)."""
    if access is None or access.users_file is None:
        return None
    return {"count": len(access.users), "file": str(access.users_file), "file_stamp": access.loaded}


def prometheus_text(o: Observed) -> bytes:
    memory_objects, memory_used = o.cache.usage("memory")
    disk_objects, disk_used = o.cache.usage("disk")
    gauges = {
        "memory_used_bytes": float(memory_used),
        "memory_max_bytes": float(o.config.memory_bytes),
        "memory_objects": float(memory_objects),
        "disk_used_bytes": float(disk_used),
        "disk_objects": float(disk_objects),
        "hit_ratio": float(o.cache.hit_ratio() or 0.0),
        "healthy_nodes": float(o.upstream.healthy_count()),
    }
    tier_stats = {tier.name: dataclasses.asdict(tier.stats) for tier in o.cache.tiers}
    return o.metrics.render(gauges, tier_stats, {node.endpoint: node.errors for node in o.upstream.nodes})


def admin_app(o: Observed) -> web.Application:
    guard = admin_guard(o.config.admin_token)

    async def metrics(request: web.Request) -> web.Response:
        if (refused := refusal(guard, request)) is not None:
            return refused
        return web.Response(body=prometheus_text(o), headers={"Content-Type": CONTENT_TYPE})

    async def stats_doc(request: web.Request) -> web.Response:
        if (refused := refusal(guard, request)) is not None:
            return refused
        return web.json_response(stats(o))

    async def health(_: web.Request) -> web.Response:
        healthy = o.upstream.healthy_count()
        return web.json_response({"healthy_nodes": healthy}, status=200 if healthy else 503)

    async def events(request: web.Request) -> web.Response:
        """MinIO bucket notifications (webhook target): invalidate what changed behind our back."""
        token = o.config.webhook_token
        auth = request.headers.get("Authorization", "")
        if token and not hmac.compare_digest(auth.removeprefix("Bearer ").strip(), token):
            return web.Response(status=401, text="bad token")
        try:
            doc = json.loads(await request.read() or b"{}")
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(doc, dict):
            return web.Response(status=400, text="not a notification document")
        records = notified_records(doc)
        echoes = o.echoes
        changed = [k for k, event, etag in records if echoes is None or not echoes.is_echo(*k, event, etag)]
        o.cache.invalidate(changed, "notification")
        o.metrics.inc("notification_records", len(records))
        if len(changed) < len(records):
            o.metrics.inc("notification_echoes_skipped", len(records) - len(changed))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stats", stats_doc)
    app.router.add_get("/health", health)
    app.router.add_post("/minio/events", events)
    app.router.add_get("/minio/events", health)  # MinIO probes the target with a GET/HEAD
    return app


def notified_records(doc: dict[str, Any]) -> list[tuple[tuple[str, str], str, str]]:
    """((bucket, key), event name, ETag) of each created or removed object in a MinIO notification."""
    found: list[tuple[tuple[str, str], str, str]] = []
    for record in doc.get("Records") or []:
        name = str(record.get("eventName", ""))
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        key = obj.get("key")
        if bucket and key and name.startswith(CREATED_OR_REMOVED):  # "" would name the whole bucket
            # Keys arrive URL-encoded (form encoding, '+' for space) as in AWS event records.
            found.append(((bucket, unquote_plus(key)), name, str(obj.get("eTag") or "")))
    return found


def notified_keys(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The (bucket, key) of each created or removed object in a MinIO notification document."""
    return [key for key, _, _ in notified_records(doc)]
