"""The answer MinIO would give to a GET/HEAD, built from a cached copy; None where only MinIO can give it.

The order is MinIO's (checkPreconditions, then the range, then the checksums): an If-None-Match
hit is a 304 even for a Range past the end; an If-Match miss (412) and an unsatisfiable range
(416) are MinIO's to write, so the request is forwarded. The rules themselves are in
robolake.accelerator.replay; this module only applies them, without I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from robolake.accelerator import replay
from robolake.accelerator.cache import CachedObject


@dataclasses.dataclass(frozen=True)
class CacheAnswer:
    """Status, headers and body of an answer from the cache; `length` is its Content-Length."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes  # empty for a 304 and for a HEAD
    length: int | None  # what a HEAD announces (the body a GET would get); None for a 304


def answer_from_copy(method: str, headers: Mapping[str, str], obj: CachedObject) -> CacheAnswer | None:
    """The answer to `method` with request `headers` from `obj`, or None: forward to MinIO."""
    # An empty condition is no condition (MinIO tests `!= ""`).
    if_none = headers.get("if-none-match", "").strip()
    if if_none and replay.etag_matches(if_none, obj.etag):
        return CacheAnswer(304, replay.not_modified_headers(obj.headers), b"", None)
    if_match = headers.get("if-match", "").strip()
    if if_match and not replay.etag_matches(if_match, obj.etag):
        return None
    out = list(obj.headers)
    body, status = obj.body, 200
    range_header = headers.get("range", "")
    wanted = replay.parse_range(range_header) if range_header else None  # odd ones were forwarded already
    if wanted is not None:
        span = wanted.span(len(body))
        if span is None:
            return None
        start, end = span
        out.append(("Content-Range", f"bytes {start}-{end}/{len(body)}"))
        body, status = body[start : end + 1], 206
    elif replay.wants_checksums(headers):
        # MinIO sends checksum headers to whole-object reads that ask, never to ranged ones.
        if obj.checksums is None:
            return None  # filled by a read that did not ask: MinIO knows, and the copy learns
        out.extend(obj.checksums)
    if method == "HEAD":
        return CacheAnswer(status, out, b"", len(body))
    return CacheAnswer(status, out, body, len(body))
