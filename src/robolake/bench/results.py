"""Where benchmark results go: a local run directory and umi-experiments/benchmarks/<run-id>/.

The bucket copy goes straight to MinIO node 1 with boto3 (a few PUTs per run; see the storage
package docstring for which S3 client does what). botocore's errors become robolake's at this
boundary (`storage.boto.boto_errors`), naming the bucket and key and saying where the local
copy is, so a stopped stack costs the upload, never the results.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

from robolake.config import Settings
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.errors import S3Error
from robolake.storage.s3 import S3Target

RESULTS_BUCKET = "umi-experiments"


def new_run_id(name: str) -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{name}-{secrets.token_hex(3)}"


def results_key(run_id: str, name: str) -> str:
    return f"benchmarks/{run_id}/{name}"


def results_target(settings: Settings) -> S3Target:
    """Where the results bucket is read and written: MinIO node 1, with the stack's root credentials."""
    return S3Target.from_settings(settings, settings.minio_endpoints[0])


def save(settings: Settings, run_id: str, out_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write `files` to out_dir/run_id and upload them; return where they went."""
    local = out_dir / run_id
    local.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (local / name).write_bytes(data)
    target = results_target(settings)
    client = boto3_client(target)
    hint = (
        f"the results are saved in {str(local)!r}; start the stack (robolake stack up) and run the "
        "benchmark again to store them in the bucket too"
    )
    for name, data in files.items():
        key = results_key(run_id, name)
        with boto_errors("PUT", RESULTS_BUCKET, key, target, hint=hint):
            client.put_object(Bucket=RESULTS_BUCKET, Key=key, Body=data)
    return [str(local), f"s3://{RESULTS_BUCKET}/benchmarks/{run_id}/"]


def fetch(settings: Settings, run_id: str) -> bytes | None:
    """The stored results.json of `run_id`, or None when the bucket has no such run (or does not answer)."""
    target = results_target(settings)
    key = results_key(run_id.strip("/"), "results.json")
    client = boto3_client(target, max_attempts=1, connect_timeout_s=3.0)
    try:
        with boto_errors("GET", RESULTS_BUCKET, key, target):
            body: bytes = client.get_object(Bucket=RESULTS_BUCKET, Key=key)["Body"].read()
    except S3Error:  # missing, or no stack: the caller says the run was found nowhere
        return None
    return body


def as_json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
