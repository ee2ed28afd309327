"""The console's aiohttp application: credentials on every request, errors as pages, serving.

    app = console_app(lake, ConsoleConfig(host="127.0.0.1", port=9030, credentials=keys))
    run_console(settings, host="0.0.0.0", port=9030)   # asks for the lakeFS key pair on every request

Every page, API call and media request needs HTTP basic auth with the stack's lakeFS key pair
(access key id as user name, secret as password), on loopback too (another user of the machine
must not read the lake through the console's keys): whoever holds those can read all of it
through lakeFS anyway. Only ``/health`` answers without them.

Errors never reach the browser as a traceback: a robolake error becomes its one-line message
with a status that fits (400 bad input, 404 unknown ref/dataset/episode, 502/503 a server of the
stack refused or is down), as an HTML page or, under /api/ and /media/, as ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from robolake.config import Settings
from robolake.console.episodes import EpisodeReader
from robolake.console.html import error_page
from robolake.console.routes import LAKE, READER, add_routes
from robolake.console.views import Lake
from robolake.errors import AuthError, ConfigError, RobolakeError, ServiceUnavailableError
from robolake.httpauth import BasicAuth
from robolake.storage.errors import S3Error
from robolake.umi.errors import DatasetFormatError
from robolake.versioning import LakeFSError

log = logging.getLogger("robolake.console")
STATIC = Path(__file__).with_name("static")
REALM = 'Basic realm="robolake console (lakeFS access key id and secret)", charset="UTF-8"'
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConsoleConfig:
    host: str = "127.0.0.1"
    port: int = 9030
    # (access key id, secret) asked of every request but /health; None: ask nothing (tests only).
    credentials: tuple[str, str] | None = dataclasses.field(default=None, repr=False)


def status_of(exc: RobolakeError) -> int:
    """The HTTP status the console answers a robolake error with."""
    if isinstance(exc, LakeFSError | S3Error) and exc.status in (400, 404, 416):
        return exc.status
    if isinstance(exc, LakeFSError):
        return 502
    if isinstance(exc, ConfigError):
        return 400
    if isinstance(exc, DatasetFormatError):
        return 422
    if isinstance(exc, AuthError):
        return 502  # a server of the stack refused the console's keys: not the browser's fault
    if isinstance(exc, ServiceUnavailableError):
        return 503
    return 500


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/media/", "/bench/"))


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if _wants_json(request):
        return web.json_response({"error": message, "status": status}, status=status)
    return web.Response(text=error_page(status, message), status=status, content_type="text/html")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RobolakeError as exc:
        return _error(request, status_of(exc), str(exc))
    except web.HTTPNotFound:
        return _error(request, 404, f"no page {request.path!r}; the console has /, /versions, /metrics, /episodes")
    except web.HTTPMethodNotAllowed:
        return _error(request, 405, f"{request.method} is not allowed on {request.path!r}; the console only reads")
    except web.HTTPException:
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        raise  # the browser went away (it does, when a video seeks)
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path_qs)
        return _error(request, 500, f"the console failed on {request.path!r} ({type(exc).__name__}); see its log")


def basic_auth(credentials: tuple[str, str]) -> Middleware:
    """A middleware requiring HTTP basic auth with `credentials` on everything but /health."""
    auth = BasicAuth(*credentials)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/health" or auth.allows(request.headers.get("Authorization", "")):
            return await handler(request)
        response = _error(request, 401, "this console asks for the stack's lakeFS access key id and secret key")
        response.headers["WWW-Authenticate"] = REALM
        return response

    return check


def console_app(lake: Lake, config: ConsoleConfig) -> web.Application:
    middlewares: list[Middleware] = [errors]
    if config.credentials is not None:
        middlewares.insert(0, basic_auth(config.credentials))
    app = web.Application(middlewares=middlewares, client_max_size=64 << 10)
    app[LAKE] = lake
    app[READER] = EpisodeReader(lake, lake.settings.lakefs_repo)
    add_routes(app)
    app.router.add_static("/static/", STATIC, append_version=False)
    return app


async def serve(app: web.Application, config: ConsoleConfig, *, ready: asyncio.Event | None = None) -> None:
    """Serve `app` until cancelled (blocking library calls run on 8 threads)."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(8, thread_name_prefix="console"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run_console(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    announce: Callable[[str], object] = log.info,
) -> None:
    """Run the console of the stack `settings` describe in the foreground, until interrupted."""
    host, port = host or settings.host, port or settings.console_port
    lake = Lake.open(settings)  # ConfigError when no lakeFS keys can be found
    config = ConsoleConfig(host=host, port=port, credentials=settings.resolve_lakefs_keys())
    where = "asks for the lakeFS key pair: `robolake stack env` prints it"
    announce(f"robolake console on http://{host}:{port}/ ({where}), reading lakeFS at {settings.lakefs_endpoint}")
    try:
        asyncio.run(serve(console_app(lake, config), config))
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another port with --port or ROBOLAKE_CONSOLE_PORT"
        ) from exc
    finally:
        lake.close()
