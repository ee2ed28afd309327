"""Every bucket reports its changes: the accelerator subscribes each bucket to MinIO's notifications.

A cached object is dropped when MinIO's bucket notification says it changed (admin port,
`/minio/events`); a bucket that sends none would serve a copy overwritten straight on a node
for up to the revalidation window. So, given the webhook target's ARN (`--notify-arn`, which
the stack passes):

- a bucket counts as *covered* once its notification configuration holds our queue for
  ``s3:ObjectCreated:*`` and ``s3:ObjectRemoved:*`` with no filter; **only objects of covered
  buckets are cached** (the others are read from MinIO every time, so never stale);
- every POLL_S seconds the accelerator lists the buckets (as its own principal), reads each
  one's notification configuration and subscribes each one not covered, keeping any other
  configuration the bucket has (MinIO's PUT replaces the whole document, so ours is added to
  what is there); a bucket whose configuration lost our queue (someone PUT theirs straight on a
  node) has its cached copies dropped before it is subscribed again, since changes made in
  between sent us nothing; a configuration PUT through the accelerator is checked at once;
- a bucket created through the accelerator is subscribed before its CreateBucket is answered; one
  created straight on a node within POLL_S; a deleted one is forgotten.

Without an ARN (the accelerator run alone, `robolake accelerator serve`), nothing is subscribed
and every bucket counts as covered: the revalidation window is the bound, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from robolake.accelerator.fill import OwnSigner
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.tasks import BackgroundTasks
from robolake.accelerator.upstream import NoHealthyNodeError, Sender, UpstreamRequest
from robolake.sigv4 import sign

log = logging.getLogger(__name__)
POLL_S = 5.0
ECHO_TTL_S = 60.0  # a notification later than this after our PUT is not taken for its echo
EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
CONFIG_ID = "robolake-accelerator"
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def bucket_names(listing: bytes) -> list[str]:
    """The bucket names of a ListBuckets answer."""
    root = ET.fromstring(listing)
    return [e.text or "" for e in root.iter() if _local(e.tag) == "Name" and e.text]


def covers(document: bytes, arn: str) -> bool:
    """Whether a bucket's notification configuration sends every create and remove to `arn`."""
    for queue in ET.fromstring(document):
        if _local(queue.tag) != "QueueConfiguration":
            continue
        fields = {_local(c.tag): c.text for c in queue}
        events = {c.text for c in queue if _local(c.tag) == "Event"}
        if fields.get("Queue") == arn and "Filter" not in fields and set(EVENTS) <= events:
            return True
    return False


def with_our_queue(document: bytes, arn: str) -> bytes:
    """`document` without any queue of ours, plus ours: what to PUT (the rest is kept as it was)."""
    root = ET.fromstring(document) if document.strip() else ET.Element(f"{{{_S3_NS}}}NotificationConfiguration")
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    for queue in list(root):
        queue_arn = next((c.text for c in queue if _local(c.tag) == "Queue"), None)
        if _local(queue.tag) == "QueueConfiguration" and queue_arn == arn:
            root.remove(queue)
    ours = ET.SubElement(root, f"{ns}QueueConfiguration")
    ET.SubElement(ours, f"{ns}Id").text = CONFIG_ID
    ET.SubElement(ours, f"{ns}Queue").text = arn
    for event in EVENTS:
        ET.SubElement(ours, f"{ns}Event").text = event
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return text


class Echoes:
    """Writes the accelerator forwarded, so that MinIO's notification of each is not taken for news.

    The write itself already dropped the old copy (WriteForwarder); its notification arrives up to
    seconds later and would drop the new copy a read cached meanwhile. A notification of an
    ObjectCreated:Put whose ETag is the one MinIO answered our PUT with is that echo: it is skipped
    once. Any other notification of the key drops it (a write straight on a node with the same
    ETag still produces its own notification, so some notification drops the copy after it).
    """

    def __init__(self, *, ttl_s: float = ECHO_TTL_S, max_entries: int = 10_000) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._pending: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def wrote(self, bucket: str, key: str, etag: str) -> None:
        self._pending[(bucket, key)] = (etag.strip('"'), time.monotonic() + self.ttl_s)
        self._pending.move_to_end((bucket, key))
        while len(self._pending) > self.max_entries:
            self._pending.popitem(last=False)

    def is_echo(self, bucket: str, key: str, event: str, etag: str) -> bool:
        """True (once) when this notification is the echo of our own PUT of `key`."""
        mine = self._pending.get((bucket, key))
        if mine is None or not event.startswith("s3:ObjectCreated:Put"):
            return False
        del self._pending[(bucket, key)]
        return mine[0] == etag.strip('"') and mine[1] > time.monotonic()


class Subscriptions:
    """Which buckets are covered by MinIO's notifications, and the loop that covers the rest."""

    def __init__(
        self,
        upstream: Sender,
        signer: OwnSigner,
        metrics: Metrics,
        *,
        arn: str | None,
        on_lost: Callable[[str], None] = lambda _bucket: None,
    ) -> None:
        self.upstream, self.signer, self.metrics, self.arn = upstream, signer, metrics, arn
        self.on_lost = on_lost  # drops a bucket's copies when its subscription was found gone
        self.covered: set[str] = set()
        self.echoes = Echoes()
        self._background = BackgroundTasks("bucket subscriptions")
        self._lock = asyncio.Lock()

    def covers(self, bucket: str) -> bool:
        """Whether objects of `bucket` may be cached (its changes reach the accelerator)."""
        return self.arn is None or bucket in self.covered

    async def after_write(self, method: str, bucket: str, key: str, query: str, status: int, etag: str) -> None:
        """Told of every write's answer before the client is: a bucket created through the accelerator
        is subscribed before its CreateBucket is answered (so its objects are cached from the first
        read), one deleted is forgotten; an object's PUT is remembered for its echo."""
        if self.arn is None or not bucket:
            return
        if key:
            if method == "PUT" and status == 200 and etag and not query:
                self.echoes.wrote(bucket, key, etag)
            return
        if query:
            # The bucket's own notification configuration, PUT through us: ours must still be in it.
            names = {part.split("=", 1)[0] for part in query.split("&")}
            if method == "PUT" and status == 200 and "notification" in names:
                await self._ensure_quietly(bucket)
            return
        if method == "PUT" and status == 200:
            await self._ensure_quietly(bucket)
        elif method == "DELETE" and status == 204:
            self.covered.discard(bucket)

    async def lifespan(self, _: web.Application) -> AsyncIterator[None]:
        if self.arn is not None:
            self._background.spawn(self._poll_loop())
        yield
        await self._background.close()

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except (NoHealthyNodeError, ET.ParseError, OSError) as exc:
                self.metrics.inc("subscription_sweep_failed")
                log.warning("could not check the buckets' notifications: %s", exc)
            await asyncio.sleep(POLL_S)

    async def sweep(self) -> None:
        """Subscribe every bucket MinIO lists that is not covered yet."""
        status, body = await self._call("GET", "/", [], b"")
        if status != 200:
            raise OSError(f"ListBuckets answered {status}")
        names = bucket_names(body)
        self.covered &= set(names)
        for name in names:  # covered ones too: a PUT straight on a node may have dropped our queue
            await self.ensure(name)

    async def ensure(self, bucket: str) -> bool:
        """Make `bucket` send its changes to us; True once it does."""
        assert self.arn is not None
        async with self._lock:
            path = f"/{bucket}"
            status, body = await self._call("GET", path, [("notification", "")], b"")
            if status != 200:
                self.metrics.inc("subscription_failed")
                return False
            if not covers(body, self.arn):
                if bucket in self.covered:
                    self.covered.discard(bucket)
                    self.on_lost(bucket)
                    self.metrics.inc("subscriptions_lost")
                    log.warning("bucket %r no longer sent its changes to %s; its copies are dropped", bucket, self.arn)
                status, answer = await self._call("PUT", path, [("notification", "")], with_our_queue(body, self.arn))
                if status != 200:
                    self.metrics.inc("subscription_failed")
                    log.warning(
                        "subscribing bucket %r to %s: MinIO answered %d %s", bucket, self.arn, status, answer[:200]
                    )
                    return False
                self.metrics.inc("subscriptions_made")
            self.covered.add(bucket)
            return True

    async def _ensure_quietly(self, bucket: str) -> None:
        try:
            await self.ensure(bucket)
        except (NoHealthyNodeError, ET.ParseError, OSError) as exc:
            self.metrics.inc("subscription_failed")
            log.warning("could not subscribe bucket %r: %s", bucket, exc)

    async def _call(self, method: str, path: str, query: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
        s = self.signer
        digest = hashlib.sha256(body).hexdigest()
        headers = {
            "Host": s.host,
            **sign(method, path, query, s.host, s.access_key, s.secret, region=s.region, payload_hash=digest),
        }
        target = path + ("?" + "&".join(f"{k}={v}" if v else k for k, v in query) if query else "")
        if body:
            headers["Content-Length"] = str(len(body))
        request = UpstreamRequest(method, target, headers, body if body else None)
        async with await self.upstream.request(request, retry=True) as response:
            return response.status, await response.read()
