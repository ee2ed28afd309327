"""Writing answers to the client: MinIO's relayed as they came, the cache's with MinIO's framing."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from multidict import CIMultiDict

from robolake.accelerator.answer import CacheAnswer
from robolake.accelerator.headers import relayed
from robolake.accelerator.upstream import UpstreamResponse


async def relay(request: web.Request, response: UpstreamResponse, *, buffer_max_bytes: int) -> web.StreamResponse:
    """Pass MinIO's answer on: bodies up to `buffer_max_bytes` in one piece, larger ones streamed."""
    headers = CIMultiDict(relayed(response.headers))
    length = response.content_length
    if request.method == "HEAD" or response.status in (204, 304):
        response.release()
        return await bodiless(request, response.status, headers, length)
    if length is not None and length <= buffer_max_bytes:
        return web.Response(status=response.status, body=await response.read(), headers=headers)
    stream = web.StreamResponse(status=response.status, headers=headers)
    if length is not None:
        stream.content_length = length
    await stream.prepare(request)
    async for chunk in response.chunks():
        await stream.write(chunk)
    await stream.write_eof()
    return stream


async def send_answer(
    request: web.Request, answer: CacheAnswer, extra: Iterable[tuple[str, str]]
) -> web.StreamResponse:
    """Write an answer from the cache, with `extra` headers (request id, cache marker) after its own."""
    headers = CIMultiDict([*answer.headers, *extra])
    if answer.status == 304:
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        return await bodiless(request, answer.status, headers, answer.length)
    return web.Response(status=answer.status, body=answer.body, headers=headers)


async def bodiless(
    request: web.Request, status: int, headers: CIMultiDict[str], length: int | None
) -> web.StreamResponse:
    """A HEAD (or 204/304) answer that keeps the object's Content-Length, as MinIO sends it."""
    headers.pop("Content-Length", None)
    response = web.StreamResponse(status=status, headers=headers)
    if length is not None and status not in (204, 304):
        response.content_length = length
    await response.prepare(request)
    await response.write_eof()
    return response
