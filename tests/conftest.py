"""A real stack (3 MinIO nodes + lakeFS) for the whole test session, isolated in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from robolake.config import Settings
from robolake.stack.native import NativeStack
from tests.stackutil import isolated_settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    state_dir: Path = tmp_path_factory.mktemp("stack") / "state"
    native = NativeStack(isolated_settings(state_dir))
    try:
        native.up()
        yield native
    finally:
        native.down(volumes=True)


@pytest.fixture(scope="session")
def settings(stack: NativeStack) -> Settings:
    return stack.settings


def s3_client(endpoint: str, access_key: str, secret_key: str, *, checksums: str = "when_required", **config: str):  # type: ignore[no-untyped-def]
    """boto3, path-style. `checksums="when_supported"` is botocore's default, what aws-cli users have;
    it is stated, not defaulted, so that AWS_*_CHECKSUM_* in the environment cannot weaken it."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
            **config,
        ),
    )


@pytest.fixture(scope="session")
def node_clients(settings: Settings) -> list:  # type: ignore[type-arg]
    return [s3_client(e, settings.minio_root_user, settings.minio_root_password) for e in settings.minio_endpoints]
