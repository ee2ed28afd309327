"""Every bucket reports its changes to the accelerator, also one created after the stack started."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from robolake.accelerator.admin import read_stats
from robolake.accelerator.subscriptions import POLL_S
from robolake.stack.native import NativeStack
from tests.conftest import s3_client

pytestmark = pytest.mark.integration


def _memory_hits(stack: NativeStack) -> int:
    stats = read_stats(stack.settings)
    return int(stats["events"].get("requests_hit_memory", 0))


def _read_until_cached(stack: NativeStack, accel: Any, bucket: str, key: str, timeout_s: float) -> None:
    """GET through :9000 until one is answered from memory (the bucket is covered by then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = _memory_hits(stack)
        accel.get_object(Bucket=bucket, Key=key)["Body"].read()
        if _memory_hits(stack) > before:
            return
        assert time.monotonic() < deadline, f"s3://{bucket}/{key} was never answered from the cache"
        time.sleep(0.2)


def _changed_on_nodes_seen_within_3_s(stack: NativeStack, accel: Any, bucket: str) -> None:
    s = stack.settings
    node2, node3 = (s3_client(e, s.minio_root_user, s.minio_root_password) for e in s.minio_endpoints[1:])
    for key in ("over", "gone"):
        accel.put_object(Bucket=bucket, Key=key, Body=b"old " + key.encode())
        _read_until_cached(stack, accel, bucket, key, timeout_s=POLL_S * 3)
    node2.put_object(Bucket=bucket, Key="over", Body=b"new bytes")
    node3.delete_object(Bucket=bucket, Key="gone")
    changed = time.monotonic()
    fresh = gone = False
    while not (fresh and gone):
        assert time.monotonic() - changed < 3.0, f"bucket {bucket}: fresh={fresh}, gone={gone} 3 s after the change"
        fresh = fresh or accel.get_object(Bucket=bucket, Key="over")["Body"].read() == b"new bytes"
        try:
            accel.get_object(Bucket=bucket, Key="gone")["Body"].read()
        except ClientError as exc:
            gone = exc.response["Error"]["Code"] == "NoSuchKey"
        time.sleep(0.05)


def _subscribed(stack: NativeStack, bucket: str) -> bool:
    s = stack.settings
    node = s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)
    queues = node.get_bucket_notification_configuration(Bucket=bucket).get("QueueConfigurations", [])
    return any(q["QueueArn"] == stack.webhook_arn and "s3:ObjectRemoved:*" in q["Events"] for q in queues)


def test_a_bucket_created_through_the_accelerator_is_never_stale(stack: NativeStack) -> None:
    s = stack.settings
    accel = s3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password)
    bucket = f"it-sub-{uuid.uuid4().hex[:10]}"
    accel.create_bucket(Bucket=bucket)
    _changed_on_nodes_seen_within_3_s(stack, accel, bucket)
    assert _subscribed(stack, bucket)


def test_a_bucket_created_on_a_node_is_subscribed_and_other_settings_kept(stack: NativeStack) -> None:
    s = stack.settings
    accel = s3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password)
    node = s3_client(s.minio_endpoints[2], s.minio_root_user, s.minio_root_password)
    bucket = f"it-sub-{uuid.uuid4().hex[:10]}"
    node.create_bucket(Bucket=bucket)
    # Someone's own subscription on the bucket: robolake adds its queue beside it, never over it.
    theirs = {
        "Id": "theirs",
        "QueueArn": stack.webhook_arn,
        "Events": ["s3:ObjectCreated:Put"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "theirs/"}]}},
    }
    node.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [theirs]}
    )
    deadline = time.monotonic() + POLL_S * 3
    while not _subscribed(stack, bucket):
        assert time.monotonic() < deadline, f"bucket {bucket} made on a node was not subscribed within {POLL_S * 3} s"
        time.sleep(0.5)
    _changed_on_nodes_seen_within_3_s(stack, accel, bucket)


def test_the_stacks_own_buckets_are_all_covered(stack: NativeStack) -> None:
    for bucket in ("umi-raw", "umi-processed", "umi-experiments", "lakefs-storage"):
        deadline = time.monotonic() + POLL_S * 3
        while not _subscribed(stack, bucket):
            assert time.monotonic() < deadline, bucket
            time.sleep(0.5)


def test_a_subscription_removed_on_a_node_is_restored_and_nothing_stale_is_served(stack: NativeStack) -> None:
    """Someone PUTs a notification configuration without ours straight on a node: changes made
    then reach the accelerator by no notification, so the bucket's copies are dropped when the
    sweep sees it, and the queue is added back. Through the accelerator it is put back at once."""
    s = stack.settings
    accel = s3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password)
    node = s3_client(s.minio_endpoints[1], s.minio_root_user, s.minio_root_password)
    bucket = f"it-sub-{uuid.uuid4().hex[:10]}"
    accel.create_bucket(Bucket=bucket)
    accel.put_object(Bucket=bucket, Key="k", Body=b"old")
    _read_until_cached(stack, accel, bucket, "k", timeout_s=POLL_S * 3)
    node.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    node.put_object(Bucket=bucket, Key="k", Body=b"new")  # no notification is sent for this one
    deadline = time.monotonic() + POLL_S * 3
    while accel.get_object(Bucket=bucket, Key="k")["Body"].read() != b"new":
        assert time.monotonic() < deadline, f"s3://{bucket}/k served old {POLL_S * 3} s after its subscription went"
        time.sleep(0.2)
    while not _subscribed(stack, bucket):
        assert time.monotonic() < deadline, f"bucket {bucket} was not subscribed again"
        time.sleep(0.2)
    accel.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert _subscribed(stack, bucket)  # checked before the PUT was answered
    _changed_on_nodes_seen_within_3_s(stack, accel, bucket)
