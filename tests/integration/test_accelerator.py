"""The accelerator in the real stack: S3 conformance against MinIO, auth, freshness, failover."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from robolake.accelerator.admin import read_stats
from robolake.accelerator.client import BatchClient
from robolake.errors import AuthError
from robolake.httpauth import admin_auth
from robolake.stack import health
from robolake.stack.native import NativeStack
from robolake.stack.process import free_port
from tests.conftest import s3_client
from tests.integration.test_accelerator_conformance import boto3_client

pytestmark = pytest.mark.integration
BUCKET = "umi-raw"


def outcome(call: Callable[[], Any], prefix: str = "") -> dict[str, Any]:
    """What a client sees, minus per-request noise (request ids, dates) and the run's key prefix."""
    try:
        r = call()
    except ClientError as exc:
        meta = exc.response["ResponseMetadata"]
        return {"status": meta["HTTPStatusCode"], "code": exc.response["Error"].get("Code")}
    meta = r.get("ResponseMetadata", {})
    out: dict[str, Any] = {"status": meta.get("HTTPStatusCode")}
    body = r.get("Body")
    if body is not None:
        out["sha256"] = hashlib.sha256(body.read()).hexdigest()
    for field in ("ETag", "ContentLength", "ContentType", "ContentRange", "Metadata", "KeyCount", "IsTruncated"):
        if field in r:
            out[field] = r[field]
    for listed in ("Contents", "CommonPrefixes"):
        if listed in r:
            out[listed] = [
                ((c.get("Key") or c.get("Prefix")).removeprefix(prefix), c.get("Size"), c.get("ETag"))
                for c in r[listed]
            ]
    return out


def conformance_script(c: Any, prefix: str, small: bytes, big: bytes) -> Iterator[tuple[str, Callable[[], Any]]]:
    k = f"{prefix}/pose/episode_00001.json"
    yield (
        "put",
        lambda: c.put_object(
            Bucket=BUCKET, Key=k, Body=small, ContentType="application/json", Metadata={"episode": "1"}
        ),
    )
    for attempt in ("cold", "warm"):
        yield f"get {attempt}", lambda: c.get_object(Bucket=BUCKET, Key=k)
        yield f"head {attempt}", lambda: c.head_object(Bucket=BUCKET, Key=k)
    etag = c.head_object(Bucket=BUCKET, Key=k)["ETag"]
    yield "range", lambda: c.get_object(Bucket=BUCKET, Key=k, Range="bytes=100-199")
    yield "suffix range", lambda: c.get_object(Bucket=BUCKET, Key=k, Range="bytes=-50")
    yield "range past end", lambda: c.get_object(Bucket=BUCKET, Key=k, Range="bytes=5000-6000")
    yield "if-none-match hit", lambda: c.get_object(Bucket=BUCKET, Key=k, IfNoneMatch=etag)
    yield "if-none-match other", lambda: c.get_object(Bucket=BUCKET, Key=k, IfNoneMatch='"nope"')
    yield "if-match other", lambda: c.get_object(Bucket=BUCKET, Key=k, IfMatch='"nope"')
    yield "if-match hit", lambda: c.get_object(Bucket=BUCKET, Key=k, IfMatch=etag)
    yield "if-modified-since future", lambda: c.get_object(Bucket=BUCKET, Key=k, IfModifiedSince=time.time() + 3600)
    yield "missing get", lambda: c.get_object(Bucket=BUCKET, Key=f"{prefix}/missing.json")
    yield "missing head", lambda: c.head_object(Bucket=BUCKET, Key=f"{prefix}/missing.json")
    yield "missing bucket", lambda: c.get_object(Bucket="no-such-bucket-robolake", Key="k")
    yield "overwrite", lambda: c.put_object(Bucket=BUCKET, Key=k, Body=small[::-1])
    yield "get after overwrite", lambda: c.get_object(Bucket=BUCKET, Key=k)
    for i in range(3):
        yield (
            f"put {i}",
            lambda i=i: c.put_object(
                Bucket=BUCKET, Key=f"{prefix}/gripper/episode_{i:05d}.json", Body=bytes([i]) * (100 + i)
            ),
        )
    yield "list v2", lambda: c.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    yield "list v2 delimiter", lambda: c.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/", Delimiter="/")
    yield "list v1", lambda: c.list_objects(Bucket=BUCKET, Prefix=f"{prefix}/gripper/", MaxKeys=2)
    mk = f"{prefix}/video/episode_00001.mp4"

    def multipart() -> Any:
        upload_id = c.create_multipart_upload(Bucket=BUCKET, Key=mk)["UploadId"]
        parts = [
            c.upload_part(
                Bucket=BUCKET,
                Key=mk,
                UploadId=upload_id,
                PartNumber=n + 1,
                Body=big[n * 5 * 2**20 : (n + 1) * 5 * 2**20],
            )["ETag"]
            for n in range(2)
        ]
        done = c.complete_multipart_upload(
            Bucket=BUCKET,
            Key=mk,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n + 1} for n, e in enumerate(parts)]},
        )
        return {"ResponseMetadata": done["ResponseMetadata"], "ETag": done["ETag"]}

    yield "multipart", multipart
    yield "get multipart", lambda: c.get_object(Bucket=BUCKET, Key=mk)
    # From its second read on, a large object takes the accelerator's raw (spliced) path.
    yield "get multipart again", lambda: c.get_object(Bucket=BUCKET, Key=mk)
    yield "ranged read into video", lambda: c.get_object(Bucket=BUCKET, Key=mk, Range="bytes=5242000-5243000")
    yield "large ranged read", lambda: c.get_object(Bucket=BUCKET, Key=mk, Range="bytes=1000-9000000")
    yield "large suffix read", lambda: c.get_object(Bucket=BUCKET, Key=mk, Range="bytes=-3000000")
    yield "large open range", lambda: c.get_object(Bucket=BUCKET, Key=mk, Range="bytes=7000000-")
    yield "delete", lambda: c.delete_object(Bucket=BUCKET, Key=k)
    yield "get deleted", lambda: c.get_object(Bucket=BUCKET, Key=k)
    yield (
        "delete many",
        lambda: c.delete_objects(
            Bucket=BUCKET,
            Delete={"Objects": [{"Key": f"{prefix}/gripper/episode_{i:05d}.json"} for i in range(3)] + [{"Key": mk}]},
        ),
    )
    yield "list after delete", lambda: c.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    bucket = f"conf-{prefix}"
    yield "create bucket", lambda: c.create_bucket(Bucket=bucket)
    yield "create bucket again", lambda: c.create_bucket(Bucket=bucket)
    yield "head bucket", lambda: c.head_bucket(Bucket=bucket)
    yield (
        "list buckets has it",
        lambda: {
            "ResponseMetadata": {"HTTPStatusCode": 200},
            "KeyCount": int(bucket in [b["Name"] for b in c.list_buckets()["Buckets"]]),
        },
    )
    yield "delete bucket", lambda: c.delete_bucket(Bucket=bucket)
    yield "head deleted bucket", lambda: c.head_bucket(Bucket=bucket)
    yield from _upload_listing(c, f"conf-up-{prefix}")


def _upload_listing(c: Any, bucket: str) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Three unfinished multipart uploads are all listed: a node lists its own; through :9000 the
    accelerator's requests went to three different nodes and the listing is the cluster's."""
    yield "create uploads bucket", lambda: c.create_bucket(Bucket=bucket)
    uploads: list[tuple[str, str]] = []

    def create(n: int) -> Any:
        key = f"video/upload-{n}.mp4"
        made = c.create_multipart_upload(Bucket=bucket, Key=key)
        uploads.append((key, made["UploadId"]))
        return {"ResponseMetadata": made["ResponseMetadata"]}

    for n in range(3):
        yield f"create upload {n}", lambda n=n: create(n)

    def listed() -> Any:
        got = c.list_multipart_uploads(Bucket=bucket)
        keys = [{"Key": u["Key"]} for u in got.get("Uploads", [])]
        return {"ResponseMetadata": got["ResponseMetadata"], "Contents": keys, "KeyCount": len(keys)}

    for attempt in range(3):
        yield f"list uploads {attempt}", listed

    def abort_all() -> Any:
        for key, upload_id in uploads:
            c.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        return {"ResponseMetadata": {"HTTPStatusCode": 204}}

    yield "abort uploads", abort_all
    yield "list uploads after abort", listed
    yield "delete uploads bucket", lambda: c.delete_bucket(Bucket=bucket)


def test_s3_conformance_direct_vs_accelerator(clients: dict[str, Any]) -> None:
    small, big = os.urandom(3000), os.urandom(10 * 1024 * 1024)
    results: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    run = uuid.uuid4().hex[:6]
    for name, client in clients.items():
        prefix = f"conf-{run}-{name[:3]}"
        results[name] = [(step, outcome(call, prefix)) for step, call in conformance_script(client, prefix, small, big)]
    direct, accel = results["direct"], results["accelerator"]
    assert [s for s, _ in direct] == [s for s, _ in accel]
    mismatches = [(step, d, a) for (step, d), (_, a) in zip(direct, accel, strict=True) if d != a]
    assert mismatches == []
    by_step = dict(direct)
    assert by_step["missing get"]["code"] == "NoSuchKey"
    assert by_step["if-match other"]["status"] == 412
    assert by_step["range"]["ContentRange"] == "bytes 100-199/3000"
    assert by_step["list uploads 0"]["KeyCount"] == 3 and by_step["list uploads after abort"]["KeyCount"] == 0
    assert by_step["large suffix read"]["ContentLength"] == 3000000


def _listed(result: dict[str, Any]) -> list[str]:
    return [k for k, _, _ in result.get("Contents", [])]


def test_cached_object_needs_a_valid_signature(stack: NativeStack, clients: dict[str, Any]) -> None:
    s = stack.settings
    key = f"auth/{uuid.uuid4().hex}.json"
    clients["accelerator"].put_object(Bucket=BUCKET, Key=key, Body=b"secret pose")
    for _ in range(2):
        r = clients["accelerator"].get_object(Bucket=BUCKET, Key=key)
        assert r["Body"].read() == b"secret pose"
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-robolake-cache"].startswith("hit")

    for endpoint in (s.minio_endpoints[0], s.accelerator_endpoint):
        unsigned = requests.get(f"{endpoint}/{BUCKET}/{key}", timeout=10)
        assert unsigned.status_code == 403 and b"AccessDenied" in unsigned.content
        assert b"secret pose" not in unsigned.content
        wrong = s3_client(endpoint, s.minio_root_user, "wrong-password")
        with pytest.raises(ClientError) as info:
            wrong.get_object(Bucket=BUCKET, Key=key)
        assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        unknown = s3_client(endpoint, "nobody-here", "whatever-secret")
        with pytest.raises(ClientError) as info:
            unknown.head_object(Bucket=BUCKET, Key=key)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    v4 = s3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password, signature_version="s3v4")
    for client in (clients["accelerator"], v4):  # boto3 presigns with SigV2 unless told s3v4
        good = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})
        assert requests.get(good, timeout=10).content == b"secret pose"
        tampered = good.replace("Signature=", "Signature=0")
        assert tampered != good
        assert requests.get(tampered, timeout=10).status_code == 403


def test_traversal_and_nul_keys_never_leave_the_cache_dir(stack: NativeStack, clients: dict[str, Any]) -> None:
    cache_dir = stack.state.accelerator_cache
    for key in ("../../etc/passwd", "a/../../../outside.txt", "nul\0byte.json", "..%2F..%2Fx"):
        puts = [outcome(lambda c=c, k=key: c.put_object(Bucket=BUCKET, Key=k, Body=b"x")) for c in clients.values()]
        assert puts[0] == puts[1], key
        reads = [outcome(lambda c=c, k=key: c.get_object(Bucket=BUCKET, Key=k)) for c in clients.values()]
        assert reads[0] == reads[1], key
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert all(len(p.name) == 64 and p.parent.parent == cache_dir for p in files)
    assert not (stack.state.root / "outside.txt").exists()


def test_overwrite_straight_on_a_node_is_seen_through_the_accelerator(
    stack: NativeStack, clients: dict[str, Any]
) -> None:
    s = stack.settings
    node3 = s3_client(s.minio_endpoints[2], s.minio_root_user, s.minio_root_password)
    key = f"pose/fresh-{uuid.uuid4().hex}.json"
    node3.put_object(Bucket=BUCKET, Key=key, Body=b"old")
    for _ in range(2):
        assert clients["accelerator"].get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"old"
    node3.put_object(Bucket=BUCKET, Key=key, Body=b"new bytes")
    deadline = time.monotonic() + 15
    while clients["accelerator"].get_object(Bucket=BUCKET, Key=key)["Body"].read() != b"new bytes":
        assert time.monotonic() < deadline, "stale object still served 15 s after a direct overwrite"
        time.sleep(0.1)
    stats = read_stats(s)
    assert stats["events"].get("invalidation_notification", 0) >= 1


def test_write_through_accelerator_is_read_back_at_once(clients: dict[str, Any]) -> None:
    accel = clients["accelerator"]
    key = f"pose/raw-{uuid.uuid4().hex}.json"
    for version in range(5):
        body = f"version {version}".encode()
        accel.put_object(Bucket=BUCKET, Key=key, Body=body)
        assert accel.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
        assert accel.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body


def test_batch_get_keeps_order_and_reports_missing(stack: NativeStack, clients: dict[str, Any]) -> None:
    s = stack.settings
    prefix = f"batch-{uuid.uuid4().hex[:8]}"
    bodies = {f"{prefix}/episode_{i:05d}.json": os.urandom(100 + i) for i in range(50)}
    for key, body in bodies.items():
        clients["direct"].put_object(Bucket=BUCKET, Key=key, Body=body)
    keys = [*reversed(bodies), f"{prefix}/missing.json", *list(bodies)[:3]]
    items = BatchClient(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password).get_batch(BUCKET, keys)
    assert [i.key for i in items] == keys
    for item in items:
        if item.key.endswith("missing.json"):
            assert not item.ok and item.error == "NoSuchKey"
        else:
            assert item.body == bodies[item.key]
    with pytest.raises(AuthError, match="HTTP 403"):
        BatchClient(s.accelerator_endpoint, s.minio_root_user, "wrong-password").get_batch(BUCKET, keys[:1])


def test_episode_prefetch_fetches_siblings_and_counts_use(stack: NativeStack, clients: dict[str, Any]) -> None:
    s = stack.settings
    # A new bucket, filled straight on a node before the accelerator subscribes it to MinIO's
    # notifications: in a subscribed bucket the events of these PUTs arrive up to ~3 s later and
    # rightly drop whatever was prefetched meanwhile, which would race the check. The accelerator
    # caches a bucket's objects only once it is subscribed, so the reads wait for that.
    bucket = f"robolake-test-prefetch-{uuid.uuid4().hex[:8]}"
    clients["direct"].create_bucket(Bucket=bucket)
    prefix = f"pf-{uuid.uuid4().hex[:8]}"
    for episode in range(4):
        for sensor in ("pose", "gripper"):
            clients["direct"].put_object(
                Bucket=bucket, Key=f"{prefix}/{sensor}/episode_{episode:05d}.json", Body=f"{sensor}{episode}".encode()
            )
    deadline = time.monotonic() + 20
    while not clients["direct"].get_bucket_notification_configuration(Bucket=bucket).get("QueueConfigurations"):
        assert time.monotonic() < deadline, f"{bucket} was not subscribed within 20 s"
        time.sleep(0.2)
    time.sleep(0.5)  # MinIO shows the configuration a moment before the accelerator's PUT returns
    accel = clients["accelerator"]
    before = read_stats(s)["events"]
    accel.get_object(Bucket=bucket, Key=f"{prefix}/pose/episode_00000.json")["Body"].read()
    accel.get_object(Bucket=bucket, Key=f"{prefix}/gripper/episode_00000.json")["Body"].read()
    deadline = time.monotonic() + 20
    while True:  # prefetch runs in the background: wait until its queue has drained
        state = read_stats(s)["prefetch"]
        if state["queued"] == 0 and state["inflight"] == 0:
            break
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    # boto3's defaults ask for checksums: a hit shows the prefetched copy knows them too.
    validating = boto3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password)
    r = validating.get_object(Bucket=bucket, Key=f"{prefix}/gripper/episode_00001.json")
    assert r["Body"].read() == b"gripper1"
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-robolake-cache"].startswith("hit")
    after = read_stats(s)["events"]
    assert after.get("prefetch_issued", 0) > before.get("prefetch_issued", 0)
    assert after.get("prefetch_used", 0) > before.get("prefetch_used", 0)
    metrics = requests.get(f"{s.accelerator_admin_endpoint}/metrics", timeout=5, auth=admin_auth(s)).text
    assert 'robolake_accelerator_events_total{kind="prefetch_used"}' in metrics
    assert "robolake_accelerator_client_latency_seconds_bucket" in metrics


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def standalone_accelerator(stack: NativeStack, cache_dir: Path, *flags: str) -> Iterator[tuple[int, int, int]]:
    """A second accelerator process in front of the stack's MinIO, which no bucket notification reaches.

    Yields (S3 port, admin port, pid) once it is healthy; stops it on exit.
    """
    s = stack.settings
    port, admin = free_port(), free_port()
    env = {
        **os.environ,
        "MINIO_ROOT_USER": s.minio_root_user,
        "MINIO_ROOT_PASSWORD": s.minio_root_password,
        "ROBOLAKE_ENV_FILE": "/dev/null",
    }
    cmd = [
        sys.executable,
        "-m",
        "robolake.cli.accelerator",
        "serve",
        "--port",
        str(port),
        "--admin-port",
        str(admin),
        "--disk-mb",
        "0",
        "--no-prefetch",
        "--cache-dir",
        str(cache_dir),
        *flags,
        *(f"--upstream={e}" for e in s.minio_endpoints),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not health.accelerator_healthy(f"http://127.0.0.1:{admin}"):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        yield port, admin, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_memory_stays_within_budget(stack: NativeStack, tmp_path: Path) -> None:
    s = stack.settings
    with standalone_accelerator(stack, tmp_path / "c", "--memory-mb", "16") as (port, admin, pid):
        direct = s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)
        accel = s3_client(f"http://127.0.0.1:{port}", s.minio_root_user, s.minio_root_password)
        prefix = f"mem-{uuid.uuid4().hex[:8]}"
        blob = os.urandom(512 * 1024)
        for _ in range(8):  # warm the process up before taking the baseline
            accel.head_bucket(Bucket=BUCKET)
        rss_before = _rss_mb(pid)
        for i in range(96):  # 48 MB of objects through a 16 MB memory tier
            direct.put_object(Bucket=BUCKET, Key=f"{prefix}/{i}.bin", Body=blob[i:] + blob[:i])
        for _ in range(2):
            for i in range(96):
                assert accel.get_object(Bucket=BUCKET, Key=f"{prefix}/{i}.bin")["Body"].read()[:1] == blob[i : i + 1]
        stats = requests.get(f"http://127.0.0.1:{admin}/stats", timeout=5).json()
        assert stats["memory"]["used_bytes"] <= 16 * 2**20
        assert stats["tiers"]["memory"]["evictions"] > 0
        grown = _rss_mb(pid) - rss_before
        assert grown < 16 + 24, f"RSS grew {grown:.1f} MB for a 16 MB memory tier"


def test_old_copies_are_rechecked_in_the_background(stack: NativeStack, tmp_path: Path) -> None:
    """A standalone accelerator gets no bucket notifications: only revalidation can catch a direct overwrite."""
    s = stack.settings
    with standalone_accelerator(stack, tmp_path / "c", "--revalidate-after-s", "1") as (port, admin, _):
        direct = s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)
        accel = s3_client(f"http://127.0.0.1:{port}", s.minio_root_user, s.minio_root_password)
        key, same = f"reval-{uuid.uuid4().hex[:8]}/pose.json", f"reval-{uuid.uuid4().hex[:8]}/gripper.json"

        def read(k: str) -> tuple[bytes, str]:
            got = accel.get_object(Bucket=BUCKET, Key=k)
            return got["Body"].read(), got["ResponseMetadata"]["HTTPHeaders"].get("x-robolake-cache", "")

        direct.put_object(Bucket=BUCKET, Key=key, Body=b"v1")
        direct.put_object(Bucket=BUCKET, Key=same, Body=b"unchanged")
        assert read(key) == (b"v1", "miss") and read(same) == (b"unchanged", "miss")
        direct.put_object(Bucket=BUCKET, Key=key, Body=b"v2")  # behind the accelerator's back
        assert read(key) == (b"v1", "hit-memory")  # young copy: served, nobody told it
        time.sleep(1.3)
        assert read(key) == (b"v1", "hit-memory")  # old copy: still served at once, checked in the background
        assert read(same) == (b"unchanged", "hit-memory")
        deadline = time.monotonic() + 5
        while read(key)[0] != b"v2":
            assert time.monotonic() < deadline, "the background check never dropped the overwritten copy"
            time.sleep(0.1)
        assert read(key) == (b"v2", "hit-memory")
        assert read(same) == (b"unchanged", "hit-memory")
        counters = requests.get(f"http://127.0.0.1:{admin}/stats", timeout=5).json()["events"]
        assert counters["revalidated_changed"] >= 1 and counters["revalidated_unchanged"] >= 1
        direct.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key}, {"Key": same}]})


def test_node_loss_keeps_accelerator_and_lakefs_working(stack: NativeStack, clients: dict[str, Any]) -> None:
    s = stack.settings
    accel = clients["accelerator"]
    keys = {f"loss/{uuid.uuid4().hex}/{i}.json": os.urandom(200 + i) for i in range(30)}
    for key, body in keys.items():
        accel.put_object(Bucket=BUCKET, Key=key, Body=body)
    victim = stack._process("minio-1").pid()
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    while health.minio_live(s.minio_endpoints[0]):
        time.sleep(0.1)
    try:
        for key, body in keys.items():
            assert accel.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
        for i in range(30):
            accel.put_object(Bucket=BUCKET, Key=f"loss/during/{i}.json", Body=b"during")
            assert accel.get_object(Bucket=BUCKET, Key=f"loss/during/{i}.json")["Body"].read() == b"during"
        creds = stack.state.credentials()
        gateway = s3_client(s.lakefs_endpoint, creds.lakefs_access_key_id, creds.lakefs_secret_access_key)
        gateway.put_object(Bucket=s.lakefs_repo, Key="main/node-loss/check.bin", Body=b"lakefs still works")
        got = gateway.get_object(Bucket=s.lakefs_repo, Key="main/node-loss/check.bin")["Body"].read()
        assert got == b"lakefs still works"
    finally:
        assert stack.up() == ["minio-1"]
