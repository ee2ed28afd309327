"""Pure logic of the storage layer: retry policy, digests and multipart ETags, layout, endpoints."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from robolake.errors import AuthError, ConfigError
from robolake.storage import integrity, layout
from robolake.storage.download import check_sha256, download_path, is_url
from robolake.storage.errors import IntegrityError, NoSuchBucketError, S3Error
from robolake.storage.retry import RetryPolicy, is_retryable
from robolake.storage.s3 import ObjectInfo, normalise_endpoint, object_path, parse_list
from robolake.storage.uploader import _listing_plan, _same, collect_tree

MIB = 1024 * 1024


# ---- retry policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (S3Error("no answer", status=0), True),
        (S3Error("x", status=500, code="InternalError"), True),
        (S3Error("x", status=503, code="SlowDown"), True),
        (S3Error("x", status=503), True),
        (S3Error("x", status=429), True),
        (S3Error("x", status=400, code="RequestTimeout"), True),
        (S3Error("x", status=400, code="BadDigest"), True),
        (S3Error("x", status=400, code="InvalidArgument"), False),
        (S3Error("x", status=404, code="NoSuchKey"), False),
        (NoSuchBucketError("x", status=404, code="NoSuchBucket"), False),
        (AuthError("denied"), False),
        (IntegrityError("etag differs"), True),
        (ValueError("SlowDown"), False),  # decided by type and code, never by the message
        (S3Error("SlowDown ServiceUnavailable", status=400, code="MalformedXML"), False),
    ],
)
def test_retry_decision_by_type_status_and_code(error: BaseException, retry: bool) -> None:
    assert is_retryable(error) is retry


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay_s=0.1, max_delay_s=1.0)
    assert [policy.cap_s(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    rng = random.Random(7)
    delays = [policy.delay_s(3, rng) for _ in range(2000)]
    assert all(0.0 <= d <= 0.4 for d in delays)
    assert max(delays) > 0.35 and min(delays) < 0.05  # spread over the whole window
    assert policy.cap_s(10_000) == 1.0  # no overflow on absurd attempt numbers


def test_should_retry_stops_at_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    transient = S3Error("x", status=503)
    assert policy.should_retry(transient, 1) and policy.should_retry(transient, 2)
    assert not policy.should_retry(transient, 3)
    assert not policy.should_retry(S3Error("x", status=403, code="AccessDenied"), 1)


def test_retry_policy_is_immutable_and_validated() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay_s"):
        RetryPolicy(base_delay_s=5, max_delay_s=1)


# ---- digests ------------------------------------------------------------------------------------


def test_multipart_etag_matches_the_s3_definition() -> None:
    parts = [b"a" * (5 * MIB), b"b" * (5 * MIB), b"tail"]
    md5s = [hashlib.md5(p).digest() for p in parts]
    expected = hashlib.md5(b"".join(md5s)).hexdigest() + "-3"
    assert integrity.multipart_etag(md5s) == expected
    with pytest.raises(ValueError):
        integrity.multipart_etag([])


def test_digest_file_single_and_multipart(tmp_path: Path) -> None:
    data = bytes(range(256)) * (45 * 1024)  # 11.25 MiB
    path = tmp_path / "video.mp4"
    path.write_bytes(data)
    single = integrity.digest_file(path)
    assert single.etag == hashlib.md5(data).hexdigest()
    assert single.sha256 == hashlib.sha256(data).hexdigest() and single.size == len(data)
    assert single.content_md5 == integrity.content_md5(hashlib.md5(data).digest())
    multi = integrity.digest_file(path, multipart_part_size=5 * MIB)
    chunks = [data[i : i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    assert multi.part_md5s == tuple(hashlib.md5(c).digest() for c in chunks)
    assert multi.etag == integrity.multipart_etag([hashlib.md5(c).digest() for c in chunks])
    assert multi.etag.endswith("-3") and multi.sha256 == single.sha256


def test_digest_of_a_file_that_is_an_exact_number_of_parts(tmp_path: Path) -> None:
    path = tmp_path / "exact.bin"
    path.write_bytes(b"x" * (10 * MIB))
    assert integrity.digest_file(path, multipart_part_size=5 * MIB).etag.endswith("-2")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert integrity.digest_file(empty).etag == hashlib.md5(b"").hexdigest()


def test_part_size_grows_to_fit_ten_thousand_parts() -> None:
    assert integrity.choose_part_size(100 * MIB, 16 * MIB) == 16 * MIB
    big = 16 * MIB * 10_000 + 1
    assert integrity.choose_part_size(big, 16 * MIB) == 32 * MIB
    with pytest.raises(ValueError, match="5 MiB"):
        integrity.choose_part_size(100, MIB)
    assert integrity.part_ranges(11, 5) == [(0, 5), (5, 5), (10, 1)]
    assert integrity.part_ranges(0, 5) == [(0, 0)]


def test_etag_normalisation() -> None:
    assert integrity.normalise_etag('"ABC-2"') == "abc-2"
    assert integrity.normalise_etag('W/"abc"') == "abc"


def test_same_object_by_sha256_metadata_or_etag() -> None:
    digest = integrity.digest_bytes(b"pose")
    with_meta = ObjectInfo("k", 4, "other-etag", "", {"sha256": digest.sha256})
    assert _same(with_meta, digest)  # sha256 wins: the part size of an earlier run does not matter
    assert not _same(ObjectInfo("k", 4, digest.etag, "", {"sha256": "0" * 64}), digest)
    assert not _same(ObjectInfo("k", 4, digest.etag, "", {}), digest)  # ours always carry sha256
    assert _same(ObjectInfo("k", 4, digest.etag, "", None), digest)  # server lists no metadata
    assert not _same(ObjectInfo("k", 5, digest.etag, "", None), digest)
    assert not _same(None, digest)


# ---- layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("pose/episode_00001.json", "application/json"),
        ("video/episode_00001.MP4", "video/mp4"),
        ("replay_buffer/dataset.zarr.zip", "application/zip"),
        ("configs/experiment_000.yaml", "application/yaml"),
        ("x.yml", "application/yaml"),
        ("camera_trajectory.csv", "text/csv"),
        ("tag_detection.pkl", "application/octet-stream"),
        ("README", "application/octet-stream"),
    ],
)
def test_content_types(name: str, ctype: str) -> None:
    assert layout.content_type_for(name) == ctype


def test_metadata_derived_from_the_path() -> None:
    assert layout.default_metadata("pose/episode_00012.json") == {
        "episode": "12",
        "sensor": "pose",
        "schema-version": "1",
    }
    assert layout.default_metadata("videos/cup/episode_3.mp4") == {
        "episode": "3",
        "sensor": "video",
        "schema-version": "1",
    }
    assert layout.default_metadata("configs/experiment_000.yaml") == {"sensor": "config", "schema-version": "1"}
    assert layout.default_metadata("notes.txt") == {}
    assert layout.episode_of("gripper/myepisode_00001.json") is None


def test_lake_layout_keys() -> None:
    assert layout.sensor_key("pose", "cup", 7) == "pose/cup/episode_00007.json"
    assert layout.sensor_key("video", "cup", 12345) == "video/cup/episode_12345.mp4"
    assert layout.original_key("cup", "cup.zarr.zip") == "original/cup/cup.zarr.zip"
    assert layout.manifest_key("cup") == "manifests/cup.json"
    assert layout.join_key("/a/b/", "/c.json") == "a/b/c.json" and layout.join_key("", "c") == "c"
    with pytest.raises(ValueError, match="sensor"):
        layout.sensor_key("lidar", "cup", 1)


def test_header_values_are_ascii() -> None:
    assert layout.safe_header_value("plain-1") == "plain-1"
    assert layout.safe_header_value("tâche") == "t%C3%A2che"


def test_listing_plan_per_directory_or_one_recursive_listing() -> None:
    assert _listing_plan(["pose/a/e1.json", "pose/a/e2.json", "gripper/a/e1.json", "top.json"]) == [
        ("", "/"),
        ("gripper/a/", "/"),
        ("pose/a/", "/"),
    ]
    many = [f"run/s{i:03d}/pose/e.json" for i in range(100)]
    assert _listing_plan(many) == [("run/", "")]


def test_collect_tree_skips_partial_files(tmp_path: Path) -> None:
    (tmp_path / "pose").mkdir()
    (tmp_path / "pose" / "episode_00000.json").write_text("{}")
    (tmp_path / "pose" / "episode_00001.json.partial").write_text("{")
    items = collect_tree(tmp_path, "umi-raw", "ds/")
    assert [(i.key, i.content_type, dict(i.metadata)) for i in items] == [
        ("ds/pose/episode_00000.json", "application/json", {"episode": "0", "sensor": "pose", "schema-version": "1"})
    ]
    with pytest.raises(ConfigError, match="not a directory"):
        collect_tree(tmp_path / "missing", "b")


# ---- endpoints, paths, listings, downloads ------------------------------------------------------


def test_endpoints() -> None:
    assert normalise_endpoint("127.0.0.1:9000") == "http://127.0.0.1:9000"
    assert normalise_endpoint("https://s3.example.org:443/") == "https://s3.example.org:443"
    for bad in ("127.0.0.1", "localhost:notaport", "ftp://h:1", "h:1/path", ":9000", "h:99999"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            normalise_endpoint(bad)


def test_object_paths_are_encoded_once() -> None:
    assert object_path("umi-raw", "pose/a b+c.json") == "/umi-raw/pose/a%20b%2Bc.json"
    assert object_path("umi-raw") == "/umi-raw"


def test_parse_list_with_minio_metadata() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken>"
        b"<Contents><Key>a/b.json</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
        b"<ETag>&#34;abc&#34;</ETag><Size>9</Size><UserMetadata><X-Amz-Meta-Sha256>ff</X-Amz-Meta-Sha256>"
        b"<content-type>application/json</content-type></UserMetadata></Contents>"
        b'<Contents><Key>c</Key><ETag>"d-2"</ETag><Size>1</Size></Contents></ListBucketResult>'
    )
    objects, token = parse_list(body)
    assert token == "tok"
    assert objects[0] == ObjectInfo(
        "a/b.json", 9, "abc", "2026-01-01T00:00:00.000Z", {"sha256": "ff", "content-type": "application/json"}
    )
    assert objects[1].metadata is None and objects[1].etag == "d-2"


def test_download_helpers(tmp_path: Path) -> None:
    assert is_url("http://127.0.0.1:8/x.zip") and is_url("HTTPS://h/x") and not is_url("x.zip")
    assert check_sha256("A" * 64) == "a" * 64
    with pytest.raises(ConfigError, match="64 hex"):
        check_sha256("abc")
    path = download_path("http://h/data/cup%20x.zarr.zip?sig=1", tmp_path)
    assert path.name == "cup x.zarr.zip" and path.parent.parent == tmp_path
    assert download_path("http://h/", tmp_path).name == "download"


def test_first_error_unwraps_task_groups() -> None:
    import asyncio

    from robolake.storage.uploader import first_error

    inner = BaseExceptionGroup("inner", [asyncio.CancelledError(), ValueError("real")])
    assert str(first_error(BaseExceptionGroup("outer", [asyncio.CancelledError(), inner]))) == "real"
