"""Lineage: which training run read which commit, kept as ``s3://umi-experiments/results/<run-id>/run.json``.

    record = RunRecord.for_dataset(dataset, seed=7)
    write_run_record(settings, record)          # PUT through the accelerator, then read back and compared
    [r.run_id for r in list_runs(settings, commit="c0ffee...")]

A record holds the commit id (what was read), the ref as given (what was asked for), the dataset
path, the sampler parameters, the seed and the creation time (UTC, ISO 8601). Records are
written once and never changed; the run id starts with the creation time, so listing them in
key order lists them oldest first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from robolake.config import Settings
from robolake.errors import ConfigError, IntegrityError
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.layout import EXPERIMENTS_BUCKET
from robolake.storage.s3 import S3Target

RESULTS_PREFIX = "results/"
RECORD_NAME = "run.json"


class HasLineage(Protocol):
    def lineage(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One training run's inputs: the dataset at a commit, the sampler and the seed."""

    run_id: str
    commit_id: str
    ref: str
    repo: str
    path: str
    sampler: dict[str, Any]
    seed: int
    created: str
    dataset: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_dataset(cls, dataset: HasLineage, *, seed: int, run_id: str | None = None) -> RunRecord:
        now = datetime.now(UTC)
        lineage = dataset.lineage()
        return cls(
            run_id=run_id or f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
            commit_id=lineage["commit_id"],
            ref=lineage["ref"],
            repo=lineage["repo"],
            path=lineage["path"],
            sampler=lineage["sampler"],
            seed=seed,
            created=now.isoformat(timespec="seconds"),
            dataset={k: v for k, v in lineage.items() if k not in ("commit_id", "ref", "repo", "path", "sampler")},
        )

    @property
    def key(self) -> str:
        return record_key(self.run_id)

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> RunRecord:
        try:
            obj = json.loads(raw)
            return cls(**{f.name: obj[f.name] for f in dataclasses.fields(cls) if f.name in obj})
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where} is not a run record ({exc})") from exc


def record_key(run_id: str) -> str:
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ConfigError(f"run id {run_id!r} must be one non-empty path segment")
    return f"{RESULTS_PREFIX}{run_id}/{RECORD_NAME}"


def _target(settings: Settings) -> S3Target:
    return S3Target.from_settings(settings)  # the accelerator, with the stack's credentials


def write_run_record(settings: Settings, record: RunRecord) -> str:
    """PUT the record through the accelerator and read it back; return its s3:// URI."""
    target, body = _target(settings), record.to_json()
    client = boto3_client(target)
    hint = "the run record could not be kept; is the stack up (robolake stack status)?"
    with boto_errors("PUT", EXPERIMENTS_BUCKET, record.key, target, hint=hint):
        put = client.put_object(Bucket=EXPERIMENTS_BUCKET, Key=record.key, Body=body, ContentType="application/json")
    with boto_errors("GET", EXPERIMENTS_BUCKET, record.key, target, hint=hint):
        back = client.get_object(Bucket=EXPERIMENTS_BUCKET, Key=record.key)["Body"].read()
    # The ETag of a single PUT is the MD5 MinIO computed of what it stored; the read-back is what readers get.
    if str(put.get("ETag", "")).strip('"') != hashlib.md5(body).hexdigest() or back != body:
        raise IntegrityError(
            f"run record s3://{EXPERIMENTS_BUCKET}/{record.key}: stored or read-back bytes differ from the "
            f"{len(body)} written (ETag {put.get('ETag')!r}, {len(back)} bytes back); write it again"
        )
    return f"s3://{EXPERIMENTS_BUCKET}/{record.key}"


def list_runs(settings: Settings, *, commit: str | None = None) -> Iterator[RunRecord]:
    """Every run record, oldest first; with `commit`, those whose commit id starts with it."""
    target = _target(settings)
    client = boto3_client(target)
    with boto_errors("LIST", EXPERIMENTS_BUCKET, RESULTS_PREFIX, target):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=EXPERIMENTS_BUCKET, Prefix=RESULTS_PREFIX)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    for key in sorted(keys):
        parts = key.removeprefix(RESULTS_PREFIX).split("/")
        if len(parts) != 2 or parts[1] != RECORD_NAME:
            continue  # other results (and the prefix marker) live beside the run records
        with boto_errors("GET", EXPERIMENTS_BUCKET, key, target):
            raw = client.get_object(Bucket=EXPERIMENTS_BUCKET, Key=key)["Body"].read()
        record = RunRecord.from_json(raw, f"s3://{EXPERIMENTS_BUCKET}/{key}")
        if commit is None or record.commit_id.startswith(commit):
            yield record
