"""Which headers cross the proxy, and which a cached copy keeps: the one rule for both directions.

    request  client -> MinIO      `forwarded`:  all but hop-by-hop
    response MinIO -> client      `relayed`:    all but hop-by-hop and Content-Length (aiohttp frames the body)
    response MinIO -> cache       `replayable`: all but NOT_REPLAYED and Access-Control-*

Hop-by-hop headers describe one connection (RFC 9110 §7.6.1), and Proxy-* ones the hop to a
proxy: a proxy never passes them on. NOT_REPLAYED adds what describes one response rather than
the object (its date, its request id, its framing), so a cached copy never answers with them.
"""

from __future__ import annotations

from collections.abc import Iterable

Pairs = Iterable[tuple[str, str]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# One response's own: the request id is added per answer, Date by aiohttp, Content-Length from the body.
PER_RESPONSE = frozenset({"date", "x-amz-request-id", "content-length"})
NOT_REPLAYED = HOP_BY_HOP | PER_RESPONSE
# Access-Control-* answer one request's Origin; requests with one are never answered from cache.
_CORS_PREFIX = "access-control-"


def forwarded(headers: Pairs) -> list[tuple[str, str]]:
    """A client's request headers as they go to MinIO (its signature covers none of those dropped).

    A name sent twice in different cases (`x-amz-date`, `X-Amz-Date`) is sent on in the first
    one's spelling: aiohttp's client keeps repeats of one spelling but lets a second spelling
    replace the first, which would change what MinIO reads (Go reads the first value).
    """
    spelled: dict[str, str] = {}
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower not in HOP_BY_HOP:
            out.append((spelled.setdefault(lower, name), value))
    return out


def relayed(headers: Pairs) -> list[tuple[str, str]]:
    """MinIO's response headers as they go to the client; aiohttp sets Content-Length itself."""
    return [
        (name, value)
        for name, value in headers
        if (lower := name.lower()) not in HOP_BY_HOP and lower != "content-length"
    ]


def replayable(headers: Pairs) -> list[tuple[str, str]]:
    """What a cached copy keeps of MinIO's response headers, to answer later requests with."""
    return [
        (name, value)
        for name, value in headers
        if (lower := name.lower()) not in NOT_REPLAYED and not lower.startswith(_CORS_PREFIX)
    ]
