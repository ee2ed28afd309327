"""Fixtures shared by the integration tests: lakeFS and S3 clients for the session stack, throwaway branches."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from robolake.stack.native import NativeStack
from robolake.versioning import LakeFSClient
from robolake.versioning.errors import NotFoundError
from tests.conftest import s3_client

REPO = "robotics-data"
MakeBranch = Callable[..., str]


@pytest.fixture
def client(stack: NativeStack) -> Iterator[LakeFSClient]:
    with LakeFSClient.from_settings(stack.settings) as lakefs:
        yield lakefs


@pytest.fixture
def branch(client: LakeFSClient, request: pytest.FixtureRequest) -> Iterator[MakeBranch]:
    """Create uniquely named branches (from main, or from `source`); delete them afterwards."""
    made: list[str] = []
    tag = "hook-" if request.module.__name__.endswith("test_hooks") else ""

    def make(label: str, source: str = "main") -> str:
        name = f"t-{tag}{label}-{uuid.uuid4().hex[:8]}"
        client.create_branch(REPO, name, source)
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(NotFoundError):
            client.delete_branch(REPO, name)


@pytest.fixture(scope="module")
def clients(stack: NativeStack) -> dict[str, Any]:
    """boto3 against MinIO node 1 ("direct") and against the accelerator, root credentials."""
    s = stack.settings
    return {
        "direct": s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password),
        "accelerator": s3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password),
    }
