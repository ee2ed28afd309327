"""Cache answers against MinIO's, header for header, read with botocore's default checksum settings.

Each case (a row of CASES) asks for one small object through the accelerator and straight from a
MinIO node, and requires the same status, the same body and the same headers, spelled the same,
apart from what differs between any two answers (see `comparable`). Each case runs with the
object uncached, cached by a read that asked for checksums (boto3's and aws-cli's default) and
cached by one that did not (mc, rclone, obstore). tests/conftest.py's `s3_client` switches
botocore's checksum validation off, which once hid a cache replaying a whole object's CRC on
ranged answers (FlexibleChecksumError in boto3, aws-cli and s3fs): these clients keep it on.
Add a row to CASES for each new request shape the cache answers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import socket
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from robolake.stack.native import NativeStack
from tests.conftest import s3_client

pytestmark = pytest.mark.integration
# No bucket notifications here: in umi-raw the event of the PUT arrives up to seconds later and
# (rightly) drops the copy a case has just warmed.
BUCKET = "robolake-test-conformance"
SIZE = 20_000  # a small parquet file, as LeRobot's metadata is: cached (threshold 1 MiB)
BODY = b"PAR1" + os.urandom(SIZE - 8) + b"PAR1"
RUN = uuid.uuid4().hex[:8]
CACHE_MARKER = "x-robolake-cache"
# Values that differ between answers of the same object (the header must still be there).
# x-amz-request-id: one per answer. Date: the clock. x-amz-id-2: the id of the node that answered
# (the accelerator asks any of three, the direct client node 1). X-Ratelimit-Limit: the request
# slots MinIO sizes per node from that node's memory (seen: 2527 on one node, 2528 on another).
# X-Ratelimit-Remaining: the slots free on that node at that instant.
PER_ANSWER = frozenset({"x-amz-request-id", "date", "x-amz-id-2", "x-ratelimit-limit", "x-ratelimit-remaining"})


@dataclasses.dataclass(frozen=True)
class Case:
    """One request shape: a boto3 call and what MinIO answers to it."""

    id: str
    call: str  # "get_object" or "head_object"
    status: int  # what MinIO answers (asserted, so a MinIO upgrade that changes it shows up here)
    params: tuple[tuple[str, str], ...] = ()  # "{etag}" stands for the object's ETag
    from_cache: bool = True  # a cached copy answers it (False: MinIO does, e.g. every error)
    checksums: bool = False  # the answer carries the object's checksums: a copy without them asks MinIO
    plain: bool = False  # sent by a client that does not ask for checksums (no x-amz-checksum-mode)
    headers: tuple[tuple[str, str], ...] = ()  # extra request headers (signed)

    def kwargs(self, etag: str) -> dict[str, str]:
        return {name: value.replace("{etag}", etag) for name, value in self.params}


def _get(case_id: str, status: int, *params: tuple[str, str], **kw: Any) -> Case:
    return Case(case_id, "get_object", status, params, **kw)


def _head(case_id: str, status: int, *params: tuple[str, str], **kw: Any) -> Case:
    return Case(case_id, "head_object", status, params, **kw)


def _range(spec: str) -> tuple[str, str]:
    return ("Range", f"bytes={spec}")


CASES = [
    _get("get", 200, checksums=True),
    _get("get-without-checksum-mode", 200, plain=True),
    _get("get-checksum-mode-lowercase", 200, plain=True, headers=(("x-amz-checksum-mode", "enabled"),)),
    _get("range-first-byte", 206, _range("0-0")),
    _get("range-last-byte", 206, _range(f"{SIZE - 1}-{SIZE - 1}")),
    _get("range-first-100", 206, _range("0-99")),
    _get("range-suffix", 206, _range("-100")),
    _get("range-suffix-longer-than-object", 206, _range(f"-{SIZE * 2}")),
    _get("range-open-end", 206, _range(f"{SIZE - 100}-")),
    _get("range-end-past-the-end", 206, _range(f"{SIZE - 10}-{SIZE * 2}")),
    _get("range-every-byte", 206, _range("0-")),
    _get("range-without-checksum-mode", 206, _range("0-99"), plain=True),
    _get("range-beyond-the-end", 416, _range(f"{SIZE * 2}-{SIZE * 3}"), from_cache=False),
    _get("range-starting-at-size", 416, _range(f"{SIZE}-"), from_cache=False),
    _get("range-reversed", 416, _range("5-3"), from_cache=False),
    _get("range-reversed-before-if-none-match", 416, _range("5-3"), ("IfNoneMatch", "{etag}"), from_cache=False),
    _get("range-malformed-is-ignored", 200, ("Range", "bytes=abc"), from_cache=False, checksums=True),
    _get("range-multiple-are-ignored", 200, _range("0-1,5-6"), from_cache=False, checksums=True),
    # Range values MinIO ignores (parseRequestRangeSpec fails: the whole object, 200) or refuses.
    _get("range-no-numbers-is-ignored", 200, _range("-"), from_cache=False, checksums=True),
    _get("range-unit-capitalised-is-ignored", 200, ("Range", "Bytes=0-1"), from_cache=False, checksums=True),
    _get("range-other-unit-is-ignored", 200, ("Range", "items=0-1"), from_cache=False, checksums=True),
    _get("range-end-past-int64-is-ignored", 200, _range("0-99999999999999999999"), from_cache=False, checksums=True),
    _get("range-start-past-int64-is-ignored", 200, _range("99999999999999999999-"), from_cache=False, checksums=True),
    _get("range-suffix-past-int64-is-ignored", 200, _range("-99999999999999999999"), from_cache=False, checksums=True),
    _get("range-space-after-unit-is-ignored", 200, ("Range", "bytes= 0-1"), from_cache=False, checksums=True),
    _get("range-plus-sign-is-ignored", 200, _range("+0-1"), from_cache=False, checksums=True),
    _get("range-suffix-zero", 416, _range("-0"), from_cache=False),
    _get("range-end-18-digits", 206, _range("0-999999999999999999")),
    _get("range-leading-zeros", 206, _range("00-01")),
    _head("head-range-ignored", 200, ("Range", "items=0-1"), from_cache=False),
    _head("head-range-reversed", 416, _range("5-3"), from_cache=False),
    _head("head-range-suffix-zero", 416, _range("-0"), from_cache=False),
    _head("head", 200),
    _head("head-checksum-mode", 200, ("ChecksumMode", "ENABLED"), checksums=True),
    _head("head-range", 206, _range("0-99")),
    _head("head-range-checksum-mode", 206, _range("0-99"), ("ChecksumMode", "ENABLED")),
    _head("head-range-beyond-the-end", 416, _range(f"{SIZE * 2}-"), from_cache=False),
    _get("if-none-match", 304, ("IfNoneMatch", "{etag}")),
    _get("if-none-match-star", 304, ("IfNoneMatch", "*")),
    _get("if-none-match-other", 200, ("IfNoneMatch", '"0123"'), checksums=True),
    _get("if-none-match-weak-is-other", 200, ("IfNoneMatch", "W/{etag}"), checksums=True),
    _get("if-none-match-list-is-other", 200, ("IfNoneMatch", '"0123", {etag}'), checksums=True),
    _get("if-none-match-before-range", 304, ("IfNoneMatch", "{etag}"), _range(f"{SIZE * 2}-")),
    _get("if-none-match-before-if-match", 304, ("IfNoneMatch", "{etag}"), ("IfMatch", '"0123"')),
    _get("if-match", 200, ("IfMatch", "{etag}"), checksums=True),
    _get("if-match-ranged", 206, ("IfMatch", "{etag}"), _range("0-99")),
    _get("if-match-other", 412, ("IfMatch", '"0123"'), from_cache=False),
    # MinIO's isETagEqual: no lists, no weak tags; quotes trimmed at both ends only.
    _get("if-match-list", 412, ("IfMatch", '"0123", {etag}'), from_cache=False),
    _get("if-match-list-etag-first", 412, ("IfMatch", '{etag}, "0123"'), from_cache=False),
    _get("if-match-weak", 412, ("IfMatch", "W/{etag}"), from_cache=False),
    _get("if-none-match-list-etag-first-is-other", 200, ("IfNoneMatch", '{etag}, "0123"'), checksums=True),
    _get("if-match-other-if-none-match-star", 304, ("IfNoneMatch", "*"), ("IfMatch", '"0123"')),
    _head("head-if-match-list", 412, ("IfMatch", '"0123", {etag}'), from_cache=False),
    _head("head-if-match-weak", 412, ("IfMatch", "W/{etag}"), from_cache=False),
    _head("head-if-none-match-weak-is-other", 200, ("IfNoneMatch", "W/{etag}")),
    _head("head-if-none-match", 304, ("IfNoneMatch", "{etag}")),
    _head("head-if-match", 200, ("IfMatch", "{etag}")),
    _head("head-if-match-other", 412, ("IfMatch", '"0123"'), from_cache=False),
    _get("origin-gets-cors-headers", 200, from_cache=False, checksums=True, headers=(("Origin", "http://x.test"),)),
]
VARIANTS = ("uncached", "cached", "cached-without-checksums")


@dataclasses.dataclass(frozen=True)
class Answer:
    """What came back: status, headers as sent (spelling and repeats kept), body, botocore's error."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    error: str  # a non-HTTP failure reading the answer, e.g. FlexibleChecksumError

    def header(self, name: str) -> str:
        return next((v for n, v in self.headers if n.lower() == name), "")


def comparable(answer: Answer) -> tuple[Any, ...]:
    """The answer minus what differs between any two answers (PER_ANSWER) and the cache marker.

    Error documents carry the request id and the node id too (<RequestId>, <HostId>).
    """
    headers = sorted((n, "-" if n.lower() in PER_ANSWER else v) for n, v in answer.headers if n.lower() != CACHE_MARKER)
    body = re.sub(rb"<(RequestId|HostId)>[^<]*</(RequestId|HostId)>", rb"<\1>-</\2>", answer.body)
    return answer.status, headers, body, answer.error


def differences(through: Answer, direct: Answer) -> list[str]:
    """How the accelerator's answer differs from MinIO's, readably: [] when it does not."""
    (status_a, headers_a, body_a, error_a), (status_b, headers_b, body_b, error_b) = (
        comparable(through),
        comparable(direct),
    )
    out = [f"status {status_a} (MinIO: {status_b})"] if status_a != status_b else []
    out += [f"header only through the accelerator: {h}" for h in headers_a if h not in headers_b]
    out += [f"header only from MinIO: {h}" for h in headers_b if h not in headers_a]
    if body_a != body_b:
        out.append(f"body of {len(body_a)} bytes (MinIO: {len(body_b)}): {body_a[:120]!r} vs {body_b[:120]!r}")
    if error_a != error_b:
        out.append(f"reading it: {error_a or 'no error'} (MinIO: {error_b or 'no error'})")
    return out


def boto3_client(endpoint: str, user: str, secret: str, *, plain: bool = False) -> Any:
    """boto3 as a user has it (botocore's checksum defaults); `plain` turns checksums off."""
    return s3_client(endpoint, user, secret, checksums="when_required" if plain else "when_supported")


@dataclasses.dataclass(frozen=True)
class Endpoints:
    accelerator: Any
    accelerator_plain: Any
    direct: Any
    direct_plain: Any

    def client(self, *, through_cache: bool, plain: bool) -> Any:
        if through_cache:
            return self.accelerator_plain if plain else self.accelerator
        return self.direct_plain if plain else self.direct


@pytest.fixture(scope="module")
def endpoints(stack: NativeStack) -> Iterator[Endpoints]:
    s = stack.settings
    user, secret = s.minio_root_user, s.minio_root_password
    ends = Endpoints(
        accelerator=boto3_client(s.accelerator_endpoint, user, secret),
        accelerator_plain=boto3_client(s.accelerator_endpoint, user, secret, plain=True),
        direct=boto3_client(s.minio_endpoints[0], user, secret),
        direct_plain=boto3_client(s.minio_endpoints[0], user, secret, plain=True),
    )
    if BUCKET not in {b["Name"] for b in ends.direct.list_buckets()["Buckets"]}:
        ends.accelerator.create_bucket(
            Bucket=BUCKET
        )  # through the accelerator: subscribed to MinIO's notifications before it answers, so cached at once
    yield ends
    listed = ends.direct.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    while listed:
        ends.direct.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})
        listed = ends.direct.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    ends.direct.delete_bucket(Bucket=BUCKET)


def ask(client: Any, case: Case, key: str, etag: str) -> Answer:
    """Send `case` with boto3 and read the answer as boto3 does (validating checksums)."""
    seen: dict[str, Any] = {}

    def keep(http_response: Any, **_: Any) -> None:
        seen["status"] = http_response.status_code
        seen["headers"] = tuple(http_response.raw.headers.items())  # urllib3 keeps spelling and repeats
        if http_response.status_code >= 300:
            seen["body"] = http_response.content  # error documents are read already

    def add_headers(request: Any, **_: Any) -> None:
        for name, value in case.headers:
            request.headers[name] = value

    events = client.meta.events
    events.register_first("after-call.s3.*", keep, unique_id="conformance-keep")
    events.register("before-sign.s3.*", add_headers, unique_id="conformance-headers")
    error, body = "", b""
    try:
        response = getattr(client, case.call)(Bucket=BUCKET, Key=key, **case.kwargs(etag))
        if "Body" in response:
            body = response["Body"].read()
    except ClientError:
        body = seen.get("body", b"")
    except BotoCoreError as exc:  # FlexibleChecksumError and kin: a client would have failed here
        error = f"{type(exc).__name__}: {exc}"
    finally:
        events.unregister("after-call.s3.*", unique_id="conformance-keep")
        events.unregister("before-sign.s3.*", unique_id="conformance-headers")
    return Answer(seen["status"], seen["headers"], body, error)


def put_small_object(ends: Endpoints, key: str) -> str:
    """Upload as aws-cli does (boto3 defaults: a CRC32 trailer MinIO stores), return the ETag."""
    ends.accelerator.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=BODY,
        ContentType="application/vnd.apache.parquet",
        Metadata={"episode": "7"},
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="info.parquet"',
        Expires=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )
    etag: str = ends.direct.head_object(Bucket=BUCKET, Key=key)["ETag"]
    return etag


GET = Case("warm", "get_object", 200)
HEAD = Case("check", "head_object", 200)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cache_answers_like_minio(endpoints: Endpoints, case: Case, variant: str) -> None:
    key = f"{RUN}/{case.id}/{variant}/meta/info.parquet"  # no episode number: nothing to prefetch
    etag = put_small_object(endpoints, key)
    if variant != "uncached":
        warm = ask(endpoints.client(through_cache=True, plain=variant == "cached-without-checksums"), GET, key, etag)
        assert (warm.status, warm.header(CACHE_MARKER), warm.body == BODY) == (200, "miss", True)
        check = ask(endpoints.accelerator_plain, HEAD, key, etag)
        assert check.header(CACHE_MARKER).startswith("hit"), "the warming read did not cache the object"

    through = ask(endpoints.client(through_cache=True, plain=case.plain), case, key, etag)
    direct = ask(endpoints.client(through_cache=False, plain=case.plain), case, key, etag)

    assert direct.status == case.status and direct.error == "", direct
    assert differences(through, direct) == []
    assert comparable(through) == comparable(direct)  # repeated header lines too, which `differences` folds
    answered_from_cache = variant == "cached" or (variant == "cached-without-checksums" and not case.checksums)
    expected_hit = case.from_cache and answered_from_cache
    assert through.header(CACHE_MARKER).startswith("hit") == expected_hit, through.header(CACHE_MARKER)
    endpoints.direct.delete_object(Bucket=BUCKET, Key=key)


def test_ranged_reads_of_a_cached_object_pass_boto3_checksum_validation(endpoints: Endpoints) -> None:
    """The issue's reproduction: one-piece upload, one read (now cached), then ranged reads."""
    key = f"{RUN}/ranged/meta/episodes.parquet"
    put_small_object(endpoints, key)
    accel = endpoints.accelerator
    assert accel.get_object(Bucket=BUCKET, Key=key)["Body"].read() == BODY
    whole = accel.get_object(Bucket=BUCKET, Key=key)
    assert whole["Body"].read() == BODY
    assert whole["ResponseMetadata"]["HTTPHeaders"][CACHE_MARKER] == "hit-memory"
    assert whole["ChecksumCRC32"]  # the whole object's checksum, validated by botocore
    for spec, expected in (
        ("0-99", BODY[:100]),
        ("0-0", BODY[:1]),
        (f"{SIZE - 1}-", BODY[-1:]),
        ("-8", BODY[-8:]),
        (f"{SIZE - 4}-{SIZE * 2}", BODY[-4:]),
    ):
        got = accel.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={spec}")
        assert got["Body"].read() == expected, spec
        assert got["ResponseMetadata"]["HTTPHeaders"][CACHE_MARKER] == "hit-memory"
        assert "ChecksumCRC32" not in got, spec
    endpoints.direct.delete_object(Bucket=BUCKET, Key=key)


def test_a_copy_cached_without_checksums_learns_them(endpoints: Endpoints) -> None:
    """A read that did not ask (mc, rclone) cannot tell "no checksum" from "not sent": the first
    read that asks goes to MinIO once and refreshes the copy; later ones are hits with checksums."""
    key = f"{RUN}/learns/meta/info.parquet"
    etag = put_small_object(endpoints, key)
    assert ask(endpoints.accelerator_plain, GET, key, etag).header(CACHE_MARKER) == "miss"
    asked = [ask(endpoints.accelerator, GET, key, etag) for _ in range(2)]
    assert [a.header(CACHE_MARKER) for a in asked] == ["miss", "hit-memory"]
    direct = ask(endpoints.direct, GET, key, etag)
    assert [differences(a, direct) for a in asked] == [[], []]
    assert direct.header("x-amz-checksum-crc32")
    endpoints.direct.delete_object(Bucket=BUCKET, Key=key)


@dataclasses.dataclass(frozen=True)
class RawCase:
    """A request boto3 would not send, presigned (so any header may be added) and sent over a socket."""

    id: str
    method: str
    status: int  # what MinIO answers
    headers: tuple[tuple[str, bytes], ...] = ()  # sent as these bytes, unsigned
    signatures: str = "once"  # "bad-then-good": a wrong X-Amz-Signature before the right one


RAW_CASES = [
    RawCase("presigned", "GET", 200),
    RawCase("presigned-head", "HEAD", 200),
    RawCase("presigned-two-signatures-bad-first", "GET", 403, signatures="bad-then-good"),
    RawCase("presigned-two-signatures-good-first", "GET", 200, signatures="good-then-bad"),
    RawCase("range-non-ascii-digits-is-ignored", "GET", 200, (("Range", "bytes=\u0660-\u0661".encode()),)),
    RawCase("range-fullwidth-digits-is-ignored", "GET", 200, (("Range", "bytes=\uff10-\uff11".encode()),)),
    RawCase("head-if-match-other", "HEAD", 412, (("If-Match", b'"0123"'),)),
    RawCase("head-range-beyond-the-end", "HEAD", 416, (("Range", f"bytes={SIZE * 2}-".encode()),)),
    RawCase("two-ranges-headers", "GET", 206, (("Range", b"bytes=0-9"), ("Range", b"bytes=10-19"))),
    RawCase("two-if-match-headers", "GET", 200, (("If-Match", b"{etag}"), ("If-Match", b'"0123"'))),
]
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding"})


def presigner(endpoint: str, user: str, secret: str) -> Any:
    return s3_client(endpoint, user, secret, signature_version="s3v4")


def send_raw(endpoint: str, client: Any, case: RawCase, key: str, etag: str) -> Answer:
    """Presign `case` for `endpoint`, send it byte for byte, and read the answer as it came."""
    call = "get_object" if case.method == "GET" else "head_object"
    url = client.generate_presigned_url(call, Params={"Bucket": BUCKET, "Key": key})
    parts = urllib.parse.urlsplit(url)
    query = parts.query
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", query)
    assert signature is not None
    bad = f"X-Amz-Signature={'0' * 64}"
    if case.signatures == "bad-then-good":
        query = query.replace(signature[0], f"{bad}&{signature[0]}")
    elif case.signatures == "good-then-bad":
        query = query.replace(signature[0], f"{signature[0]}&{bad}")
    head = f"{case.method} {parts.path}?{query} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
    extra = b"".join(n.encode() + b": " + v.replace(b"{etag}", etag.encode()) + b"\r\n" for n, v in case.headers)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + extra + b"Connection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head_part, _, body = raw.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = tuple(
        (name, value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
        if name.lower() not in HOP_BY_HOP
    )
    return Answer(int(lines[0].split(" ")[1]), headers, body, "")


@pytest.mark.parametrize("variant", ("uncached", "cached"))
@pytest.mark.parametrize("case", RAW_CASES, ids=[c.id for c in RAW_CASES])
def test_raw_requests_answer_like_minio(stack: NativeStack, endpoints: Endpoints, case: RawCase, variant: str) -> None:
    s = stack.settings
    key = f"{RUN}/raw/{case.id}/{variant}/meta/info.parquet"
    etag = put_small_object(endpoints, key)
    if variant == "cached":
        warm = ask(endpoints.accelerator, GET, key, etag)
        assert (warm.status, warm.header(CACHE_MARKER)) == (200, "miss")
    user, secret = s.minio_root_user, s.minio_root_password
    through = send_raw(s.accelerator_endpoint, presigner(s.accelerator_endpoint, user, secret), case, key, etag)
    direct = send_raw(s.minio_endpoints[0], presigner(s.minio_endpoints[0], user, secret), case, key, etag)
    assert direct.status == case.status, direct
    assert differences(through, direct) == []
    assert comparable(through) == comparable(direct)
    endpoints.direct.delete_object(Bucket=BUCKET, Key=key)
