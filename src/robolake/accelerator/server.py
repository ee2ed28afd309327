"""The accelerator assembled: the one place its parts are built and wired, and `serve()`.

    UpstreamPool (MinIO nodes)     the Upstream; the handlers see it as a Sender
    TieredCache  (memory [+ disk]) lookup / store / invalidate, fill epochs
    Filler                         the one fetch-and-fill path, given to the handler, batch and prefetch
    S3Handler                      the S3 port; BatchHandler, Revalidator and the prefetcher behind it
    ClusterLister                  ListMultipartUploads asked of every node and merged (one cluster view)
    Gatekeeper                     a team's users: their secrets (users file) and MinIO's allows, briefly
    LargeGets                      large GETs spliced socket to socket, beside the Filler
    Subscriptions                  every bucket subscribed to MinIO's notifications; only those cached
    WriteForwarder, RequestBodies  writes, invalidated after MinIO's success; bodies held within bounds
    admin_app                      the admin port (metrics, stats, health, MinIO's webhook)

Nothing in the package imports this module. Background work runs through the S3 app's
`cleanup_ctx`, started in order (upstream, prefetch workers, revalidation) and stopped in reverse:
every task is cancelled and awaited before the upstream session closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import HttpVersion11, web

from robolake.accelerator.access import AccessDecisions, Gatekeeper
from robolake.accelerator.admin import Observed, admin_app, stats
from robolake.accelerator.batch import BatchHandler
from robolake.accelerator.cache import Tier, TieredCache
from robolake.accelerator.cluster import ClusterLister
from robolake.accelerator.config import AcceleratorConfig
from robolake.accelerator.fill import Filler, OwnSigner
from robolake.accelerator.forward import RequestBodies
from robolake.accelerator.halfclose import HalfCloseSite
from robolake.accelerator.handlers import ReadListener, S3Handler
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.prefetch import Prefetcher
from robolake.accelerator.revalidate import Revalidator
from robolake.accelerator.splice import LargeGets
from robolake.accelerator.subscriptions import Subscriptions
from robolake.accelerator.tiers import DiskTier, MemoryTier
from robolake.accelerator.upstream import Upstream, UpstreamPool
from robolake.accelerator.writes import WriteForwarder
from robolake.errors import ConfigError
from robolake.sigv4 import Verifier

__all__ = ["Accelerator", "AcceleratorConfig", "serve"]

SHUTDOWN_GRACE_S = 5.0  # requests in flight at SIGTERM may finish within this (the stack waits 15 s)
# MinIO's ReadHeaderTimeout and IdleTimeout (internal/http/server.go). aiohttp's keep-alive timer
# runs from the connection's start and closes it whenever it waits for a request's headers that
# long: a client holding a connection with partial headers is dropped like an idle one.
HEADER_TIMEOUT_S = 30.0
BUFFER_BODY_MAX = 8 * 1024 * 1024  # a verified write up to this size is held, so it can be retried
BODY_BUDGET_BYTES = 64 * 1024 * 1024  # all request bodies held at once; past it they stream


class Accelerator:
    """The parts of one accelerator, wired; `app()` and `admin_app()` build its two aiohttp apps.

    `upstream` replaces the MinIO pool (a scripted one, in unit tests).
    """

    def __init__(self, config: AcceleratorConfig, *, upstream: Upstream | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.upstream: Upstream = (
            upstream
            if upstream is not None
            else UpstreamPool(list(config.upstreams), ssl_context=config.client_ssl() if config.ca_file else None)
        )
        tiers, restored = _open_tiers(config)
        self.cache = TieredCache(tiers, self.metrics)
        access_key, secret = config.own_principal
        signer = OwnSigner(
            access_key=access_key, secret=secret, region=config.region, host=f"{config.host}:{config.port}"
        )
        self.subscriptions = Subscriptions(
            self.upstream,
            signer,
            self.metrics,
            arn=config.notify_arn,
            on_lost=lambda bucket: self.cache.invalidate([(bucket, "")], "subscription_lost"),
        )
        self.filler = Filler(
            self.cache,
            self.upstream,
            self.metrics,
            max_object_bytes=config.max_object_bytes,
            signer=signer,
            covers=self.subscriptions.covers,
        )
        verifier = Verifier(config.credentials, region=config.region)
        own = frozenset(config.credentials)
        self.access = _gatekeeper(config, verifier, self.upstream, signer, self.metrics)
        self.revalidator = Revalidator(
            self.cache, self.upstream, self.metrics, after_s=config.revalidate_after_s, signer=signer
        )
        self.prefetcher = (
            Prefetcher(self.filler, self.metrics, workers=config.prefetch_workers, queue_size=config.prefetch_queue)
            if config.prefetch
            else None
        )
        listeners: list[ReadListener] = [self.prefetcher] if self.prefetcher is not None else []
        self.large = (
            LargeGets(self.upstream, self.metrics, min_bytes=config.max_object_bytes)
            if isinstance(self.upstream, UpstreamPool)
            else None
        )
        self.bodies = RequestBodies(buffer_max_bytes=BUFFER_BODY_MAX, budget_bytes=BODY_BUDGET_BYTES)
        self.handler = self._s3_handler(verifier, signer, own, listeners)
        self.observed = Observed(
            config=config,
            cache=self.cache,
            upstream=self.upstream,
            metrics=self.metrics,
            prefetcher=self.prefetcher,
            started_at=time.time(),
            restored_at_start=restored,
            access=self.access,
            echoes=self.subscriptions.echoes if config.notify_arn else None,
        )

    def _s3_handler(
        self, verifier: Verifier, signer: OwnSigner, own: frozenset[str], listeners: list[ReadListener]
    ) -> S3Handler:
        """The S3 port's handler and the write path behind it."""
        config = self.config
        writes = WriteForwarder(
            cache=self.cache,
            upstream=self.upstream,
            metrics=self.metrics,
            bodies=self.bodies,
            relay_max_bytes=config.max_object_bytes,
            after_write=self.subscriptions.after_write,
        )
        return S3Handler(
            cache=self.cache,
            filler=self.filler,
            upstream=self.upstream,
            verifier=verifier,
            revalidator=self.revalidator,
            batch=BatchHandler(self.filler, verifier, self.metrics, own=own),
            metrics=self.metrics,
            bodies=self.bodies,
            writes=writes,
            cluster=ClusterLister(upstream=self.upstream, signer=signer, metrics=self.metrics),
            access=self.access,
            read_listeners=listeners,
            large=self.large,
        )

    def app(self) -> web.Application:
        """The S3 port's app; its cleanup_ctx owns every background task."""
        # No client_max_size: request.read() is never used on this port; bodies are held only as
        # RequestBodies allows (verified, small, within budget) or batch.MAX_BODY_BYTES, else streamed.
        app = web.Application(client_max_size=0, handler_args={"max_field_size": 65536})
        # Every path is the handler's: `.` stops at a newline (a decoded %0A), which aiohttp would answer 404 itself.
        app.router.add_route("*", r"/{tail:[\s\S]*}", self.handler.handle, expect_handler=_expect_like_minio)
        app.cleanup_ctx.append(self._upstream_lifespan)
        if self.prefetcher is not None:
            app.cleanup_ctx.append(self.prefetcher.lifespan)
        app.cleanup_ctx.append(self.revalidator.lifespan)
        app.cleanup_ctx.append(self.access.lifespan)
        app.cleanup_ctx.append(self.subscriptions.lifespan)
        return app

    def admin_app(self) -> web.Application:
        return admin_app(self.observed)

    def stats(self) -> dict[str, Any]:
        return stats(self.observed)

    async def _upstream_lifespan(self, _: web.Application) -> AsyncIterator[None]:
        await self.upstream.start()
        yield
        if self.large is not None:
            await asyncio.to_thread(self.large.close)
        await self.upstream.close()
        await asyncio.to_thread(self.cache.close)


async def _expect_like_minio(request: web.Request) -> None:
    """`Expect: 100-continue` as Go's server (MinIO) answers it: a 100 only to a request with a body.

    aiohttp's default sends one to a bodiless GET too, which MinIO never does (Go sends it when
    the handler first reads the body); any other expectation is a 417, as from both.
    """
    expect = request.headers.get("Expect", "")
    if request.version != HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    if request.body_exists:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own size starts after the interim one


def _gatekeeper(
    config: AcceleratorConfig, verifier: Verifier, upstream: Upstream, signer: OwnSigner, metrics: Metrics
) -> Gatekeeper:
    """A team's users and MinIO's allows for them, the users file read already."""
    gate = Gatekeeper(
        decisions=AccessDecisions(own=frozenset(config.credentials), ttl_s=config.access_ttl_s),
        verifier=verifier,
        upstream=upstream,
        signer=signer,
        metrics=metrics,
        own_secrets=dict(config.credentials),
        users_file=config.users_file,
    )
    gate.poll()  # users known from the first request on
    return gate


def _open_tiers(config: AcceleratorConfig) -> tuple[list[Tier], int]:
    """The tiers, fastest first, and how many disk files were re-indexed (disk_bytes=0: no disk tier)."""
    memory = MemoryTier(config.memory_bytes)
    if config.disk_bytes == 0:
        return [memory], 0
    try:
        disk = DiskTier(config.cache_dir, config.disk_bytes)
    except OSError as exc:
        raise ConfigError(
            f"the accelerator's cache directory {str(config.cache_dir)!r} cannot be used: {exc.strerror or exc}; "
            "choose another with --cache-dir, or run without a disk tier (--disk-mb 0)"
        ) from exc
    return [memory, disk], disk.restored


async def serve(config: AcceleratorConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the S3 endpoint and the admin endpoint until cancelled or sent SIGTERM.

    aiohttp's order: each app set up (its background work started), then its port bound; on the
    way out the reverse, every step run even if an earlier one failed: the admin port, then the
    S3 port (in-flight requests get SHUTDOWN_GRACE_S), then its cleanup_ctx.
    """
    accel = Accelerator(config)
    tls = config.server_ssl()
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        # The S3 port answers clients that half-close, as MinIO does (robolake.accelerator.halfclose).
        sites = (
            (accel.app(), config.port, 1024, HalfCloseSite),
            (accel.admin_app(), config.admin_port, 128, web.TCPSite),
        )
        for app, port, backlog, site_class in sites:
            runner = web.AppRunner(
                app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S, keepalive_timeout=HEADER_TIMEOUT_S
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await site_class(runner, config.host, port, backlog=backlog, ssl_context=tls).start()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            stack.callback(loop.remove_signal_handler, signal.SIGTERM)
        if ready is not None:
            ready.set()
        await stop.wait()
