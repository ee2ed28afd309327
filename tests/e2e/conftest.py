"""Fixtures shared by the e2e tests."""

from __future__ import annotations

from typing import Any

import pytest

from robolake.stack.native import NativeStack
from tests.conftest import s3_client


@pytest.fixture(scope="module")
def client(stack: NativeStack) -> Any:
    """boto3 straight to MinIO node 1: checks what the commands left in the buckets."""
    s = stack.settings
    return s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)
