"""ObjectReader (raw keep-alive streaming GET) against real MinIO and the accelerator."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from robolake.accelerator.client import AsyncBatchClient
from robolake.config import Settings
from robolake.errors import AuthError
from robolake.storage.errors import NoSuchBucketError, S3Error
from robolake.storage.reader import ObjectReader
from robolake.storage.s3 import S3Target
from tests.conftest import s3_client

pytestmark = pytest.mark.integration
BUCKET = "umi-raw"


@pytest.fixture(scope="module")
def objects(settings: Settings) -> dict[str, bytes]:
    client = s3_client(settings.minio_endpoints[0], settings.minio_root_user, settings.minio_root_password)
    prefix = f"reader-test/{uuid.uuid4().hex[:8]}"
    bodies = {
        f"{prefix}/small.json": b'{"width_m": [0.01, 0.02]}\n',
        f"{prefix}/video.mp4": os.urandom(9 * 2**20 + 7),
        f"{prefix}/empty.bin": b"",
    }
    for key, body in bodies.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    yield bodies
    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in bodies]})


def _endpoints(settings: Settings) -> list[str]:
    return [settings.minio_endpoints[0], settings.accelerator_endpoint]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("where", [0, 1], ids=["direct", "accelerator"])
def test_full_ranged_and_head_reads_are_byte_exact(settings: Settings, objects: dict[str, bytes], where: int) -> None:
    target = S3Target.from_settings(settings, _endpoints(settings)[where])

    async def go() -> None:
        async with ObjectReader(target, connections=4, buffer_size=64 * 1024) as reader:
            for key, body in objects.items():
                got = await reader.get(BUCKET, key)
                assert got.status == 200 and got.body == body and got.size == len(body)
                assert got.headers["content-length"] == str(len(body))
            video_key = next(k for k in objects if k.endswith(".mp4"))
            video = objects[video_key]
            digest = hashlib.sha256()
            streamed = await reader.get(BUCKET, video_key, sink=digest.update)
            assert streamed.body == b"" and streamed.size == len(video)
            assert digest.hexdigest() == hashlib.sha256(video).hexdigest()
            assert 0 < streamed.ttfb_s <= streamed.seconds
            first, last = 3 * 2**20 + 5, 5 * 2**20 + 11
            ranged = await reader.get(BUCKET, video_key, byte_range=(first, last))
            assert ranged.status == 206 and ranged.body == video[first : last + 1]
            assert ranged.headers["content-range"] == f"bytes {first}-{last}/{len(video)}"
            head = await reader.head(BUCKET, video_key)
            assert head.status == 200 and head.size == 0 and head.headers["content-length"] == str(len(video))
            # the same pooled connections serve many requests in a row, concurrently
            many = await asyncio.gather(*(reader.get(BUCKET, k) for k in list(objects) * 5))
            assert [m.body for m in many] == [objects[k] for k in list(objects) * 5]

    run(go())


def test_errors_name_the_object_and_the_cause(settings: Settings, objects: dict[str, bytes]) -> None:
    target = S3Target.from_settings(settings, settings.minio_endpoints[0])
    wrong = S3Target(endpoint=target.endpoint, access_key="nobody", secret_key="wrong-secret")

    async def go() -> None:
        async with ObjectReader(target) as reader:
            with pytest.raises(S3Error, match=r"GET umi-raw/reader-test/missing .* HTTP 404 NoSuchKey") as info:
                await reader.get(BUCKET, "reader-test/missing", sink=lambda _: None)
            assert info.value.status == 404
            with pytest.raises(NoSuchBucketError, match="no-such-bucket-here"):
                await reader.get("no-such-bucket-here", "x")
            # the connection that carried the errors is still good
            key = next(iter(objects))
            assert (await reader.get(BUCKET, key)).body == objects[key]
        async with ObjectReader(wrong) as reader:
            with pytest.raises(AuthError, match="access key 'nobody'"):
                await reader.get(BUCKET, next(iter(objects)))
        dead = S3Target(endpoint="http://127.0.0.1:1", access_key="a", secret_key="b")
        async with ObjectReader(dead) as reader:
            with pytest.raises(S3Error, match=r"cannot connect to http://127\.0\.0\.1:1"):
                await reader.get(BUCKET, "x")

    run(go())


def test_download_writes_the_whole_object_or_nothing(
    settings: Settings, objects: dict[str, bytes], tmp_path: Path
) -> None:
    target = S3Target.from_settings(settings, settings.minio_endpoints[0])
    video_key = next(k for k in objects if k.endswith(".mp4"))

    async def go() -> None:
        async with ObjectReader(target) as reader:
            seen: list[int] = []
            got = await reader.download(BUCKET, video_key, tmp_path / "ep.mp4", progress=seen.append)
            assert (tmp_path / "ep.mp4").read_bytes() == objects[video_key] and sum(seen) == got.size
            with pytest.raises(S3Error, match="NoSuchKey"):
                await reader.download(BUCKET, video_key + ".missing", tmp_path / "missing.mp4")
            assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.mp4"]  # no partial file left

    run(go())


def test_batch_get_over_the_reader_parses_a_chunked_tar_stream(settings: Settings, objects: dict[str, bytes]) -> None:
    target = S3Target.from_settings(settings)
    keys = [*objects, "reader-test/not-there"]

    async def go() -> None:
        async with ObjectReader(target) as reader:
            items, answer = await AsyncBatchClient(reader).get_batch(BUCKET, keys)
            assert answer.status == 200 and answer.headers.get("transfer-encoding") == "chunked"
            assert [i.key for i in items] == keys
            assert [i.body for i in items[:-1]] == list(objects.values())
            assert not items[-1].ok and "NoSuchKey" in items[-1].error

    run(go())
