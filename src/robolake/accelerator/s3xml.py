"""S3-shaped XML error bodies, and object keys to and from request paths, for the accelerator's handlers.

A request path becomes a cache key exactly as MinIO turns it into an object name (pinned commit,
`cmd/`): the router splits the escaped path (minio/mux, UseEncodedPath), `unescapePath` decodes the
name and `trimLeadingSlash` cleans one that starts with "/", so `/b//k` is the object `k`.
"""

from __future__ import annotations

import re
import secrets
import string
from urllib.parse import quote, unquote_to_bytes
from xml.sax.saxutils import escape

from aiohttp import web


def request_id() -> str:
    return secrets.token_hex(8).upper()


def error_response(status: int, code: str, message: str, resource: str = "") -> web.Response:
    """An S3 error document (`<Error><Code>...`) as MinIO and S3 send it."""
    rid = request_id()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{rid}</RequestId></Error>"
    )
    return web.Response(
        status=status,
        body=body.encode(),
        content_type="application/xml",
        headers={"X-Amz-Request-Id": rid, "Server": "MinIO"},
    )


# Bytes Go's url.validEncoded accepts in an escaped path as they are (shouldEscape false in path
# mode, plus its explicit list): when every byte of the raw path is one of these, MinIO's router
# splits the raw path; otherwise it splits Go's re-escaping of the decoded path.
_VALID_ENCODED = frozenset(string.ascii_letters + string.digits + "-_.~" + "$&+,/:;=@" + "!$&'()*+,;=:@[]" + "%")
_MAX_PATH = 32 << 10  # hasBadPathComponent: "at 32K we are beyond reasonable"
_GO_SPACE = frozenset(b"\t\n\v\f\r \x85\xa0")  # unicode.IsSpace of one byte taken as a rune


def split_path(raw_path: str) -> tuple[str, str]:
    """(bucket, object name) as MinIO derives them from a request path: the cache key of a request.

    '/bucket/a%20b/c' -> ('bucket', 'a b/c'); '/b//k' and '/b/%2Fk' -> ('b', 'k') (MinIO's
    trimLeadingSlash cleans a name that starts with '/'); ('b', '') for a bucket; ('', '') for
    the service root and for every path MinIO refuses (bad escapes, `.`/`..` segments, names
    that are not UTF-8), so that nothing is cached or invalidated for them.
    """
    decoded = _path_unescape(raw_path)
    if decoded is None or not decoded.startswith(b"/") or _has_bad_component(decoded):
        return "", ""
    if all(c in _VALID_ENCODED for c in raw_path):
        # minio/mux with UseEncodedPath: {bucket} is the first escaped segment, used as is.
        bucket, _, escaped = raw_path[1:].partition("/")
        name = _path_unescape(escaped)
    else:
        first, _, name = decoded[1:].partition(b"/")
        bucket = quote(first.decode("utf-8", "surrogateescape"), safe="")
    try:
        key = name.decode("utf-8") if name is not None else None
    except UnicodeDecodeError:
        key = None  # MinIO refuses object names that are not UTF-8
    if not bucket or key is None:
        return "", ""
    return bucket, trim_leading_slash(key)


def object_path(key: tuple[str, str]) -> str:
    """('bucket', 'a b/c') -> '/bucket/a%20b/c': the request path of a key, `split_path`'s inverse."""
    return "/" + quote(key[0], safe="") + "/" + quote(key[1], safe="/~")


def _path_unescape(raw: str) -> bytes | None:
    """Go's url.PathUnescape, to bytes: None for a malformed escape (Go's server answers 400)."""
    data = raw.encode("utf-8", "surrogateescape")
    if _BAD_ESCAPE.search(data):
        return None
    return unquote_to_bytes(data)


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def trim_leading_slash(name: str) -> str:
    """MinIO's trimLeadingSlash (cmd/utils.go): a name starting with '/' is path.Clean'ed, a
    trailing '/' kept, and the leading '/' dropped."""
    if not name.startswith("/"):
        return name
    cleaned = _go_clean(name)
    if name.endswith("/") and len(name) > 1:
        cleaned += "/"
    return cleaned[1:]


def _go_clean(rooted: str) -> str:
    """Go's path.Clean of a path that starts with '/'."""
    parts: list[str] = []
    for segment in rooted.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    return "/" + "/".join(parts)


def _has_bad_component(path: bytes) -> bool:
    """MinIO's hasBadPathComponent (cmd/generic-handlers.go): a `.` or `..` segment (spaces
    trimmed, `\\` a separator too) or a path over 32 KiB is refused with 400 before any handler."""
    if len(path) > _MAX_PATH:
        return True
    for segment in re.split(rb"[/\\]", path):
        trimmed = segment.strip(bytes(_GO_SPACE))
        if trimmed in (b".", b".."):
            return True
    return False


def has_bad_component(value: str) -> bool:
    """Whether MinIO refuses a query value (it checks each but `delimiter` as it checks the path)."""
    return _has_bad_component(value.encode("utf-8", "surrogateescape"))
