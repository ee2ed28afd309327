"""The hooks server ("robolake hooks"): the webhook target lakeFS calls before commits and merges.

    POST /lakefs/validate-umi           lakeFS's event JSON -> 200 valid | 400 rejected | 500 internal error
         Authorization: Bearer T        (or ?token=T in the URL, as action files written before had it)
    GET  /health                        200 while the server runs
    GET  /metrics                       Prometheus: validations by outcome, their duration (basic auth:
                                        robolake.httpauth, the stack's admin token)

lakeFS sends no credentials of its own, so a call must come from loopback and carry the token the
stack generated (lakeFS fills it into the header from its environment: robolake.versioning.hooks).
Validation runs in worker threads (the lakeFS client and the UMI readers block) with a time budget;
every answer is one line of text, which lakeFS keeps in the hook run's log, and which this server
also logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.httpauth import BasicAuth, admin_guard, refusal
from robolake.versioning.client import LakeFSClient
from robolake.versioning.hooks import (
    HANDLED_EVENTS,
    REPLY_PREFIX,
    ROUTE,
    HookEvent,
    ValidationBudgetExceeded,
    ValidationLimits,
    validate_event,
)

log = logging.getLogger("robolake.hooks")
_ANSWER_GRACE_S = 5.0  # after the budget, answer even if a worker thread is still reading


@dataclasses.dataclass(frozen=True, kw_only=True)
class HooksConfig:
    """How the hooks server runs; `token` is the secret lakeFS must present in the query string."""

    token: str = dataclasses.field(repr=False)
    admin_token: str = dataclasses.field(default="", repr=False)  # asked for by /metrics ("": open)
    host: str = "127.0.0.1"
    port: int = 9020
    work_dir: Path | None = None  # downloads of replay buffers and videos; None: the system temp dir
    limits: ValidationLimits = dataclasses.field(default_factory=ValidationLimits)
    max_concurrent: int = 2
    # Where calls may come from besides loopback (a container network's lakeFS): see parse_allowed.
    allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


# `--allow-from private`: the ranges container engines give their networks (RFC 1918, ULA).
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


def parse_allowed(values: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDRs (or the word `private`) from --allow-from; a bad one is a ConfigError naming it."""
    networks = []
    for value in values:
        for item in PRIVATE_NETWORKS if value == "private" else (value,):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(
                    f"--allow-from {value!r} is not a network: give a CIDR like 172.16.0.0/12, or private"
                ) from None
    return tuple(networks)


def _is_allowed(remote: str | None, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or any(address in network for network in allowed)


def _answer(status: int, line: str) -> web.Response:
    # One line: lakeFS's run log and our own log show it as it is.
    text = REPLY_PREFIX + " ".join(line.split())
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


def _presented_token(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else request.query.get("token", "")


def hooks_app(config: HooksConfig, client: LakeFSClient) -> web.Application:
    """The aiohttp application; `client` reads the objects (its keys need read access to the repo)."""
    if not config.token:
        raise ValueError("HooksConfig.token is empty; the hooks server never runs without a token")
    slots = asyncio.Semaphore(config.max_concurrent)

    async def validate(request: web.Request) -> web.Response:
        if not _is_allowed(request.remote, config.allow_from):
            log.warning("refused a call from %s: not loopback or an allowed network", request.remote)
            allowed = "loopback (and --allow-from networks)"
            return _answer(403, f"calls are accepted from {allowed} only, not from {request.remote}")
        if not hmac.compare_digest(_presented_token(request).encode(), config.token.encode()):
            log.warning("refused a call with a missing or wrong token")
            return _answer(
                401, "missing or wrong token: send `Authorization: Bearer <hooks token>` (or ?token= in the URL)"
            )
        try:
            event = HookEvent.from_json(json.loads(await request.read() or b"null"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return _answer(400, f"not a lakeFS webhook event: {exc}")
        where = f"{event.event_type} {event.repository_id}/{event.branch_id} from {event.source_ref}"
        if event.event_type not in HANDLED_EVENTS:
            return _answer(
                400,
                f"{event.event_type!r} events are not validated; run this hook on {' and '.join(HANDLED_EVENTS)} only",
            )
        budget = config.limits.time_budget_s
        started = time.monotonic()
        try:
            async with slots:
                work = asyncio.to_thread(
                    validate_event, client, event, config.limits, work_dir=config.work_dir, deadline=started + budget
                )
                report = await asyncio.wait_for(work, timeout=budget + _ANSWER_GRACE_S)
        except (ValidationBudgetExceeded, TimeoutError) as exc:
            reason = str(exc) or f"validation did not finish within {budget:.0f} s; commit in smaller batches"
            log.error("%s: %s", where, reason)
            return _answer(500, f"internal error: {reason}")
        except RobolakeError as exc:
            log.error("%s: %s", where, exc)
            return _answer(500, f"internal error: could not read the objects to check: {exc}")
        except Exception as exc:
            log.exception("%s: unexpected error", where)
            return _answer(500, f"internal error: {type(exc).__name__}: {exc}; see the hooks server's log")
        elapsed = time.monotonic() - started
        if not report.ok:
            log.info("%s: rejected in %.1f s: %s", where, elapsed, report.summary())
            return _answer(400, report.summary())
        log.info("%s: ok in %.1f s: %s", where, elapsed, report.summary())
        return _answer(200, f"ok: {report.summary()}")

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"lakefs": client.endpoint, "route": ROUTE})

    counted, metrics = _metered(validate, admin_guard(config.admin_token))
    app = web.Application(client_max_size=1 << 20)  # an event is a few hundred bytes
    app.router.add_post(ROUTE, counted)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


_OUTCOMES = {200: "ok", 400: "rejected", 401: "refused", 403: "refused", 500: "error"}
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _metered(validate: Handler, guard: BasicAuth | None) -> tuple[Handler, Handler]:
    """`validate` counted by outcome and timed, and the /metrics handler that exposes both."""
    registry = CollectorRegistry()
    calls = Counter(
        "robolake_hooks_validations", "Calls of the validation hook by outcome", ["outcome"], registry=registry
    )
    seconds = Histogram(
        "robolake_hooks_validation_seconds",
        "Time to answer a call of the validation hook",
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        registry=registry,
    )
    for outcome in _OUTCOMES.values():
        calls.labels(outcome)  # every series exists from the start, so rates need no first event

    async def counted(request: web.Request) -> web.Response:
        started = time.monotonic()
        answer = await validate(request)
        seconds.observe(time.monotonic() - started)
        calls.labels(_OUTCOMES.get(answer.status, "error")).inc()
        return answer

    async def metrics(request: web.Request) -> web.Response:
        if (refused := refusal(guard, request)) is not None:
            return refused
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return counted, metrics


async def serve(config: HooksConfig, client: LakeFSClient, *, ready: asyncio.Event | None = None) -> None:
    """Run the hooks server until cancelled."""
    runner = web.AppRunner(hooks_app(config, client), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        client.close()


def run_hooks_server(
    settings: Settings,
    limits: ValidationLimits,
    host: str | None = None,
    port: int | None = None,
    lakefs_endpoint: str | None = None,
    work_dir: Path | None = None,
    *,
    allow_from: tuple[str, ...] = (),
    announce: Callable[[str], object] = log.info,
) -> None:
    """Run the hooks server of the stack `settings` describe in the foreground, until interrupted.

    The token and lakeFS's keys come from `Settings.resolve_hooks_token` / `resolve_lakefs_keys`;
    None for host, port or lakeFS endpoint means the stack's.
    """
    token = settings.resolve_hooks_token()
    client = LakeFSClient.from_settings(settings, endpoint=lakefs_endpoint)
    host, port = host or settings.host, port or settings.hooks_port
    config = HooksConfig(
        token=token,
        admin_token=settings.admin_token,
        host=host,
        port=port,
        work_dir=work_dir,
        limits=limits,
        allow_from=parse_allowed(allow_from),
    )
    announce(f"robolake hooks on http://{host}:{port}{ROUTE}?token=..., reading from lakeFS at {client.endpoint}")
    try:
        asyncio.run(serve(config, client))
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another port with --port or ROBOLAKE_HOOKS_PORT"
        ) from exc
