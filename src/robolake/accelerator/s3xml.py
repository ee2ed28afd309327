"""S3-shaped XML error bodies, and object keys to and from request paths, for the accelerator's handlers."""

from __future__ import annotations

import secrets
from urllib.parse import quote, unquote
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


def split_path(raw_path: str) -> tuple[str, str]:
    """'/bucket/a%20b/c' -> ('bucket', 'a b/c'); ('', '') for the service root. The cache key of a request."""
    path = raw_path.lstrip("/")
    bucket, _, key = path.partition("/")
    return unquote(bucket), unquote(key)


def object_path(key: tuple[str, str]) -> str:
    """('bucket', 'a b/c') -> '/bucket/a%20b/c': the request path of a key, `split_path`'s inverse."""
    return "/" + quote(key[0], safe="") + "/" + quote(key[1], safe="/~")
