"""The uploader against the real stack: verified writes, resume, retries through a node kill."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from robolake.errors import ServiceUnavailableError
from robolake.stack.native import NativeStack
from robolake.storage import NoSuchBucketError, S3Target, TransferProgress, collect_tree, upload_tree
from robolake.storage.errors import S3Error
from robolake.storage.integrity import content_md5, md5_of
from robolake.storage.s3 import AsyncS3
from robolake.storage.uploader import run_async
from tests.conftest import s3_client
from tests.stackutil import settings_env

pytestmark = pytest.mark.integration
BUCKET = "umi-raw"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def client(stack: NativeStack) -> Any:
    s = stack.settings
    return s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)


def _tree(root: Path, episodes: int, *, big_bytes: int = 0) -> dict[str, bytes]:
    """A small UMI-like tree; returns relative path -> bytes."""
    files: dict[str, bytes] = {}
    for i in range(episodes):
        files[f"pose/episode_{i:05d}.json"] = json.dumps({"episode_index": i, "eef": [i * 0.1] * 30}).encode()
        files[f"gripper/episode_{i:05d}.json"] = json.dumps({"episode_index": i, "width_m": [0.05] * 10}).encode()
    files["configs/experiment_000.yaml"] = b"experiment: experiment_000\n"
    if big_bytes:
        files["replay_buffer/dataset.zarr.zip"] = os.urandom(big_bytes)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _listing(client: Any, prefix: str) -> dict[str, tuple[str, Any]]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = (obj["ETag"], obj["LastModified"])
    return out


def _read_back_all(client: Any, prefix: str, files: dict[str, bytes]) -> None:
    def check(item: tuple[str, bytes]) -> None:
        rel, data = item
        got = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{rel}")
        assert hashlib.sha256(got["Body"].read()).hexdigest() == hashlib.sha256(data).hexdigest(), rel
        assert got["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest(), rel

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, files.items()))


def test_upload_tree_is_verified_typed_and_a_rerun_rewrites_nothing(
    stack: NativeStack, client: Any, tmp_path: Path
) -> None:
    files = _tree(tmp_path, 40, big_bytes=12 * MIB)
    prefix = f"it-upload/{uuid.uuid4().hex[:8]}"
    seen: list[TransferProgress] = []
    summary = upload_tree(
        stack.settings, tmp_path, BUCKET, prefix, multipart_threshold=6 * MIB, part_size=5 * MIB, progress=seen.append
    )
    assert (summary.objects, summary.skipped, summary.failures) == (len(files), 0, ())
    assert summary.bytes == sum(len(d) for d in files.values())
    assert summary.endpoint == stack.settings.accelerator_endpoint  # the default endpoint
    assert seen[-1].objects_done == len(files) and seen[-1].bytes_done == seen[-1].bytes_total

    pose = client.head_object(Bucket=BUCKET, Key=f"{prefix}/pose/episode_00007.json")
    data = files["pose/episode_00007.json"]
    assert pose["ContentType"] == "application/json"
    assert pose["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert pose["Metadata"] == {
        "episode": "7",
        "sensor": "pose",
        "schema-version": "1",
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    config = client.head_object(Bucket=BUCKET, Key=f"{prefix}/configs/experiment_000.yaml")
    assert config["ContentType"] == "application/yaml"
    big = client.head_object(Bucket=BUCKET, Key=f"{prefix}/replay_buffer/dataset.zarr.zip")
    assert big["ETag"].strip('"').endswith("-3") and big["ContentType"] == "application/zip"
    _read_back_all(client, prefix, files)

    before = _listing(client, prefix + "/")
    again = upload_tree(stack.settings, tmp_path, BUCKET, prefix, multipart_threshold=6 * MIB, part_size=5 * MIB)
    assert (again.objects, again.skipped, again.bytes) == (0, len(files), 0)
    assert _listing(client, prefix + "/") == before  # same ETags, same LastModified: nothing rewritten

    (tmp_path / "gripper" / "episode_00003.json").write_bytes(b'{"changed": true}')
    third = upload_tree(stack.settings, tmp_path, BUCKET, prefix, multipart_threshold=6 * MIB, part_size=5 * MIB)
    assert (third.objects, third.skipped) == (1, len(files) - 1)
    after = _listing(client, prefix + "/")
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {f"{prefix}/gripper/episode_00003.json"}


def test_server_rejects_a_body_that_does_not_match_content_md5(stack: NativeStack) -> None:
    target = S3Target.from_settings(stack.settings)
    key = f"it-upload/{uuid.uuid4().hex[:8]}/corrupt.json"

    async def put_corrupted() -> None:
        async with AsyncS3(target) as s3:
            await s3.put_object(BUCKET, key, b"the bytes that arrived", content_md5=content_md5(md5_of(b"sent")))

    with pytest.raises(S3Error) as err:
        run_async(put_corrupted())
    assert err.value.code == "BadDigest" and err.value.status == 400


def test_missing_bucket_and_dead_endpoint_write_nothing_and_say_so(stack: NativeStack, tmp_path: Path) -> None:
    _tree(tmp_path, 2)
    with pytest.raises(NoSuchBucketError, match=r"bucket .no-such-bucket-rl. does not exist.*nothing was uploaded"):
        upload_tree(stack.settings, tmp_path, "no-such-bucket-rl", "x")
    from robolake.stack.process import free_port

    with pytest.raises(ServiceUnavailableError, match=r"does not answer.*nothing was uploaded"):
        upload_tree(stack.settings, tmp_path, BUCKET, "x", endpoint=f"127.0.0.1:{free_port()}")


def test_upload_survives_a_node_killed_mid_run(stack: NativeStack, client: Any, tmp_path: Path) -> None:
    # Through the accelerator: a PUT in flight on the killed node is re-sent to another node, where
    # it waits for MinIO to expire the dead node's lock on that key (about 1-2 minutes), so this
    # test takes that long; every other object keeps flowing meanwhile.
    files = _tree(tmp_path, 1000)  # 2,001 objects
    prefix = f"it-nodekill/{uuid.uuid4().hex[:8]}"
    victim = stack._process("minio-2").pid()
    assert victim is not None
    killed: list[int] = []

    def kill_midway(p: TransferProgress) -> None:
        if not killed and p.objects_done >= 300:
            os.kill(victim, signal.SIGKILL)
            killed.append(p.objects_done)

    try:
        try:
            summary = upload_tree(stack.settings, tmp_path, BUCKET, prefix, progress=kill_midway)
            resumed = None
        except ServiceUnavailableError:
            summary = None
        if summary is None or summary.failures:
            # Stopped with a clear message (or some objects failed): the rerun finishes the job.
            resumed = upload_tree(stack.settings, tmp_path, BUCKET, prefix)
            assert not resumed.failures
        assert killed and killed[0] < len(files), "the node was not killed during the upload"
        stored = _listing(client, prefix + "/")
        assert len(stored) == len(files)
        _read_back_all(client, prefix, files)
        if resumed is None:
            assert summary is not None and summary.objects == len(files)
    finally:
        stack.up()


def test_cli_upload_json(stack: NativeStack, tmp_path: Path) -> None:
    files = _tree(tmp_path, 3)
    prefix = f"it-cli/{uuid.uuid4().hex[:8]}"
    cmd = [str(Path(sys.executable).parent / "robolake")]
    result = subprocess.run(
        [*cmd, "upload", str(tmp_path), "--bucket", BUCKET, "--prefix", prefix, "--json", "--concurrency", "4"],
        env=settings_env(stack.settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["objects"] == len(files) and doc["failures"] == [] and doc["destination"] == f"s3://{BUCKET}/{prefix}/"
    bad = subprocess.run(
        [*cmd, "upload", str(tmp_path), "--bucket", "no-such-bucket-rl"],
        env=settings_env(stack.settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "error: bucket 'no-such-bucket-rl' does not exist" in bad.stderr


def test_a_file_that_vanished_is_reported_and_the_rest_is_stored(
    stack: NativeStack, client: Any, tmp_path: Path
) -> None:
    from robolake.storage import UploadIncompleteError, UploadItem, upload_items

    _tree(tmp_path, 3)
    prefix = f"it-upload/{uuid.uuid4().hex[:8]}"
    items = collect_tree(tmp_path, BUCKET, prefix)
    gone = UploadItem(
        bucket=BUCKET,
        key=f"{prefix}/pose/episode_00099.json",
        path=tmp_path / "gone.json",
        size=10,
        content_type="application/json",
    )
    summary = upload_items(stack.settings, [*items, gone])
    assert summary.objects == len(items) and [f.key for f in summary.failures] == [gone.key]
    with pytest.raises(UploadIncompleteError, match=r"1 of 8 objects were not stored.*rerun the same command"):
        summary.raise_for_failures()
    assert len(_listing(client, prefix + "/")) == len(items)
