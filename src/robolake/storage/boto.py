"""boto3 for the few synchronous S3 calls outside the data path (benchmark reports, setup).

    client = boto3_client(S3Target.from_settings(settings, settings.minio_endpoints[0]))
    with boto_errors("PUT", bucket, key, client_target, hint="the report is kept in benchmarks/<run-id>"):
        client.put_object(Bucket=bucket, Key=key, Body=data)

Why boto3 here and not AsyncS3: these are a handful of calls per command, where boto3's ~1.5 ms
of CPU per request does not matter and a well-kept library beats ours (see the package
docstring for which client does what). `boto_errors` is the boundary: botocore's exceptions
become robolake's through the same table AsyncS3 uses (`errors.error_for`), with
`raise ... from exc`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from robolake.storage.errors import error_for, no_answer
from robolake.storage.s3 import S3Target


def boto3_client(
    target: S3Target,
    *,
    max_pool_connections: int = 10,
    max_attempts: int = 3,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 60.0,
) -> Any:
    """A path-style boto3 S3 client for `target` (MinIO and the accelerator need path style)."""
    config = Config(
        s3={"addressing_style": "path"},
        max_pool_connections=max_pool_connections,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    return boto3.client(
        "s3",
        endpoint_url=target.endpoint,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        region_name=target.region,
        config=config,
    )


@contextlib.contextmanager
def boto_errors(method: str, bucket: str, key: str, target: S3Target, *, hint: str = "") -> Iterator[None]:
    """Translate botocore's exceptions inside the block into robolake's, naming bucket/key and what to do."""
    named = f"{bucket}/{key}" if key else bucket
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(error.get("Code", ""))
        if code.isdigit():  # HEAD answers carry no body: botocore reports the status as the code
            code = {"404": "NoSuchKey"}.get(code, "")
        message = str(error.get("Message", ""))
        raise error_for(
            method, named, target.endpoint, status, code, message, access_key=target.access_key, hint=hint
        ) from exc
    except (BotoConnectionError, HTTPClientError) as exc:
        raise no_answer(method, named, target.endpoint, exc, hint=hint) from exc
    except BotoCoreError as exc:
        raise no_answer(method, named, target.endpoint, exc, hint=hint, what="not sent") from exc
