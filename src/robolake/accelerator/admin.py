"""The accelerator's admin port: Prometheus metrics, JSON stats, health, MinIO event webhook."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from aiohttp import web

if TYPE_CHECKING:
    from robolake.accelerator.server import Accelerator

CREATED_OR_REMOVED = ("s3:ObjectCreated:", "s3:ObjectRemoved:")


def admin_app(accel: Accelerator) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        stats = accel.stats()
        gauges = {
            "memory_used_bytes": float(accel.memory.used_bytes),
            "memory_max_bytes": float(accel.config.memory_bytes),
            "memory_objects": float(len(accel.memory)),
            "disk_used_bytes": float(accel.disk.used_bytes if accel.disk else 0),
            "disk_objects": float(len(accel.disk) if accel.disk else 0),
            "hit_ratio": float(stats["hit_ratio"] or 0.0),
            "healthy_nodes": float(accel.upstream.healthy_count()),
        }
        for node in accel.upstream.nodes:
            accel.metrics.node_errors[node.endpoint] = node.errors
        text = accel.metrics.render_prometheus(gauges, stats["tiers"])
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(accel.stats())

    async def health(_: web.Request) -> web.Response:
        healthy = accel.upstream.healthy_count()
        return web.json_response({"healthy_nodes": healthy}, status=200 if healthy else 503)

    async def events(request: web.Request) -> web.Response:
        """MinIO bucket notifications (webhook target): invalidate what changed behind our back."""
        token = accel.config.webhook_token
        auth = request.headers.get("Authorization", "")
        if token and not hmac.compare_digest(auth.removeprefix("Bearer ").strip(), token):
            return web.Response(status=401, text="bad token")
        try:
            doc = json.loads(await request.read() or b"{}")
        except ValueError:
            return web.Response(status=400, text="not JSON")
        count = 0
        for record in doc.get("Records") or []:
            name = str(record.get("eventName", ""))
            s3 = record.get("s3") or {}
            bucket = (s3.get("bucket") or {}).get("name")
            key = (s3.get("object") or {}).get("key")
            if bucket and key is not None and name.startswith(CREATED_OR_REMOVED):
                # Keys arrive URL-encoded (form encoding, '+' for space) as in AWS event records.
                accel.invalidate((bucket, unquote_plus(key)), "notification")
                count += 1
        accel.metrics.inc("notification_records", count)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    app.router.add_post("/minio/events", events)
    app.router.add_get("/minio/events", health)  # MinIO probes the target with a GET/HEAD
    return app
