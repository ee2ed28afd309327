"""Passing a client's request on to MinIO: its target in origin form, its body bounded, its headers kept.

Target         the request line's target as MinIO routes it (an absolute-form one in origin form)
RequestBodies  which bodies are read whole first (so a failed node can be retried) and which
               stream: only a request verified here, only up to `buffer_max_bytes`, and only
               while every body held at once stays within `budget_bytes`. The rest stream, so an
               anonymous client's 256 MB body costs a few chunks of memory and MinIO refuses it
               as soon as it has read the headers.
send           one request to the Sender, timed
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from multidict import CIMultiDict

from robolake.accelerator import halfclose, s3xml
from robolake.accelerator.headers import forwarded
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.relay import relay
from robolake.accelerator.upstream import (
    Body,
    ClientBodyError,
    Sender,
    StreamedBody,
    UpstreamRequest,
    UpstreamResponse,
)

# RFC 9112 §3.2.2 absolute-form. Go's server routes it by its path and takes Host from it.
_ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)([/?].*)?", re.S)


@dataclasses.dataclass(frozen=True)
class Target:
    """A request target as MinIO sees it: `origin` is `/path?query`; `authority` the host an
    absolute-form target named ("" for origin form); `origin` is "" for a form MinIO cannot route."""

    origin: str
    authority: str = ""

    @classmethod
    def of(cls, raw: str) -> Target:
        if raw.startswith("/"):
            return cls(raw)
        match = _ABSOLUTE_FORM.fullmatch(raw)
        if match is None:
            return cls("")  # asterisk- or authority-form: no S3 request
        rest = match[2] or "/"
        return cls(rest if rest.startswith("/") else "/" + rest, match[1])

    @property
    def path(self) -> str:
        return self.origin.partition("?")[0]

    @property
    def query(self) -> str:
        return self.origin.partition("?")[2]


@dataclasses.dataclass(kw_only=True)
class RequestBodies:
    """Decides, per request, whether its body is held in memory (retryable) or streamed."""

    buffer_max_bytes: int
    budget_bytes: int
    held_bytes: int = 0

    @contextlib.asynccontextmanager
    async def open(
        self, request: web.Request, *, buffer: bool, tap: Callable[[bytes], None] | None = None
    ) -> AsyncIterator[Body]:
        """The body to send on: bytes when `buffer` and it fits, else a StreamedBody; None if there is none.

        `tap` sees every byte of it as it goes (a multi-delete's key listing is parsed that way).
        Reading a buffered body that breaks raises ClientBodyError.
        """
        if not request.body_exists:
            yield None
            return
        halfclose.watch(request)
        length = request.content_length
        if not buffer or length is None or length > self.buffer_max_bytes or not self._take(length):
            yield StreamedBody(request.content, tap=tap)
            return
        try:
            try:
                data = await request.content.readexactly(length)
            except Exception as exc:  # connection lost, or the body ended early
                message = f"the client's request body broke after {length} bytes were announced"
                raise ClientBodyError(message, exc) from exc
            if tap is not None:
                tap(data)
            yield data
        finally:
            self.held_bytes -= length

    def _take(self, length: int) -> bool:
        if self.held_bytes + length > self.budget_bytes:
            return False
        self.held_bytes += length
        return True


INCOMPLETE_BODY = "You did not provide the number of bytes specified by the Content-Length HTTP header."


async def answer_broken_body(
    upstream: Sender, metrics: Metrics, request: web.Request, target: Target, error: ClientBodyError
) -> web.StreamResponse:
    """The answer to a request whose body broke: MinIO's, when the client half-closed and waits for it."""
    metrics.inc("client_body_broken")
    request.content.feed_eof()  # read no further: aiohttp would drain it, and log the error again
    if not isinstance(error.cause, halfclose.BodyCutShort):
        return s3xml.error_response(400, "IncompleteBody", INCOMPLETE_BODY, request.path)  # nobody reads it
    headers = CIMultiDict(forwarded(request.headers.items()))
    if target.authority:
        headers["Host"] = target.authority
    response = await upstream.request_without_body(UpstreamRequest(request.method, target.origin, headers))
    async with response:
        return await relay(request, response, buffer_max_bytes=halfclose.ANSWER_MAX_BYTES)


async def send(
    upstream: Sender,
    metrics: Metrics,
    request: web.Request,
    target: Target,
    op: str,
    body: Body,
    *,
    retry: bool,
    second_opinion: bool = False,
) -> UpstreamResponse:
    """Send the client's request on to MinIO (its own headers, less hop-by-hop ones), timed as `op`."""
    started = time.perf_counter()
    headers = CIMultiDict(forwarded(request.headers.items()))
    if target.authority:
        headers["Host"] = target.authority
    outgoing = UpstreamRequest(request.method, target.origin, headers, body)
    response = await upstream.request(outgoing, retry=retry, second_opinion=second_opinion)
    metrics.upstream_latency[op].observe(time.perf_counter() - started)
    return response
