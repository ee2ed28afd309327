"""Hostile input to the accelerator, each request also sent to MinIO node 1 where that applies.

Listed cases (the issue's): malformed and oversized request lines and headers; broken and
replayed SigV4 (expired, future-dated, wrong region, wrong payload hash, duplicated query
parameters, presigned with a too-long expiry); overlapping, negative and huge ranges; keys with
`..`, `%2e%2e`, NUL and overlong UTF-8; a huge Content-Length with a short body; batch-GET
bodies that are not JSON or name 100k keys. Then `generated` cases from a seeded generator
(robolake.reliability.generated): the same families with random parts, so that each run with a
new seed tries requests nobody listed, and a failing one is replayed with its seed.

Signed cases read objects the accelerator has just cached, so an accelerator that answered a
request from its cache that MinIO would refuse is caught (`wire.verdict`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import boto3
from botocore.config import Config

from robolake.accelerator.batch import KEY_PAX
from robolake.config import Settings
from robolake.reliability.wire import Answer
from robolake.sigv4 import EMPTY_SHA256, sign

Build = Callable[["Target"], bytes]


@dataclasses.dataclass(frozen=True)
class Target:
    """One server a case is sent to, and the keys it is signed with."""

    endpoint: str
    access_key: str
    secret_key: str

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc

    @classmethod
    def of(cls, settings: Settings, endpoint: str) -> Target:
        return cls(endpoint, settings.minio_root_user, settings.minio_root_password)


@dataclasses.dataclass(frozen=True)
class Case:
    group: str
    name: str
    build: Build
    compare: bool = True  # send it to MinIO too and compare
    expect_refusal: bool = False  # without a comparison: must get a 4xx
    timeout_s: float = 3.0
    check: Callable[[Answer], str] | None = None  # a further rule for the answer: why it is wrong, or ""


def served_only(allowed: str) -> Callable[[Answer], str]:
    """A batch answer may carry bytes for `allowed` only: every other member is an in-band refusal."""

    def check(answer: Answer) -> str:
        if answer.status != 200:
            return ""
        try:
            with tarfile.open(fileobj=io.BytesIO(answer.body)) as tar:
                members = tar.getmembers()
        except (tarfile.TarError, EOFError) as exc:
            return f"the batch answer is not a whole tar stream ({exc})"
        for member in members:
            key = member.pax_headers.get(KEY_PAX, member.name)
            refused = member.pax_headers.get("robolake.status", "200") != "200"
            if key != allowed and (member.size or not refused):
                return f"the batch answer serves {key!r} ({member.size} bytes); it must be refused in-band"
        return ""

    return check


def raw(template: bytes) -> Build:
    """A request as bytes, `{host}` replaced by the target's host."""
    return lambda t: template.replace(b"{host}", t.host.encode())


def _wire_query(query: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query)


def signed(
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    *,
    skew_s: float = 0.0,
    region: str = "us-east-1",
    payload_hash: str = EMPTY_SHA256,
    headers: dict[str, str] | None = None,
    unsigned_headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> Build:
    """A SigV4-signed request for `path` (as it goes on the wire), signed for each target's host."""
    q = list(query or [])

    def build(t: Target) -> bytes:
        now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=skew_s)
        signed_headers = sign(
            method, path, q, t.host, t.access_key, t.secret_key,
            payload_hash=payload_hash, region=region, extra_headers=headers, now=now,
        )  # fmt: skip
        target = path + (f"?{_wire_query(q)}" if q else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {t.host}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in {**signed_headers, **(unsigned_headers or {})}.items()]
        if body or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body

    return build


def presigned(bucket: str, key: str, expires_s: int, *, tamper: bool = False) -> Build:
    """A SigV4 presigned GET made by botocore for each target (botocore signs any expiry it is given)."""

    def build(t: Target) -> bytes:
        client = boto3.client(
            "s3",
            endpoint_url=t.endpoint,
            aws_access_key_id=t.access_key,
            aws_secret_access_key=t.secret_key,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        url = urlsplit(client.generate_presigned_url("get_object", {"Bucket": bucket, "Key": key}, ExpiresIn=expires_s))
        path = url.path + ("x" if tamper else "")
        return f"GET {path}?{url.query} HTTP/1.1\r\nHost: {t.host}\r\nConnection: close\r\n\r\n".encode()

    return build


def request_line_cases(bucket: str, key: str) -> Iterator[Case]:
    g = "request line and headers"
    obj = f"/{bucket}/{key}".encode()
    yield Case(g, "binary garbage", raw(b"\x00\x01\x02\xff\r\n\r\n"))
    yield Case(g, "64 KiB request target", raw(b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: {host}\r\n\r\n"))
    yield Case(
        g,
        "1 MiB header value",
        raw(b"GET " + obj + b" HTTP/1.1\r\nHost: {host}\r\nX-Big: " + b"v" * (1 << 20) + b"\r\n\r\n"),
    )
    yield Case(
        g, "5,000 headers", raw(b"GET " + obj + b" HTTP/1.1\r\nHost: {host}\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n")
    )
    yield Case(g, "HTTP/9.9", raw(b"GET " + obj + b" HTTP/9.9\r\nHost: {host}\r\n\r\n"))
    yield Case(g, "no Host", raw(b"GET " + obj + b" HTTP/1.1\r\nConnection: close\r\n\r\n"))
    yield Case(g, "unknown method", raw(b"BREW " + obj + b" HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
    yield Case(g, "header without colon", raw(b"GET " + obj + b" HTTP/1.1\r\nHost: {host}\r\nNoColonHere\r\n\r\n"))
    yield Case(g, "NUL in a header", raw(b"GET " + obj + b" HTTP/1.1\r\nHost: {host}\r\nX-A: a\x00b\r\n\r\n"))
    yield Case(g, "obsolete line folding", raw(b"GET " + obj + b" HTTP/1.1\r\nHost: {host}\r\nX-A: a\r\n b\r\n\r\n"))
    yield Case(g, "Content-Length -1", raw(b"PUT " + obj + b"x HTTP/1.1\r\nHost: {host}\r\nContent-Length: -1\r\n\r\n"))
    yield Case(
        g,
        "two Content-Lengths",
        raw(b"PUT " + obj + b"x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
    )
    yield Case(
        g,
        "Content-Length with chunked",
        raw(
            b"PUT "
            + obj
            + b"x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    )
    yield Case(
        g,
        "bad chunk size",
        raw(b"PUT " + obj + b"x HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"),
    )
    yield Case(
        g,
        "huge Content-Length, short body (unsigned)",
        raw(b"PUT " + obj + b"x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10000000000000\r\n\r\nshort"),
    )
    yield Case(
        g,
        "Content-Length beyond 64 bits",
        raw(b"PUT " + obj + b"x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 99999999999999999999999\r\n\r\nshort"),
    )


def header_size_cases(bucket: str, key: str) -> Iterator[Case]:
    """Headers MinIO refuses outright on any request (too large, reserved names): never a cache answer."""
    g = "request line and headers"
    path = f"/{bucket}/{quote(key)}"
    yield Case(g, "8 KiB Content-Type on a GET", signed("GET", path, unsigned_headers={"Content-Type": "a" * 8192}))
    yield Case(g, "4 KiB of x-amz-meta- on a GET", signed("GET", path, unsigned_headers={"X-Amz-Meta-A": "b" * 4096}))
    yield Case(
        g, "X-Minio-Internal- header on a GET", signed("GET", path, unsigned_headers={"X-Minio-Internal-x": "1"})
    )
    many = {f"X-Pad-{i}": "p" * 100 for i in range(90)}  # ~9.5 KiB in 90 headers, none large
    yield Case(g, "90 headers of 100 bytes on a GET", signed("GET", path, unsigned_headers=many))


def sigv4_cases(bucket: str, key: str) -> Iterator[Case]:
    g = "SigV4"
    path = f"/{bucket}/{quote(key)}"
    yield Case(g, "valid (control)", signed("GET", path))
    yield Case(g, "expired (20 min old)", signed("GET", path, skew_s=-1200))
    yield Case(g, "future-dated (20 min ahead)", signed("GET", path, skew_s=1200))
    yield Case(g, "wrong region", signed("GET", path, region="eu-west-1"))
    yield Case(g, "wrong payload hash", signed("GET", path, payload_hash=hashlib.sha256(b"other").hexdigest()))
    yield Case(g, "payload hash not hex", signed("GET", path, payload_hash="zz" * 32))
    yield Case(g, "payload hash in upper-case hex", signed("GET", path, payload_hash=EMPTY_SHA256.upper()))
    yield Case(
        g, "streaming payload keyword on a GET", signed("GET", path, payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    )
    yield Case(g, "payload hash of 63 hex digits", signed("GET", path, payload_hash=EMPTY_SHA256[:63]))
    yield Case(g, "duplicated query parameter", signed("GET", path, [("partNumber", "1"), ("partNumber", "2")]))
    yield Case(g, "duplicated versionId", signed("GET", path, [("versionId", "null"), ("versionId", "x")]))
    yield Case(g, "unsigned Range added after signing", signed("GET", path, unsigned_headers={"Range": "bytes=0-3"}))
    yield Case(
        g,
        "two Authorization headers",
        lambda t: signed("GET", path)(t).replace(
            b"\r\nauthorization:", b"\r\nAuthorization: AWS4-HMAC-SHA256 Credential=x/y\r\nauthorization:", 1
        ),
    )
    yield Case(g, "presigned, 8-day expiry", presigned(bucket, key, 8 * 24 * 3600))
    yield Case(g, "presigned, valid (control)", presigned(bucket, key, 600))
    yield Case(g, "presigned, key changed after signing", presigned(bucket, key, 600, tamper=True))
    yield Case(g, "presigned, expiry 0", presigned(bucket, key, 0))


def range_cases(bucket: str, key: str) -> Iterator[Case]:
    g = "ranges"
    path = f"/{bucket}/{quote(key)}"
    for spec in (
        "bytes=0-10,5-20", "bytes=-5", "bytes=-0", "bytes=5-2", "bytes=-99999999999999999999",
        "bytes=0-99999999999999999999", "bytes=99999-", "bytes=abc", "items=0-1", "bytes=0-0," * 500 + "bytes=1-1",
        "bytes= 0-3", "bytes=--1", "bytes=0-3\x00", "bytes=18446744073709551616-",
    ):  # fmt: skip
        yield Case(g, f"Range: {spec[:40]!r}", signed("GET", path, headers={"range": spec}))


def key_cases(bucket: str, key: str) -> Iterator[Case]:
    """`key` is a/b: `a/../b`, if normalised, names another object; `b` exists too."""
    g = "keys"
    top, _, leaf = key.rpartition("/")
    for name, wire in (
        ("dot-dot segment", f"/{bucket}/{top}/../{leaf}"),
        ("%2e%2e segment", f"/{bucket}/{top}/%2e%2e/{leaf}"),
        ("%2E%2E%2F", f"/{bucket}/{top}/%2E%2E%2F{leaf}"),
        ("climbing out of the bucket", f"/{bucket}/../{bucket}/{key}"),
        ("NUL", f"/{bucket}/{key}%00"),
        ("NUL then .json", f"/{bucket}/{key}%00.json"),
        ("overlong UTF-8 dot-dot", f"/{bucket}/{top}/%C0%AE%C0%AE/{leaf}"),
        ("overlong UTF-8 slash", f"/{bucket}/{top}%C0%AF{leaf}"),
        ("lone surrogate", f"/{bucket}/{key}%ED%A0%80"),
        ("invalid UTF-8", f"/{bucket}/{key}%FF"),
        ("backslash", f"/{bucket}/{top}%5C{leaf}"),
        ("1,100-byte key", f"/{bucket}/" + "k" * 1100),
        ("double slash", f"/{bucket}//{key}"),
    ):
        yield Case(g, name, signed("GET", wire))


def batch_cases(bucket: str, key: str) -> Iterator[Case]:
    g = "batch GET"

    def post(body: bytes) -> Build:
        return signed("POST", "/_robolake/batch", payload_hash=hashlib.sha256(body).hexdigest(), body=body)

    def case(name: str, body: bytes, refused: bool = True, allowed: str = "") -> Case:
        return Case(
            g, name, post(body), compare=False, expect_refusal=refused, timeout_s=20.0, check=served_only(allowed)
        )

    yield case("not JSON", b"{not json")
    yield case("a JSON list", b"[1, 2, 3]")
    yield case("keys not a list", json.dumps({"bucket": bucket, "keys": "x"}).encode())
    yield case("keys not strings", json.dumps({"bucket": bucket, "keys": [1, None, {}]}).encode())
    yield case("100k keys", json.dumps({"bucket": bucket, "keys": [f"k{i}" for i in range(100_000)]}).encode())
    yield case("nested 100k deep", b"[" * 100_000 + b"]" * 100_000)
    yield case(
        "bucket climbing out (answered in-band)",
        json.dumps({"bucket": "../etc", "keys": [key]}).encode(),
        refused=False,
    )
    yield case(
        "keys that climb out (answered in-band)",
        json.dumps({"bucket": bucket, "keys": ["../../etc/passwd", key]}).encode(),
        refused=False,
        allowed=key,
    )
    yield Case(
        g,
        "unsigned",
        raw(b"POST /_robolake/batch HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\n{}"),
        compare=False,
        expect_refusal=True,
    )
    yield Case(g, "huge Content-Length, short body", lambda t: post(b"{}")(t).replace(
        b"Content-Length: 2", b"Content-Length: 10000000000"
    ), compare=False, expect_refusal=True)  # fmt: skip


def listed_cases(bucket: str, key: str) -> list[Case]:
    return [
        *request_line_cases(bucket, key),
        *header_size_cases(bucket, key),
        *sigv4_cases(bucket, key),
        *range_cases(bucket, key),
        *key_cases(bucket, key),
        *batch_cases(bucket, key),
    ]
