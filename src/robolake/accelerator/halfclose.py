"""Connections whose client half-closes (sends its request, then FIN) still get their answer, as from MinIO.

`nc -N`, shell scripts and some HTTP/1.0-era tools shut their sending side down once the request
is out. Go's server (MinIO) answers them; aiohttp's RequestHandler closes the connection at the
client's EOF, so the answer was lost. `HalfCloseProtocol` wraps aiohttp's handler: at EOF it lets
the request in progress finish (RequestHandler.close: no new request, then close) and keeps the
transport open for the answer. A body cut short by the EOF can never be completed: its reader
gets an error at once (`watch`, BodyCutShort) instead of waiting for bytes that cannot come, and
the client gets what MinIO answers the same head without a body (UpstreamPool.request_without_body).
`HalfCloseSite` is aiohttp's TCPSite with that protocol.
"""

from __future__ import annotations

import asyncio
import ssl

from aiohttp import StreamReader, web

ANSWER_MAX_BYTES = 64 * 1024


class BodyCutShort(ConnectionResetError):
    """The client closed its sending side before the whole body was sent (it still reads the answer)."""


class HalfCloseProtocol(asyncio.Protocol):
    """aiohttp's RequestHandler, but a client's EOF ends the request stream, not the connection."""

    def __init__(self, inner: web.RequestHandler) -> None:
        self._inner = inner
        self._bodies: list[StreamReader] = []  # of the requests in progress (pipelined: several)
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool:
        self.eof = True
        inner = self._inner
        # Idle (waiting for a request, none queued): at most a partial head, which can never
        # complete now. Close at once, as aiohttp does; kept open, the connection would stay in
        # CLOSE-WAIT for good (close() cancels that wait, so neither the handler nor the
        # keep-alive timer would close it).
        idle = inner._waiter is not None and not inner._waiter.done() and not inner._messages
        for body in self._bodies:
            _cut_short(body)
        self._bodies.clear()
        inner.close()  # the request in progress is answered; then the connection closes
        return not idle  # True: keep the transport, its writing side is still open

    def connection_lost(self, exc: Exception | None) -> None:
        self._bodies.clear()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def watch(self, body: StreamReader) -> None:
        if self.eof:
            _cut_short(body)
        else:
            self._bodies = [b for b in self._bodies if not b.is_eof()]
            self._bodies.append(body)


def watch(request: web.BaseRequest) -> None:
    """Make the request's body fail at once if its client half-closes before sending all of it."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    if isinstance(protocol, HalfCloseProtocol):
        protocol.watch(request.content)


def _cut_short(body: StreamReader) -> None:
    if not body.is_eof():
        body.set_exception(BodyCutShort("the client closed its side before the whole body was sent"))


class HalfCloseSite(web.BaseSite):
    """A TCP site like aiohttp's TCPSite, serving each connection through HalfCloseProtocol."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        backlog: int = 128,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog, ssl_context=ssl_context)
        self._app_runner = runner
        self._host, self._port = host, port

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._app_runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HalfCloseProtocol(server()),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            ssl=self._ssl_context,
        )
