"""Writes (PUT, POST, DELETE) passed on to MinIO, and the copies they invalidate once MinIO has answered.

Nothing is dropped before MinIO answers: a read meanwhile may still get the old copy, which S3
allows for a write not yet answered, and a write MinIO refuses (an unsigned DELETE, a PUT with a
bad signature) leaves the cache as it was. What a write changed is dropped, and its epochs moved,
after MinIO's success and before the client sees it (robolake.accelerator.invalidation), so a
fill that raced the write is refused when it comes to store. When the answer is lost (the
connection broke after the whole request went out) the write may have happened: that counts as
a success. A body the client broke cannot have been applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from robolake.accelerator import invalidation, multidelete
from robolake.accelerator.cache import TieredCache
from robolake.accelerator.forward import RequestBodies, Target, answer_broken_body, send
from robolake.accelerator.headers import relayed
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.relay import relay
from robolake.accelerator.upstream import ClientBodyError, NoHealthyNodeError, Sender, StreamedBody, UpstreamResponse


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class WriteForwarder:
    """Forwards one write and invalidates what MinIO says it changed."""

    cache: TieredCache
    upstream: Sender
    metrics: Metrics
    bodies: RequestBodies
    relay_max_bytes: int
    # Awaited after MinIO's answer to a write, before the client gets it (bucket subscriptions).
    after_write: Callable[[str, str, str, str, int, str], Awaitable[None]] | None = None

    async def forward(
        self, request: web.Request, target: Target, key: invalidation.ObjectKey, *, verified: bool
    ) -> web.StreamResponse:
        """Send the write; `verified`: signed by a principal of ours, so its body may be held for a retry."""
        query = MultiDict(parse_qsl(target.query, keep_blank_values=True))
        bucket, name = key
        listing = (
            multidelete.KeyListing() if invalidation.is_multi_delete(request.method, bucket, name, query) else None
        )
        tap = listing.feed if listing is not None else None
        async with self.bodies.open(request, buffer=verified, tap=tap) as body:
            try:
                response = await send(
                    self.upstream, self.metrics, request, target, "write", body, retry=isinstance(body, bytes | None)
                )
            except ClientBodyError as exc:
                return await answer_broken_body(self.upstream, self.metrics, request, target, exc)
            except NoHealthyNodeError:
                if not (isinstance(body, StreamedBody) and body.unfinished):
                    self._invalidate(request.method, key, query, _listed(listing))
                raise
        async with response:
            if listing is None:
                if 200 <= response.status < 300:
                    self._invalidate(request.method, key, query, [])
                if self.after_write is not None:
                    etag = next((v for n, v in response.headers if n.lower() == "etag"), "")
                    await self.after_write(request.method, bucket, name, target.query, response.status, etag)
                return await relay(request, response, buffer_max_bytes=self.relay_max_bytes)
            listing.close()
            return await self._answer_multi_delete(request, response, key, query, listing)

    async def _answer_multi_delete(
        self,
        request: web.Request,
        response: UpstreamResponse,
        key: invalidation.ObjectKey,
        query: MultiDict[str],
        listing: multidelete.KeyListing,
    ) -> web.StreamResponse:
        """Invalidate the keys MinIO deleted (its answer names the ones it did not), then relay it."""
        length = response.content_length
        if length is None or length > multidelete.MAX_ANSWER_BYTES:
            if 200 <= response.status < 300:
                self._invalidate(request.method, key, query, multidelete.deleted_keys(listing, None))
            return await relay(request, response, buffer_max_bytes=self.relay_max_bytes)
        body = await response.read()
        if 200 <= response.status < 300:
            deleted = multidelete.deleted_keys(listing, multidelete.DeleteResult.parse(body))
            self._invalidate(request.method, key, query, deleted)
        return web.Response(status=response.status, body=body, headers=CIMultiDict(relayed(response.headers)))

    def _invalidate(
        self, method: str, key: invalidation.ObjectKey, query: MultiDict[str], deleted: list[str] | None
    ) -> None:
        targets = invalidation.write_targets(method, key[0], key[1], query, deleted)
        self.cache.invalidate(targets, "write")


def _listed(listing: multidelete.KeyListing | None) -> list[str] | None:
    """The keys a multi-delete named (None: not known), for a write whose answer was lost."""
    if listing is None:
        return []
    listing.close()
    return multidelete.deleted_keys(listing, None)
