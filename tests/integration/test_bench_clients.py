"""The S3 client measurement (python -m robolake.bench.clients) against the real stack, at smoke size."""

from __future__ import annotations

from typing import Any

import pytest

from robolake.bench import clients
from robolake.config import Settings
from tests.conftest import s3_client

pytestmark = pytest.mark.integration
SMOKE = clients.ClientParams(
    objects=20, large_bytes=2 << 20, duration_s=0.3, concurrency=(1, 4), large_concurrency=(1,)
)


@pytest.fixture(scope="module")
def doc(settings: Settings) -> dict[str, Any]:
    return clients.run(settings, SMOKE, lambda _: None)


def test_every_client_is_measured_for_every_operation(doc: dict[str, Any], settings: Settings) -> None:
    assert doc["endpoint"] == settings.minio_endpoints[0]
    cells = {(r["op"], r["concurrency"], r["client"]): r for r in doc["rows"]}
    expected = {
        **{
            (op, c, client): None
            for op in ("small GET",)
            for c in (1, 4)
            for client in ("boto3", "AsyncS3", "ObjectReader")
        },
        **{("small PUT", c, client): None for c in (1, 4) for client in ("boto3", "AsyncS3")},
        **{("large GET", 1, client): None for client in ("boto3", "AsyncS3", "ObjectReader")},
        **{
            ("signer", c, f"ObjectReader, {s}"): None
            for c in (1, 4)
            for s in ("robolake.sigv4.sign", "botocore S3SigV4Auth")
        },
    }
    assert set(cells) == set(expected)
    for row in doc["rows"]:
        assert row["requests"] > 0 and row["per_s"] > 0 and row["cpu_ms_per_request"] > 0, row
    for client in ("boto3", "AsyncS3", "ObjectReader"):
        large = cells[("large GET", 1, client)]
        assert large["mib_per_s"] > 0 and (large["cpu_s_per_gib"] is None or large["cpu_s_per_gib"] > 0)
    assert "| small GET | 1 | boto3 |" in clients.markdown(doc)


def test_the_objects_are_deleted(doc: dict[str, Any], settings: Settings) -> None:
    client = s3_client(settings.minio_endpoints[0], settings.minio_root_user, settings.minio_root_password)
    assert client.list_objects_v2(Bucket=clients.BENCH_BUCKET, Prefix=doc["run_id"]).get("KeyCount", 0) == 0
