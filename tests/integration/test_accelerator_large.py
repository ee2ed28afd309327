"""Large GETs through the accelerator's raw path (robolake.accelerator.splice), in the real stack."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Any

import pytest
import requests

from robolake.accelerator.admin import read_stats
from robolake.stack.native import NativeStack

pytestmark = pytest.mark.integration
BUCKET = "umi-raw"


def _events(stack: NativeStack) -> dict[str, int]:
    answer = read_stats(stack.settings)
    return dict(answer["events"])


def _digest(body: Any) -> str:
    return hashlib.sha256(body.read()).hexdigest()


def test_large_reads_are_spliced_byte_identical(stack: NativeStack, clients: dict[str, Any]) -> None:
    direct, accel = clients["direct"], clients["accelerator"]
    key = f"large/{uuid.uuid4().hex}.mp4"
    data = os.urandom(3 * 1024 * 1024 + 17)
    direct.put_object(Bucket=BUCKET, Key=key, Body=data)
    before = _events(stack)
    first = accel.get_object(Bucket=BUCKET, Key=key)  # the usual path; the accelerator learns the size
    assert _digest(first["Body"]) == hashlib.sha256(data).hexdigest()
    for _ in range(3):
        again = accel.get_object(Bucket=BUCKET, Key=key)
        assert again["ContentLength"] == len(data) and again["ETag"] == first["ETag"]
        assert _digest(again["Body"]) == hashlib.sha256(data).hexdigest()
    part = accel.get_object(Bucket=BUCKET, Key=key, Range="bytes=1048576-3145727")
    assert part["ContentRange"] == f"bytes 1048576-3145727/{len(data)}"
    assert part["Body"].read() == data[1048576:3145728]
    after = _events(stack)
    assert after.get("raw_get_spliced", 0) - before.get("raw_get_spliced", 0) == 4
    assert after.get("raw_get_bytes", 0) - before.get("raw_get_bytes", 0) == 3 * len(data) + 2 * 1024 * 1024


def test_an_object_that_shrank_is_read_new(stack: NativeStack, clients: dict[str, Any]) -> None:
    direct, accel = clients["direct"], clients["accelerator"]
    key = f"large/{uuid.uuid4().hex}.mp4"
    direct.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(2 * 1024 * 1024))
    accel.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # hinted large now
    small = os.urandom(300 * 1024)
    direct.put_object(Bucket=BUCKET, Key=key, Body=small)
    got = accel.get_object(Bucket=BUCKET, Key=key)
    assert got["ContentLength"] == len(small) and got["Body"].read() == small
    direct.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(accel.exceptions.NoSuchKey):
        accel.get_object(Bucket=BUCKET, Key=key)


def test_a_client_leaving_mid_body_costs_the_accelerator_nothing(stack: NativeStack, clients: dict[str, Any]) -> None:
    direct, accel = clients["direct"], clients["accelerator"]
    key = f"large/{uuid.uuid4().hex}.mp4"
    # Larger than loopback's socket buffers can hold (they grow to several MiB each way): with 8
    # MiB a relay could hand every byte to the kernel before the client's close reached it.
    data = os.urandom(48 * 1024 * 1024)
    direct.put_object(Bucket=BUCKET, Key=key, Body=data)
    accel.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    before = _events(stack)
    for _ in range(3):
        body = accel.get_object(Bucket=BUCKET, Key=key)["Body"]
        assert body.read(1000) == data[:1000]
        body.close()  # the connection goes with it, 48 MiB unread
    deadline = time.monotonic() + 20
    while _events(stack).get("raw_get_broken", 0) - before.get("raw_get_broken", 0) < 3:
        assert time.monotonic() < deadline, "the relays of the abandoned reads did not end"
        time.sleep(0.2)
    assert requests.get(f"{stack.settings.accelerator_admin_endpoint}/health", timeout=5).status_code == 200
    assert _digest(accel.get_object(Bucket=BUCKET, Key=key)["Body"]) == hashlib.sha256(data).hexdigest()
