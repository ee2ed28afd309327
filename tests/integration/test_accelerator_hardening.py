"""Hostile input against the real stack: anonymous clients must not degrade the accelerator, nor make it stale.

Each test sends what an anonymous (or careless) client can send, over raw sockets where boto3
would not send it, and checks the accelerator against the same request straight to a MinIO node
or against what it must keep doing (answering, staying fresh, healthy). A bucket of its own,
without notifications, so that only the accelerator's own invalidation keeps the cache fresh.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import socket
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from robolake.accelerator.admin import read_stats
from robolake.sigv4 import sign
from robolake.stack.native import NativeStack
from tests.conftest import s3_client

pytestmark = pytest.mark.integration
BUCKET = "robolake-test-hardening"


@pytest.fixture(scope="module")
def clients(stack: NativeStack) -> Iterator[dict[str, Any]]:
    s = stack.settings
    made = {
        "direct": s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password),
        "accelerator": s3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password),
        "admin": s.accelerator_admin_endpoint,
        "settings": s,
    }
    if BUCKET not in {b["Name"] for b in made["direct"].list_buckets()["Buckets"]}:
        made["accelerator"].create_bucket(
            Bucket=BUCKET
        )  # through the accelerator: subscribed to MinIO's notifications before it answers, so cached at once
    yield made
    listed = made["direct"].list_objects_v2(Bucket=BUCKET).get("Contents", [])
    if listed:
        made["direct"].delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})


def host_port(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname or "127.0.0.1", parts.port or 80


def exchange(endpoint: str, data: bytes, *, timeout_s: float = 10.0, half_close: bool = False) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (or `timeout_s`)."""
    with socket.create_connection(host_port(endpoint), timeout=timeout_s) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                out += chunk
    return out


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def error_code(raw: bytes) -> str:
    start, end = raw.find(b"<Code>"), raw.find(b"</Code>")
    return raw[start + 6 : end].decode() if 0 <= start < end else ""


def abort_upload(endpoint: str, path: str) -> None:
    """The issue's `printf 'PUT ... 10000\\r\\nzzz' | timeout 0.3 nc`: a chunked body cut off mid-chunk."""
    request = f"PUT {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\nzzz".encode()
    with socket.create_connection(host_port(endpoint), timeout=5) as sock:
        sock.sendall(request)
        time.sleep(0.3)


def signed(
    endpoint: str, user: str, secret: str, method: str, path: str, body: bytes = b"", **extra: str
) -> dict[str, str]:
    """The headers of a SigV4-signed request (over its body) for `endpoint`."""
    host = urlsplit(endpoint).netloc
    target, _, query = path.partition("?")
    pairs = [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in query.split("&") if p]
    headers = sign(
        method,
        target,
        pairs,  # type: ignore[arg-type]
        host,
        user,
        secret,
        payload_hash=hashlib.sha256(body).hexdigest(),
        extra_headers=extra,
    )
    return {"Host": host, **headers}


def read(client: Any, key: str) -> tuple[bytes, str]:
    got = client.get_object(Bucket=BUCKET, Key=key)
    return got["Body"].read(), got["ResponseMetadata"]["HTTPHeaders"].get("x-robolake-cache", "")


def cache_it(clients: dict[str, Any], key: str, body: bytes, *, read_as: str = "") -> int:
    """Put `key` on a node and cache it (read as `read_as`, if given); the news count from before the read that hit.

    The bucket sends MinIO's notifications: wait for one, which may be this PUT's (dropping an
    earlier copy) or a late one of an earlier test's; this PUT's may then still come later, so
    a later miss is fair only when the news count moved since the number returned.
    """
    before = _notified(clients)
    clients["direct"].put_object(Bucket=BUCKET, Key=key, Body=body)
    key = read_as or key
    deadline = time.monotonic() + 10
    while _notified(clients) == before:
        assert time.monotonic() < deadline, "MinIO's notification of the PUT never arrived"
        time.sleep(0.05)
    before_fill = _invalidations(clients)["news"]
    read(clients["accelerator"], key)
    while True:  # a repeated notification may still drop the copy; only a miss it explains is fair
        news = _invalidations(clients)["news"]
        got = read(clients["accelerator"], key)
        if got == (body, "hit-memory"):
            return news
        # The news may have come during the read that filled (its copy then never landed) or since.
        assert got[0] == body and _invalidations(clients)["news"] > before_fill, got
        before_fill = news
        assert time.monotonic() < deadline, f"{key} never stayed cached"


def _notified(clients: dict[str, Any]) -> int:
    doc = read_stats(clients["settings"])
    return int(doc["events"].get("notification_records", 0))


def _invalidations(clients: dict[str, Any]) -> dict[str, int]:
    """Copies dropped so far after writes through the accelerator, and after news from MinIO."""
    events = read_stats(clients["settings"])["events"]
    dropped = {k: v for k, v in events.items() if k.startswith("invalidation_")}
    writes = sum(v for k, v in dropped.items() if k.endswith("_write"))
    return {"write": writes, "news": sum(dropped.values()) - writes}  # news: notifications, revalidation


def stats(stack: NativeStack) -> dict[str, Any]:
    doc: dict[str, Any] = read_stats(stack.settings)
    return doc


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def accelerator_pid(stack: NativeStack) -> int:
    pid = stack._process("accelerator").pid()
    assert pid is not None
    return pid


# 1. A client's broken body is the client's fault, never the node's.
def test_aborted_anonymous_uploads_take_no_node_down(stack: NativeStack, clients: dict[str, Any]) -> None:
    s = stack.settings
    for _ in range(6):  # three took every node down
        abort_upload(s.accelerator_endpoint, f"/{BUCKET}/aborted.bin")
    time.sleep(0.5)
    health = requests.get(f"{s.accelerator_admin_endpoint}/health", timeout=5)
    assert (health.status_code, health.json()) == (200, {"healthy_nodes": 3})
    assert all(node["healthy"] for node in stats(stack)["nodes"])


# 3. Unauthenticated writes get MinIO's refusal and leave the cache as it was.
def test_unauthenticated_writes_do_not_wipe_the_cache(stack: NativeStack, clients: dict[str, Any]) -> None:
    s = stack.settings
    key, other = f"unauth-{uuid.uuid4().hex[:8]}/a.txt", f"unauth-{uuid.uuid4().hex[:8]}/b.txt"
    # News (notifications, revalidation) counted before the last read that found each copy cached.
    seen = {key: cache_it(clients, key, b"kept"), other: cache_it(clients, other, b"kept too")}
    listing = f"<Delete><Object><Key>{key}</Key></Object></Delete>".encode()
    md5 = base64.b64encode(hashlib.md5(listing).digest()).decode()
    for method, path, body, headers in (
        ("DELETE", f"/{BUCKET}/{key}", b"", {}),
        ("PUT", f"/{BUCKET}/{key}", b"overwritten", {}),
        ("DELETE", f"/{BUCKET}", b"", {}),
        ("POST", f"/{BUCKET}?delete", listing, {"Content-MD5": md5}),
    ):
        before = _invalidations(clients)
        through = requests.request(method, s.accelerator_endpoint + path, data=body, headers=headers, timeout=10)
        direct = requests.request(method, s.minio_endpoints[0] + path, data=body, headers=headers, timeout=10)
        assert through.status_code == direct.status_code, (method, path)
        reading = _invalidations(clients)["news"]
        got = [read(clients["accelerator"], k) for k in (key, other)]
        after = _invalidations(clients)
        assert after["write"] == before["write"], (method, path, before, after)  # the refusal dropped nothing
        # A copy may still go because MinIO delivered a notification of a PUT late or twice (at
        # least once, from its queue), at any time since the copy was last seen: only then is a miss fair.
        for k, (body_, cached), want in zip((key, other), got, (b"kept", b"kept too"), strict=True):
            explained = after["news"] > seen[k]
            assert body_ == want and (cached == "hit-memory" or explained), (method, path, got)
            seen[k] = reading  # the read refilled a missed copy
    # A signed write that succeeds still invalidates at once.
    clients["accelerator"].delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(clients["accelerator"].exceptions.NoSuchKey):
        read(clients["accelerator"], key)


# 4. `//` in a path is the key MinIO makes of it.
def test_double_slash_paths_are_the_keys_minio_stores(stack: NativeStack, clients: dict[str, Any]) -> None:
    accel, direct = clients["accelerator"], clients["direct"]
    prefix = f"slash-{uuid.uuid4().hex[:8]}"
    cache_it(clients, f"{prefix}-a.txt", b"old a")
    accel.put_object(Bucket=BUCKET, Key=f"/{prefix}-a.txt", Body=b"new a")  # boto3 sends /bucket//key
    assert direct.get_object(Bucket=BUCKET, Key=f"{prefix}-a.txt")["Body"].read() == b"new a"
    assert read(accel, f"{prefix}-a.txt")[0] == b"new a"

    cache_it(clients, f"{prefix}-b.txt", b"old b", read_as=f"/{prefix}-b.txt")  # cached under MinIO's name
    accel.put_object(Bucket=BUCKET, Key=f"{prefix}-b.txt", Body=b"new b")
    assert read(accel, f"/{prefix}-b.txt")[0] == b"new b"
    assert read(accel, f"{prefix}-b.txt")[0] == b"new b"


# 5. Multi-delete keys as Go's encoder (mc, minio-go) writes them, and in CDATA.
def test_multi_delete_reads_keys_as_xml(stack: NativeStack, clients: dict[str, Any]) -> None:
    s = stack.settings
    prefix = f"md-{uuid.uuid4().hex[:8]}"
    quoted, cdata, slashed = f"{prefix}/it's.txt", f"{prefix}/cd.txt", f"{prefix}/lead.txt"
    for key in (quoted, cdata, slashed):
        cache_it(clients, key, b"to be deleted")
    listing = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Object><Key>{prefix}/it&#39;s.txt</Key></Object>"
        f"<Object><Key><![CDATA[{cdata}]]></Key></Object>"
        f"<Object><Key>/{slashed}</Key></Object>"
        "</Delete>"
    ).encode()
    md5 = base64.b64encode(hashlib.md5(listing).digest()).decode()
    path = f"/{BUCKET}?delete="
    headers = signed(
        s.accelerator_endpoint, s.minio_root_user, s.minio_root_password, "POST", path, listing, **{"content-md5": md5}
    )
    answer = requests.post(s.accelerator_endpoint + path, data=listing, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.text.count("<Deleted>") == 3, answer.text
    for key in (quoted, cdata, slashed):
        with pytest.raises(clients["direct"].exceptions.NoSuchKey):
            clients["direct"].get_object(Bucket=BUCKET, Key=key)
        with pytest.raises(clients["accelerator"].exceptions.NoSuchKey):
            read(clients["accelerator"], key)


def send_body(endpoint: str, head: str, length: int, *, timeout_s: float = 30.0) -> int:
    """Send `head` announcing a `length`-byte body, then zeros until the server answers; its status."""
    with socket.create_connection(host_port(endpoint), timeout=timeout_s) as sock:
        sock.sendall(f"{head}Content-Length: {length}\r\n\r\n".encode())
        chunk, sent = bytes(1 << 20), 0
        sock.setblocking(False)
        answer = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
                if answer:
                    break
            if sent < length:
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(chunk[: min(len(chunk), length - sent)])
            else:
                time.sleep(0.01)
    return status_of(answer)


# 2. Bodies are bounded: an unsigned 256 MB body is refused without being held.
def test_large_unsigned_bodies_are_not_held_in_memory(stack: NativeStack, clients: dict[str, Any]) -> None:
    s = stack.settings
    pid = accelerator_pid(stack)
    key = f"big-{uuid.uuid4().hex[:8]}.txt"
    news = cache_it(clients, key, b"small")
    dropped = _invalidations(clients)
    before = rss_mib(pid)
    size = 256 << 20
    for head in (
        "POST /_robolake/batch HTTP/1.1\r\nHost: x\r\n",
        f"POST /{BUCKET}?delete HTTP/1.1\r\nHost: x\r\nContent-MD5: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
        f"GET /{BUCKET}/{key} HTTP/1.1\r\nHost: x\r\n",
    ):
        assert send_body(s.accelerator_endpoint, head, size) in (400, 403), head
    grown = rss_mib(pid) - before
    assert grown < 64, f"RSS grew {grown:.0f} MiB after unsigned 256 MB bodies"
    assert _invalidations(clients)["write"] == dropped["write"]  # the refusals dropped nothing
    got = read(clients["accelerator"], key)
    # Only news from MinIO (a late notification of the PUT) may have dropped the copy meanwhile.
    after = _invalidations(clients)
    assert got[0] == b"small" and (got[1] == "hit-memory" or after["news"] > news), (got, dropped, after)


# Robustness: an absolute-form request line is routed as MinIO routes it.
def test_absolute_form_request_lines_are_answered_as_minio_does(stack: NativeStack) -> None:
    s = stack.settings
    answers = []
    for endpoint in (s.accelerator_endpoint, s.minio_endpoints[0]):
        authority = urlsplit(endpoint).netloc
        line = f"GET http://{authority}/{BUCKET}/k HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        raw = exchange(endpoint, line.encode())
        answers.append((status_of(raw), error_code(raw)))
    assert answers[0] == answers[1] == (403, "AccessDenied")


def batch_request(stack: NativeStack, body: bytes) -> requests.Response:
    s = stack.settings
    headers = signed(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password, "POST", "/_robolake/batch", body)
    return requests.post(f"{s.accelerator_endpoint}/_robolake/batch", data=body, headers=headers, timeout=30)


# Robustness: batch bodies that broke the parser (RecursionError: 500) or the tar writer (a lone
# surrogate: headers, then a dropped connection) are 400s, whole answers.
HOSTILE_BATCH_BODIES = {
    "nested-100k-deep": b'{"bucket": "' + BUCKET.encode() + b'", "keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "lone-surrogate-key": b'{"bucket": "' + BUCKET.encode() + b'", "keys": ["ok.txt", "\\ud800.txt"]}',
}


@pytest.mark.parametrize("name", HOSTILE_BATCH_BODIES)
def test_hostile_batch_bodies_are_client_errors(stack: NativeStack, name: str) -> None:
    answer = batch_request(stack, HOSTILE_BATCH_BODIES[name])
    assert answer.status_code == 400, answer.text[:200]
    assert b"<Code>" in answer.content


# Robustness: batch member names never point outside the directory a tar is extracted to.
def test_batch_member_names_are_safe_and_keys_survive(stack: NativeStack, clients: dict[str, Any]) -> None:
    keys = ["../escape.txt", "/abs.txt", "a/./b.txt", "ok/plain.txt"]
    body = json.dumps({"bucket": BUCKET, "keys": keys}).encode()
    answer = batch_request(stack, body)
    assert answer.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(answer.content), mode="r|") as tar:
        members = [(info.name, info.pax_headers.get("robolake.key", info.name)) for info in tar]
    assert [key for _, key in members] == keys
    for name, _ in members:
        assert not name.startswith("/") and ".." not in name.split("/") and "." not in name.split("/"), name
    assert members[-1][0] == "ok/plain.txt"


# Robustness: anonymous deletes of long keys and buckets leave no invalidation bookkeeping behind.
def test_anonymous_deletes_leave_no_bookkeeping(stack: NativeStack) -> None:
    s = stack.settings
    before = stats(stack)
    with requests.Session() as session:
        for i in range(100):
            session.delete(f"{s.accelerator_endpoint}/{BUCKET}/{i}{'k' * 8192}", timeout=10)
            session.delete(f"{s.accelerator_endpoint}/{'b' * 4096}{i}", timeout=10)
    after = stats(stack)
    # Every bucket sends MinIO's notifications: earlier tests' writes may still be arriving, each
    # with its own bookkeeping; the anonymous deletes (refused by MinIO) add none.
    notified = after["events"].get("notification_records", 0) - before["events"].get("notification_records", 0)
    assert after["epochs"]["buckets"] == before["epochs"]["buckets"]
    assert after["epochs"]["keys"] - before["epochs"]["keys"] <= notified


# Robustness: a connection that never finishes its headers is closed as MinIO closes it.
def test_partial_headers_do_not_hold_a_connection(stack: NativeStack) -> None:
    s = stack.settings
    started = time.monotonic()
    with socket.create_connection(host_port(s.accelerator_endpoint), timeout=45) as sock:
        sock.sendall(f"GET /{BUCKET}/k HTTP/1.1\r\nHost: x\r\n".encode())
        while time.monotonic() - started < 40 and not closed_by_peer(sock):
            with contextlib.suppress(OSError):
                sock.sendall(b"X-Slow: 1\r\n")  # a header line a second: never idle, never done
            time.sleep(1)
    held = time.monotonic() - started
    assert held < 36, f"a connection with partial headers was held {held:.0f} s (MinIO: 30 s)"


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


HALF_CLOSED = {
    "chunk-larger-than-data": f"PUT /{BUCKET}/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\nzzz",
    "body-shorter-than-length": f"PUT /{BUCKET}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    "no-such-bucket": "PUT /b/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\nzzz",
}


# Robustness: a client that half-closes (nc -N) gets MinIO's answer, even with its body cut short.
@pytest.mark.parametrize("name", HALF_CLOSED)
def test_half_closed_requests_get_minios_answer(stack: NativeStack, name: str) -> None:
    s = stack.settings
    through = exchange(s.accelerator_endpoint, HALF_CLOSED[name].encode(), half_close=True)
    direct = exchange(s.minio_endpoints[0], HALF_CLOSED[name].encode(), half_close=True)
    assert (status_of(through), error_code(through)) == (status_of(direct), error_code(direct)) != (0, "")
    health = requests.get(f"{s.accelerator_admin_endpoint}/health", timeout=5).json()
    assert health == {"healthy_nodes": 3}


def test_a_complete_request_then_half_close_is_answered(stack: NativeStack) -> None:
    """MinIO answers it too, 403 or (when Go notices the EOF first) 499; aiohttp used to drop it."""
    s = stack.settings
    request = f"GET /{BUCKET}/k HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    through = exchange(s.accelerator_endpoint, request, half_close=True)
    assert (status_of(through), error_code(through)) == (403, "AccessDenied")
    assert status_of(exchange(s.minio_endpoints[0], request, half_close=True)) in (403, 499)
