"""Accelerator building blocks: SigV4 against botocore's signer, S3-FIFO, the disk tier, ranges."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from pathlib import Path
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from multidict import CIMultiDict

from robolake.accelerator.cache import CachedObject
from robolake.accelerator.policy import S3FIFO, scan_pattern_demo
from robolake.accelerator.replay import ByteRange, etag_matches, not_modified_headers, parse_range
from robolake.accelerator.tiers import DiskTier, MemoryTier, object_id
from robolake.sigv4 import EMPTY_SHA256, Rejected, Verified, Verifier, sign

KEYS = ["pose/episode_00001.json", "a b+c/ü€ (1).bin", "../../etc/passwd", "x/%2F..%2F/y", "k~!*'();:@&=$,?#[]"]


def botocore_signed(key: str, secret: str = "SECRET", method: str = "GET") -> tuple[str, str, CIMultiDict[str]]:
    url = f"http://127.0.0.1:9000/bucket/{quote(key, safe='/~')}?versionId=&partNumber=1"
    request = AWSRequest(method=method, url=url, headers={"x-amz-content-sha256": EMPTY_SHA256})
    S3SigV4Auth(Credentials("AK", secret), "s3", "us-east-1").add_auth(request)
    parts = urlsplit(request.url)
    headers = CIMultiDict(request.headers.items())
    headers["host"] = parts.netloc
    return parts.path, parts.query, headers


@pytest.mark.parametrize("key", KEYS)
def test_header_signatures_from_botocore_verify(key: str) -> None:
    path, query, headers = botocore_signed(key)
    result = Verifier({"AK": "SECRET"}).verify("GET", path, query, headers)
    assert isinstance(result, Verified) and result.access_key == "AK"


@pytest.mark.parametrize("key", KEYS[:3])
def test_wrong_secret_tampering_and_unknown_keys_are_rejected(key: str) -> None:
    verifier = Verifier({"AK": "SECRET"})
    path, query, headers = botocore_signed(key, secret="WRONG")
    assert verifier.verify("GET", path, query, headers) == Rejected("signature does not match")
    path, query, headers = botocore_signed(key)
    assert isinstance(verifier.verify("HEAD", path, query, headers), Rejected)  # method is signed
    assert isinstance(verifier.verify("GET", path + "x", query, headers), Rejected)  # path is signed
    assert Verifier({"OTHER": "SECRET"}).verify("GET", path, query, headers) == Rejected("access key not known locally")
    no_auth = CIMultiDict((k, v) for k, v in headers.items() if k.lower() != "authorization")
    assert verifier.verify("GET", path, query, no_auth) == Rejected("unsigned request")


def test_skewed_clock_is_rejected() -> None:
    path, query, headers = botocore_signed("k")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
    assert "skewed" in Verifier({"AK": "SECRET"}).verify("GET", path, query, headers, now=later).reason  # type: ignore[union-attr]


def test_presigned_urls_verify_until_they_expire() -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9000",
        aws_access_key_id="AK",
        aws_secret_access_key="SECRET",
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url = urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "p/ä x.json"}, ExpiresIn=60))
    verifier = Verifier({"AK": "SECRET"})
    host = CIMultiDict({"host": url.netloc})
    assert isinstance(verifier.verify("GET", url.path, url.query, host), Verified)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    assert isinstance(verifier.verify("GET", url.path, url.query, host, now=later), Rejected)
    assert isinstance(verifier.verify("GET", url.path.replace("p/", "q/"), url.query, host), Rejected)


def test_our_signer_round_trips() -> None:
    headers = sign("GET", "/b/k%20x", [], "h:1", "AK", "SECRET")
    assert isinstance(
        Verifier({"AK": "SECRET"}).verify("GET", "/b/k%20x", "", CIMultiDict({"host": "h:1", **headers})), Verified
    )


def test_s3fifo_resists_scans_where_lru_collapses() -> None:
    fifo_ratio, lru_ratio = scan_pattern_demo(capacity=1000, working_set=500, scan=2000)
    assert fifo_ratio > 0.8
    assert lru_ratio < 0.2


def test_s3fifo_stays_within_capacity_and_reports_evictions() -> None:
    evicted: list[int] = []
    policy: S3FIFO[int] = S3FIFO(100, evicted.append)
    for key in range(1000):
        assert policy.admit(key, 7)
        assert policy.used_bytes <= 100
    assert len(policy) + len(evicted) == 1000
    assert not policy.admit(-1, 51)  # larger than half the cache: never admitted


def test_memory_tier_counts_overhead_against_budget() -> None:
    tier = MemoryTier(64 * 1024)
    for i in range(1000):
        tier.put(("b", f"k{i}"), CachedObject(b"x", (("ETag", '"e"'),), '"e"', 0.0))
    assert tier.used_bytes <= 64 * 1024
    assert len(tier) < 1000 and tier.stats.evictions > 0


@pytest.mark.parametrize("key", [*KEYS, "nul\x00byte", "/abs/path", "."])
def test_disk_tier_names_files_by_hash_only(tmp_path: Path, key: str) -> None:
    cache_dir = tmp_path / "cache"
    tier = DiskTier(cache_dir, 1 << 20)
    obj = CachedObject(b"payload", (("ETag", '"e"'),), '"e"', 1.0)
    assert tier.put(("bucket", key), obj)
    assert tier.get(("bucket", key)) == obj
    tier.flush()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [cache_dir / object_id(("bucket", key))[:2] / object_id(("bucket", key))]


def test_disk_tier_survives_restart_and_drops_corrupt_files(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path, 1 << 20)
    for i in range(5):
        tier.put(("b", f"k{i}"), CachedObject(bytes([i]) * 100, (), f'"{i}"', 1.0))
    tier.close()
    (tmp_path / "zz").mkdir()
    (tmp_path / "zz" / "leftover.partial").write_bytes(b"half")
    victim = tmp_path / object_id(("b", "k3"))[:2] / object_id(("b", "k3"))
    victim.write_bytes(victim.read_bytes()[:-10] + b"X" * 10)  # same size, wrong bytes
    again = DiskTier(tmp_path, 1 << 20)
    assert again.restored == 5
    assert not (tmp_path / "zz" / "leftover.partial").exists()
    assert again.get(("b", "k1")) is not None and again.get(("b", "k1")).body == bytes([1]) * 100  # type: ignore[union-attr]
    assert again.get(("b", "k3")) is None and again.stats.corrupt == 1 and not victim.exists()


def test_a_disk_copy_dropped_while_its_write_is_queued_never_lands(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path, 1 << 20)
    key, other = ("b", "k"), ("b", "other")
    for n in range(200):  # a queue of writes, so the drop below comes before some of them
        tier.put(("b", f"fill{n}"), CachedObject(b"f" * 4096, (), '"f"', 1.0))
    tier.put(key, CachedObject(b"v1", (), '"1"', 1.0))
    assert tier.get(key) is not None  # served from memory until its file is in place
    tier.discard(key)  # a write or a notification
    tier.put(other, CachedObject(b"v1", (), '"1"', 1.0))
    tier.replace(other, CachedObject(b"v2", (), '"2"', 1.0))  # revalidated: written again
    tier.close()
    again = DiskTier(tmp_path, 1 << 20)
    assert again.get(key) is None and again.restored == 201
    got = again.get(other)
    assert got is not None and got.body == b"v2"
    assert not [p for p in tmp_path.rglob("*.partial")]


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=50-500", 100, (50, 99)),
        ("bytes=007-9", 100, (7, 9)),
        ("bytes=99-99", 100, (99, 99)),
        ("bytes=100-", 100, None),
        ("bytes=0-0", 0, None),
        ("bytes=-5", 0, None),
    ],
)
def test_single_byte_ranges(header: str, size: int, expected: tuple[int, int] | None) -> None:
    wanted = parse_range(header)
    assert wanted is not None
    assert wanted.span(size) == expected


@pytest.mark.parametrize(
    "header",
    # MinIO answers 416 before any precondition (reversed, -0) or ignores the header (the rest).
    [
        "bytes=5-1",
        "bytes=-0",
        "bytes=-",
        "lines=1-2",
        "bytes=0-1,5-6",
        "bytes=a-b",
        "bytes=+1-2",
        "bytes= 1-2",
        "bytes=0-99999999999999999999",
        "bytes=\u0663-4",
        "",
    ],
)
def test_ranges_the_cache_leaves_to_minio(header: str) -> None:
    assert parse_range(header) is None


def test_suffix_range_spans_the_last_bytes() -> None:
    assert ByteRange(None, 3).span(10) == (7, 9)


@pytest.mark.parametrize(
    ("header", "matches"),
    # MinIO's isETagEqual: quotes trimmed, `*` matches, no weak tags, no lists.
    [
        ('"abc"', True),
        ("abc", True),
        ('"abc', True),
        ("*", True),
        (" * ", True),
        ('W/"abc"', False),
        ('"x", "abc"', False),
        ('"abd"', False),
    ],
)
def test_etags_match_as_minio_compares_them(header: str, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


def test_checksums_are_kept_apart_and_unknown_unless_asked() -> None:
    sent = [
        ("ETag", '"e"'),
        ("X-Amz-Checksum-Crc32", "7j1HhQ=="),
        ("X-Amz-Checksum-Type", "FULL_OBJECT"),
        ("X-Amz-Request-Id", "1"),
        ("Content-Length", "3"),
        ("Vary", "Origin"),
        ("Vary", "Accept-Encoding"),
        ("Access-Control-Allow-Origin", "http://x"),
    ]
    asked = CachedObject.from_response(b"abc", sent, checksums_asked=True, validated_at=1.0)
    assert asked.headers == (("ETag", '"e"'), ("Vary", "Origin"), ("Vary", "Accept-Encoding"))
    assert asked.checksums == (("X-Amz-Checksum-Crc32", "7j1HhQ=="), ("X-Amz-Checksum-Type", "FULL_OBJECT"))
    assert asked.etag == '"e"'
    none = CachedObject.from_response(b"abc", sent[:1], checksums_asked=True, validated_at=1.0)
    assert none.checksums == ()  # asked, none sent: the object has none
    unknown = CachedObject.from_response(b"abc", sent[:1], checksums_asked=False, validated_at=1.0)
    assert unknown.checksums is None
    assert not_modified_headers([*asked.headers, ("Content-Type", "x"), ("x-amz-meta-a", "b")]) == list(asked.headers)


def test_disk_tier_keeps_checksums_and_reads_files_of_the_old_format(tmp_path: Path) -> None:
    tier = DiskTier(tmp_path, 1 << 20)
    for checksums in (None, (), (("X-Amz-Checksum-Crc32", "AAAA"),)):
        obj = CachedObject(b"x", (("ETag", '"e"'),), '"e"', 1.0, checksums)
        assert tier.put(("b", "k"), obj)
        assert tier.get(("b", "k")) == obj
    path = tmp_path / object_id(("b", "old"))[:2] / object_id(("b", "old"))
    crc = ("X-Amz-Checksum-Crc32", "AAAA")
    for stored, checksums in (((("ETag", '"e"'), crc), (crc,)), ((("ETag", '"e"'),), None)):
        meta = json.dumps(
            {
                "bucket": "b",
                "key": "old",
                "size": 1,
                "etag": '"e"',
                "headers": stored,
                "sha256": hashlib.sha256(b"x").hexdigest(),
                "validated_at": 1.0,
            }
        ).encode()
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(struct.pack(">4sI", b"RLC1", len(meta)) + meta + b"x")
        old = DiskTier(tmp_path, 1 << 20).get(("b", "old"))
        assert old == CachedObject(b"x", (("ETag", '"e"'),), '"e"', 1.0, checksums)
