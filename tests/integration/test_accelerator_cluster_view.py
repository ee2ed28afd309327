"""One cluster view: multipart uploads created on any node, listed and finished through the accelerator.

MinIO lists a multipart upload (ListMultipartUploads without a prefix) only on the node that
created it. Through the accelerator every call lists every upload of the cluster, in MinIO's
own format and order, and the rest of an upload's life works whichever node created it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from robolake.stack.native import NativeStack
from tests.integration.test_accelerator_conformance import boto3_client
from tests.integration.test_accelerator_hardening import signed

pytestmark = pytest.mark.integration
PART = 5 * 1024 * 1024  # S3's smallest part but the last


@pytest.fixture
def bucket(stack: NativeStack) -> Iterator[str]:
    """A fresh bucket; its unfinished uploads aborted and objects deleted afterwards."""
    s = stack.settings
    client = boto3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)
    name = f"robolake-test-mpu-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    yield name
    for node in s.minio_endpoints:
        own = boto3_client(node, s.minio_root_user, s.minio_root_password)
        for upload in own.list_multipart_uploads(Bucket=name).get("Uploads", []):
            with contextlib.suppress(Exception):
                own.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for item in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


def node_clients(stack: NativeStack) -> list[Any]:
    s = stack.settings
    return [boto3_client(e, s.minio_root_user, s.minio_root_password) for e in s.minio_endpoints]


def accelerator(stack: NativeStack) -> Any:
    s = stack.settings
    return boto3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password)


def create_on_each_node(stack: NativeStack, bucket: str) -> list[tuple[str, str]]:
    """One upload created through each node's own endpoint: [(key, upload id)]."""
    made = []
    for i, node in enumerate(node_clients(stack)):
        key = f"episode_{i}/video camera+{i}.mp4"  # a space and a '+': keys as MinIO writes them
        made.append((key, node.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]))
    return made


def listed(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(u["Key"], u["UploadId"]) for u in answer.get("Uploads", [])]


def test_minio_lists_an_upload_only_on_the_node_that_created_it(stack: NativeStack, bucket: str) -> None:
    """The quirk this answers: asserted, so a MinIO that lists cluster-wide shows up here."""
    made = create_on_each_node(stack, bucket)
    for i, node in enumerate(node_clients(stack)):
        assert listed(node.list_multipart_uploads(Bucket=bucket)) == [made[i]]


def test_every_listing_through_the_accelerator_lists_every_upload(stack: NativeStack, bucket: str) -> None:
    made = create_on_each_node(stack, bucket)
    own = [listed(node.list_multipart_uploads(Bucket=bucket)) for node in node_clients(stack)]
    client = accelerator(stack)
    for _ in range(6):  # round-robin would land on each node twice
        answer = client.list_multipart_uploads(Bucket=bucket)
        assert listed(answer) == made  # created one after another: MinIO's order is Initiated
        assert sorted(listed(answer)) == sorted(u for node in own for u in node)
        assert answer["IsTruncated"] is False


def test_paging_with_max_uploads_one_walks_all_of_them(stack: NativeStack, bucket: str) -> None:
    """aws-cli pages with max-uploads; MinIO applies it only with a prefix, so one page holds all."""
    made = create_on_each_node(stack, bucket)
    pages = accelerator(stack).get_paginator("list_multipart_uploads").paginate(Bucket=bucket, MaxUploads=1)
    walked = [u for page in pages for u in listed(page)]
    assert walked == made


def raw_listing(endpoint: str, stack: NativeStack, query: str, *, gzipped: bool) -> requests.Response:
    s = stack.settings
    headers = signed(endpoint, s.minio_root_user, s.minio_root_password, "GET", query)
    headers["Accept-Encoding"] = "gzip" if gzipped else "identity"
    return requests.get(endpoint + query, headers=headers, timeout=10, stream=True)


def body_of(response: requests.Response) -> bytes:
    raw = response.raw.read(decode_content=False)
    return gzip.decompress(raw) if response.headers.get("Content-Encoding") == "gzip" else raw


@pytest.mark.parametrize("gzipped", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize("params", ["", "&encoding-type=url", "&max-uploads=1&key-marker=episode_1&delimiter=/"])
def test_the_merged_answer_is_minios_document_byte_for_byte(
    stack: NativeStack, bucket: str, params: str, gzipped: bool
) -> None:
    """Uploads on one node only: the accelerator's answer is that node's, byte for byte."""
    first = node_clients(stack)[0]
    for i in range(3):
        first.create_multipart_upload(Bucket=bucket, Key=f"one/node & {i}.bin")
    s = stack.settings
    query = f"/{bucket}?uploads{params}"
    direct = raw_listing(s.minio_endpoints[0], stack, query, gzipped=gzipped)
    through = raw_listing(s.accelerator_endpoint, stack, query, gzipped=gzipped)
    assert (through.status_code, through.headers.get("Content-Encoding")) == (
        200,
        direct.headers.get("Content-Encoding"),
    )
    assert through.headers["Content-Type"] == direct.headers["Content-Type"]
    mine, theirs = body_of(through), body_of(direct)
    assert mine.count(b"<Upload>") == 3
    assert mine == theirs


def test_an_exact_key_prefix_is_answered_alike_by_every_node(stack: NativeStack, bucket: str) -> None:
    """With a prefix MinIO reads the drives: every node lists the key's uploads, whoever made them."""
    nodes = node_clients(stack)
    key = "shared/key.bin"
    made = [node.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"] for node in nodes]
    answer = accelerator(stack).list_multipart_uploads(Bucket=bucket, Prefix=key)
    assert sorted(u for _, u in listed(answer)) == sorted(made)
    assert sorted(u for _, u in listed(nodes[2].list_multipart_uploads(Bucket=bucket, Prefix=key))) == sorted(made)


def test_parts_complete_and_abort_through_the_accelerator_for_uploads_of_any_node(
    stack: NativeStack, bucket: str
) -> None:
    made = create_on_each_node(stack, bucket)
    client = accelerator(stack)
    parts = [b"a" * PART, b"tail"]
    for key, upload in made[:2]:
        etags = [
            client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=data)["ETag"]
            for n, data in enumerate(parts, start=1)
        ]
        listed_parts = client.list_parts(Bucket=bucket, Key=key, UploadId=upload)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in listed_parts] == list(zip((1, 2), etags, strict=True))
        done = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]}
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload=done)
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(parts)).digest()
    key, upload = made[2]
    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
    for _ in range(3):
        assert listed(client.list_multipart_uploads(Bucket=bucket)) == []


def test_a_refused_listing_is_minios_refusal(stack: NativeStack, bucket: str) -> None:
    s = stack.settings
    missing = requests.get(f"{s.accelerator_endpoint}/{bucket}-missing?uploads", timeout=10)
    assert missing.status_code == 403  # unsigned: MinIO refuses before looking for the bucket
    assert re.search(rb"<Code>AccessDenied</Code>", missing.content)
    headers = signed(
        s.accelerator_endpoint, s.minio_root_user, s.minio_root_password, "GET", f"/{bucket}-missing?uploads"
    )
    absent = requests.get(f"{s.accelerator_endpoint}/{bucket}-missing?uploads", headers=headers, timeout=10)
    assert absent.status_code == 404
    assert b"<Code>NoSuchBucket</Code>" in absent.content
