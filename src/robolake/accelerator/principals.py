"""A team's users as the accelerator knows them: the users file, and the MinIO policies robolake attaches.

    <state_dir>/accelerator/users.json   0600, written by `robolake users` (robolake.stack.users)
        {"users": {"alice": {"secret": "...", "policy": "bucket:umi-raw:ro",
                             "minio_policy": "robolake-bucket-umi-raw-ro"}}}

The file holds each user's secret because the accelerator verifies their SigV4 signatures
itself before it may answer from its cache (robolake.sigv4). It is written atomically
(`.partial`, then `os.replace`), so a reader sees the old file or the new one, never half of one.

Every policy robolake attaches (`policy_document`) grants or withholds whole buckets: that is
what lets the accelerator take MinIO's answer for one object of a bucket as its answer for every
object of that bucket (robolake.accelerator.access).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from robolake.errors import ConfigError, StateError

USERS_FILE = "users.json"
POLICY_PREFIX = "robolake-"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's bucket naming rules (no dots rules beyond)
READ_ACTIONS = ("s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads")


def users_path(state_root: Path) -> Path:
    """Where the stack in `state_root` keeps its users file (the accelerator reads it from there)."""
    return state_root / "accelerator" / USERS_FILE


@dataclasses.dataclass(frozen=True)
class Policy:
    """A policy as `users add --policy` names it: readonly, readwrite, bucket:NAME or bucket:NAME:ro."""

    spec: str
    bucket: str = ""  # "" for the cluster-wide ones
    read_only: bool = True

    @classmethod
    def parse(cls, spec: str) -> Policy:
        if spec == "readonly":
            return cls(spec)
        if spec == "readwrite":
            return cls(spec, read_only=False)
        kind, _, rest = spec.partition(":")
        bucket, _, mode = rest.partition(":")
        if kind == "bucket" and _BUCKET.fullmatch(bucket) and mode in ("", "ro"):
            return cls(spec, bucket, read_only=mode == "ro")
        raise ConfigError(
            f"policy {spec!r} is not one robolake knows; use readonly, readwrite, bucket:NAME (read and "
            "write one bucket) or bucket:NAME:ro (read one bucket), NAME a bucket name like umi-raw"
        )

    @property
    def minio_name(self) -> str:
        """The name of the MinIO policy robolake keeps for it."""
        if not self.bucket:
            return POLICY_PREFIX + self.spec
        return f"{POLICY_PREFIX}bucket-{self.bucket}" + ("-ro" if self.read_only else "")

    def document(self) -> dict[str, Any]:
        """The IAM policy document: whole buckets only (a bucket's ARN and `bucket/*`)."""
        names = [self.bucket] if self.bucket else ["*"]
        resources = [f"arn:aws:s3:::{n}" for n in names] + [f"arn:aws:s3:::{n}/*" for n in names]
        actions = list(READ_ACTIONS) if self.read_only else ["s3:*"]
        statements: list[dict[str, Any]] = [{"Effect": "Allow", "Action": actions, "Resource": resources}]
        if self.bucket:  # bucket-scoped users may still see which buckets exist (aws s3 ls)
            statements.append({"Effect": "Allow", "Action": ["s3:ListAllMyBuckets"], "Resource": ["arn:aws:s3:::*"]})
        return {"Version": "2012-10-17", "Statement": statements}


@dataclasses.dataclass(frozen=True)
class User:
    """One user of the users file."""

    name: str
    secret: str = dataclasses.field(repr=False)
    policy: str
    minio_policy: str


def load_users(path: Path) -> dict[str, User]:
    """The users of the file at `path`; none when it does not exist."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: User(name, str(u["secret"]), str(u["policy"]), str(u["minio_policy"]))
            for name, u in dict(raw.get("users") or {}).items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StateError(
            f"the users file {str(path)!r} cannot be read ({type(exc).__name__}); restore it, or remove it "
            "and add the users again with `robolake users add`"
        ) from exc


def save_users(path: Path, users: dict[str, User]) -> None:
    """Write the users file atomically, mode 0600."""
    doc = {
        "users": {
            u.name: {"secret": u.secret, "policy": u.policy, "minio_policy": u.minio_policy} for u in users.values()
        }
    }
    tmp = path.with_suffix(".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:
        raise StateError(f"cannot write the users file {str(path)!r}: {exc.strerror}") from exc
