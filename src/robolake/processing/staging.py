"""Cleaning the jobs' staging area, s3://umi-processed/staging/<job>/<parameters>/...

Staged task results are what makes a re-run cheap (the same input at the same parameters is not
processed again); they are never part of a commit, so deleting them loses nothing but that
reuse: a later run recomputes what it misses. A job still running needs what it staged until it
commits, hence the age limit (by the objects' Last-Modified, MinIO's clock).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.processing.frames import STAGING_BUCKET
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.s3 import S3Target

JOBS = ("replay-buffer", "lerobot", "transcode")
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """'30m', '12h', '7d', '0s' -> seconds."""
    match = _AGE.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"--older-than {text!r} is not an age: a number and s, m, h or d, e.g. 7d or 12h")
    return float(match[1]) * _UNIT_S[match[2]]


@dataclasses.dataclass(frozen=True)
class Cleaned:
    prefix: str
    deleted: int
    deleted_bytes: int
    kept: int
    dry_run: bool
    older_than_s: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def clean_staging(settings: Settings, *, older_than_s: float, job: str | None = None, dry_run: bool = False) -> Cleaned:
    """Delete staged results last written more than `older_than_s` ago (of `job`, or of every job)."""
    if job is not None and job not in JOBS:
        raise ConfigError(f"--job {job!r} is not one of {', '.join(JOBS)}")
    target = S3Target.from_settings(settings)
    client = boto3_client(target, max_pool_connections=2)
    prefix = f"staging/{job}/" if job else "staging/"
    cutoff = time.time() - older_than_s
    old: list[tuple[str, int]] = []
    kept = 0
    with boto_errors("LIST", STAGING_BUCKET, prefix, target, hint="staged results are in the umi-processed bucket"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=STAGING_BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["LastModified"].timestamp() < cutoff:
                    old.append((item["Key"], int(item["Size"])))
                else:
                    kept += 1
    if not dry_run:
        for start in range(0, len(old), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key, _ in old[start : start + 1000]]
            with boto_errors("DELETE", STAGING_BUCKET, prefix, target):
                answer = client.delete_objects(Bucket=STAGING_BUCKET, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise RobolakeError(
                    f"MinIO refused to delete s3://{STAGING_BUCKET}/{first.get('Key')}: {first.get('Message')}; "
                    "nothing else is affected, run the command again"
                )
    return Cleaned(
        prefix=f"s3://{STAGING_BUCKET}/{prefix}",
        deleted=len(old),
        deleted_bytes=sum(size for _, size in old),
        kept=kept,
        dry_run=dry_run,
        older_than_s=older_than_s,
    )
