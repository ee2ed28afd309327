"""Where benchmark results go: a local run directory and umi-experiments/benchmarks/<run-id>/."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from robolake.config import Settings

RESULTS_BUCKET = "umi-experiments"


def new_run_id(name: str) -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{name}-{secrets.token_hex(3)}"


def save(settings: Settings, run_id: str, out_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write `files` to out_dir/run_id and upload them; return where they went."""
    local = out_dir / run_id
    local.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (local / name).write_bytes(data)
    client = boto3.client(
        "s3", endpoint_url=settings.minio_endpoints[0], aws_access_key_id=settings.minio_root_user,
        aws_secret_access_key=settings.minio_root_password, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    for name, data in files.items():
        client.put_object(Bucket=RESULTS_BUCKET, Key=f"benchmarks/{run_id}/{name}", Body=data)
    return [str(local), f"s3://{RESULTS_BUCKET}/benchmarks/{run_id}/"]


def as_json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
