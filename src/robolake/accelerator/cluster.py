"""One cluster view: the requests MinIO answers from one node's memory, asked of every node and merged.

Compared node by node (three nodes of one cluster, each asked the same signed request), every
S3 read answers the same on each node but one: `GET /bucket?uploads` (ListMultipartUploads)
without a prefix. MinIO (pinned commit, cmd/erasure-server-pool.go `ListMultipartUploads`) then
answers from `mpCache`, a map in the memory of the node that created each upload:

    no prefix     the uploads created on this node, sorted by Initiated; key-marker,
                  upload-id-marker, max-uploads and delimiter are echoed but not applied;
                  IsTruncated is false, NextKeyMarker / NextUploadIdMarker empty
    prefix=NAME   the uploads of the object NAME, read from the drives: the same on every
                  node, paged by upload-id-marker and max-uploads

So only the first is per node, and `merge_uploads` gives it for the whole cluster: the first
node's document with the `<Upload>` elements of every node's answer in its place, each once
(by UploadId), sorted by Initiated as one node sorts its own. Everything else is MinIO's bytes
as they came: the markers, MaxUploads, EncodingType, the keys as encoded, the headers.
Uploads need no routing: UploadPart, ListParts, CompleteMultipartUpload and AbortMultipartUpload
work through any node (the upload lives on the drives), and completing or aborting one removes
it from every node's map (MinIO tells its peers, `DeleteUploadID`).

One MinIO flaw is worked around: completing an upload through a node other than the one that
created it often leaves it in the creator's map (the peer notice is sent with the request's
lock context, already cancelled: seen for 5 s and more, until the map's 24 h expiry), so that
node keeps listing an upload that is gone. The accelerator remembers the uploads completed or
aborted through it (`note_write`); when one of them is listed again it asks MinIO (ListParts,
as its own principal) and leaves it out only when MinIO answers NoSuchUpload. An upload id is
never reused, so that verdict is final. Uploads finished straight on a node are listed as that
node lists them.

An answer that is not 200 (AccessDenied, NoSuchBucket, a node's 503) is passed on as the first
node in order gave it: MinIO judges the request once, on whichever node, as it would directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import re
import zlib
from collections import OrderedDict
from collections.abc import Collection
from urllib.parse import parse_qsl, quote

from aiohttp import web
from multidict import CIMultiDict

from robolake.accelerator import s3xml
from robolake.accelerator.fill import OwnSigner
from robolake.accelerator.headers import forwarded, relayed
from robolake.accelerator.invalidation import ObjectKey
from robolake.accelerator.metrics import Metrics
from robolake.accelerator.relay import relay
from robolake.accelerator.upstream import Upstream, UpstreamRequest, UpstreamResponse

MAX_LISTING_BYTES = 64 * 1024 * 1024  # one node's listing, decompressed (~120,000 uploads)
REMEMBERED_UPLOADS = 65536  # finished uploads remembered (each set), the oldest forgotten first
_UPLOAD = re.compile(rb"<Upload>.*?</Upload>", re.S)
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]*)</UploadId>")
_INITIATED = re.compile(rb"<Initiated>([^<]*)</Initiated>")
_ROOT = b"<ListMultipartUploadsResult"
_AFTER_UPLOADS = (b"<CommonPrefixes>", b"</ListMultipartUploadsResult>")


def is_node_local(method: str, bucket: str, key: str, query: str) -> bool:
    """Whether MinIO answers this request from the asked node's memory (a no-prefix ListMultipartUploads)."""
    if method != "GET" or not bucket or key:
        return False
    params = parse_qsl(query, keep_blank_values=True)
    names = [name for name, _ in params]
    if "uploads" not in names:
        return False
    # Go's r.Form.Get takes the first value of a repeated name.
    prefix = next((value for name, value in params if name == "prefix"), "")
    return prefix == ""


class ListingError(ValueError):
    """A node's 200 answer is not a ListMultipartUploadsResult this module can merge."""


def upload_ids(documents: list[bytes]) -> set[str]:
    """Every UploadId the documents list."""
    return {m[1].decode("ascii", "replace") for doc in documents for m in _UPLOAD_ID.finditer(doc)}


def merge_uploads(documents: list[bytes], *, drop: Collection[str] = ()) -> bytes:
    """The first document with the `<Upload>` elements of all of them, each UploadId once, by Initiated.

    Uploads whose id is in `drop` are left out.

    Python's sort is stable: uploads initiated in the same millisecond keep node order.
    """
    if not documents or any(_ROOT not in doc[:512] for doc in documents):
        raise ListingError("not a ListMultipartUploadsResult")
    seen: set[bytes] = set()
    uploads: list[tuple[bytes, bytes]] = []  # (Initiated, the element as MinIO wrote it)
    for doc in documents:
        for match in _UPLOAD.finditer(doc):
            element = match[0]
            upload_id, initiated = _UPLOAD_ID.search(element), _INITIATED.search(element)
            if upload_id is None or initiated is None:
                raise ListingError(f"an <Upload> without UploadId or Initiated: {element[:120]!r}")
            if upload_id[1] not in seen and upload_id[1].decode("ascii", "replace") not in drop:
                seen.add(upload_id[1])
                uploads.append((initiated[1], element))
    uploads.sort(key=lambda pair: pair[0])  # fixed-width ISO 8601 (amztime.ISO8601Format) sorts as text
    first = documents[0]
    spans = [m.span() for m in _UPLOAD.finditer(first)]
    if spans:
        at = spans[0][0]
    else:
        at = min((i for marker in _AFTER_UPLOADS if (i := first.find(marker)) >= 0), default=-1)
        if at < 0:
            raise ListingError("no end to the ListMultipartUploadsResult")
    skeleton = _UPLOAD.sub(b"", first)
    return skeleton[:at] + b"".join(element for _, element in uploads) + skeleton[at:]


class _Bounded:
    """Upload ids (with their object), the oldest forgotten past REMEMBERED_UPLOADS."""

    def __init__(self) -> None:
        self.items: OrderedDict[str, ObjectKey] = OrderedDict()

    def add(self, upload_id: str, key: ObjectKey) -> None:
        self.items[upload_id] = key
        if len(self.items) > REMEMBERED_UPLOADS:
            self.items.popitem(last=False)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class ClusterLister:
    """Answers the node-local requests (`is_node_local`) for the whole cluster."""

    upstream: Upstream
    signer: OwnSigner
    metrics: Metrics
    finished: _Bounded = dataclasses.field(default_factory=_Bounded)  # completed/aborted through us
    gone: _Bounded = dataclasses.field(default_factory=_Bounded)  # and MinIO says NoSuchUpload

    def note_write(self, method: str, query: str, key: ObjectKey, status: int) -> None:
        """Told of every write's answer: remembers an upload completed (POST) or aborted (DELETE)."""
        if method not in ("POST", "DELETE") or status not in (200, 204) or not key[1]:
            return
        upload_id = next((v for n, v in parse_qsl(query, keep_blank_values=True) if n == "uploadId"), "")
        if upload_id:
            self.finished.add(upload_id, key)

    async def list_uploads(self, request: web.Request, origin: str, *, buffer_max_bytes: int) -> web.StreamResponse:
        """Send the client's own request to every healthy node, merge their answers, and reply."""
        outgoing = UpstreamRequest(request.method, origin, CIMultiDict(forwarded(request.headers.items())))
        responses = await self.upstream.request_each(outgoing)
        try:
            refused = next((r for r in responses if r.status != 200), None)
            if refused is not None:
                self.metrics.inc("cluster_listing_refused")
                return await relay(request, refused, buffer_max_bytes=buffer_max_bytes)
            try:
                bodies = [await _read_listing(r) for r in responses]
            except ListingTooLarge as exc:
                return s3xml.error_response(503, "ServiceUnavailable", str(exc), request.path)
            texts = [text for text, _ in bodies]
            try:
                merged = merge_uploads(texts, drop=await self._gone_of(upload_ids(texts)))
                self.metrics.inc("cluster_listings")
            except ListingError:
                merged = texts[0]  # the first node's answer as it came: one node's view, not none
                self.metrics.inc("cluster_listing_unmerged")
            body = gzip.compress(merged, compresslevel=1) if bodies[0][1] else merged
            return web.Response(status=200, body=body, headers=CIMultiDict(relayed(responses[0].headers)))
        finally:
            for response in responses:
                response.release()

    async def _gone_of(self, listed: set[str]) -> set[str]:
        """The listed uploads MinIO no longer has, of those finished through the accelerator."""
        suspects = [
            (u, self.finished.items[u]) for u in listed if u in self.finished.items and u not in self.gone.items
        ]
        verdicts = await asyncio.gather(*(self._is_gone(key, u) for u, key in suspects))
        for (upload_id, key), gone in zip(suspects, verdicts, strict=True):
            if gone:
                self.gone.add(upload_id, key)
                self.metrics.inc("cluster_listing_stale_dropped")
        return {u for u in listed if u in self.gone.items}

    async def _is_gone(self, key: ObjectKey, upload_id: str) -> bool:
        """Whether MinIO answers NoSuchUpload to a ListParts of `upload_id` (any other answer: no)."""
        path = s3xml.object_path(key)
        query = [("max-parts", "1"), ("uploadId", upload_id)]
        target = f"{path}?max-parts=1&uploadId={quote(upload_id, safe='-_.~')}"
        request = UpstreamRequest("GET", target, self.signer.headers_for("GET", path, query))
        async with await self.upstream.request(request, retry=True) as response:
            return response.status == 404 and b"<Code>NoSuchUpload</Code>" in await response.read()


async def _read_listing(response: UpstreamResponse) -> tuple[bytes, bool]:
    """A node's listing, decompressed when MinIO gzipped it (it does for `Accept-Encoding: gzip`)."""
    raw = bytearray()
    async for chunk in response.chunks():
        raw += chunk
        if len(raw) > MAX_LISTING_BYTES:
            raise ListingTooLarge(f"a node's multipart-upload listing is over {MAX_LISTING_BYTES} bytes")
    encoding = next((v for n, v in response.headers if n.lower() == "content-encoding"), "").strip().lower()
    if encoding != "gzip":
        return bytes(raw), False
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    data = inflate.decompress(bytes(raw), MAX_LISTING_BYTES)
    if inflate.unconsumed_tail:
        raise ListingTooLarge(f"a node's multipart-upload listing inflates past {MAX_LISTING_BYTES} bytes")
    return data, True


class ListingTooLarge(ListingError):
    """A node's listing is beyond what the accelerator holds in memory to merge."""
