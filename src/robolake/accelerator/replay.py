"""MinIO's rules for answering GET/HEAD of an object, restated for answers from the cache.

A cache answer must carry exactly the headers MinIO would have sent for the same request, or
clients that check them break (botocore validates `x-amz-checksum-*` against whatever body it
got, so a ranged answer carrying the whole object's CRC fails with FlexibleChecksumError).
Each rule names the MinIO code it mirrors (pinned commit, `cmd/`); the conformance suite
(tests/integration/test_accelerator_conformance.py) checks each against a real node. What the
cache cannot answer exactly is left to MinIO: these functions say None and the request is
forwarded, so MinIO still writes every error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

Headers = tuple[tuple[str, str], ...]  # (name, value) pairs as MinIO sent them; names may repeat
CHECKSUM_MODE = "x-amz-checksum-mode"
CHECKSUM_PREFIX = "x-amz-checksum-"  # x-amz-checksum-crc32 ... and x-amz-checksum-type

# What a 304 carries (writeHeadersPrecondition + setCommonHeaders, object-handlers-common.go),
# plus what MinIO's middleware puts on every answer (addCustomHeadersMiddleware, the CORS and
# gzip handlers' Vary, the request limiter's X-Ratelimit-*). No Content-Type, no metadata, no
# checksums. The request id is added per answer.
NOT_MODIFIED_HEADERS = frozenset(
    {
        "server",
        "accept-ranges",
        "x-amz-bucket-region",
        "last-modified",
        "etag",
        "x-amz-version-id",
        "expires",
        "cache-control",
        "x-xss-protection",
        "x-content-type-options",
        "strict-transport-security",
        "vary",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-amz-id-2",
    }
)

# canonicalizeETag's pattern (object-handlers-common.go): strips quotes at both ends only.
_ETAG_QUOTES = re.compile(r'"*?([^"]*?)"*?$')
# parseRequestRangeSpec (httprange.go) reads one `first-last` pair of int64s. At most 18 digits
# keeps every value the cache parses inside int64; longer ones are MinIO's to judge.
_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")


def wants_checksums(headers: Mapping[str, str]) -> bool:
    """Whether MinIO would add the object's checksum headers to a whole-object answer."""
    return headers.get(CHECKSUM_MODE) == "ENABLED"  # compared exactly: "enabled" gets none


def etag_matches(header: str, etag: str) -> bool:
    """MinIO's isETagEqual: `*`, or equal once quotes are trimmed. No lists, no weak `W/` tags."""
    if header.strip() == "*":
        return True
    return _ETAG_QUOTES.sub(r"\1", etag, count=1) == _ETAG_QUOTES.sub(r"\1", header, count=1)


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """One `Range: bytes=first-last` (either end may be open); first None is a suffix of `last` bytes."""

    first: int | None
    last: int | None

    def span(self, size: int) -> tuple[int, int] | None:
        """Inclusive (start, end) within an object of `size` bytes; None where MinIO answers 416.

        An empty object is left to MinIO too (it answers a suffix range of one with 206 and a
        Content-Range of `bytes 0--1/0`), as is anything else not worth restating.
        """
        if size == 0:
            return None
        if self.first is None:  # a suffix: the last `last` bytes, or all of them
            return size - min(self.last or 0, size), size - 1
        if self.first >= size:
            return None
        end = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, end


def parse_range(header: str) -> ByteRange | None:
    """A Range header the cache can answer, or None for one MinIO must judge.

    MinIO answers 416 at once for `first > last` and `-0` (before any precondition), treats
    anything else it cannot parse (`bytes=-`, `bytes=a-b`, `bytes=0-1,5-6`, other units) as no
    Range at all, and otherwise computes the span against the object's size.
    """
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = (int(g) if g else None for g in match.groups())
    if first is None and not last:  # `bytes=-` is ignored by MinIO, `bytes=-0` is a 416
        return None
    if first is not None and last is not None and first > last:
        return None
    return ByteRange(first, last)


def split_checksums(headers: Iterable[tuple[str, str]]) -> tuple[Headers, Headers]:
    """(the object's other headers, its x-amz-checksum-* headers)."""
    rest: list[tuple[str, str]] = []
    checksums: list[tuple[str, str]] = []
    for name, value in headers:
        (checksums if name.lower().startswith(CHECKSUM_PREFIX) else rest).append((name, value))
    return tuple(rest), tuple(checksums)


def not_modified_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers of a cached 200 that MinIO also sends with a 304 for the same object."""
    return [(name, value) for name, value in headers if name.lower() in NOT_MODIFIED_HEADERS]
