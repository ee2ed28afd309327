"""What runs while a fault hits: an upload of many small objects, a read sweep, a lakeFS commit.

Local files are made from a seed, so every object's sha256 is known before it is sent; after
recovery each object is read straight from a MinIO node and compared with it, so no cache can
hide a loss.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import random
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from robolake.config import Settings
from robolake.storage.boto import boto3_client
from robolake.storage.s3 import S3Target

BUCKET = "robolake-reliability"
MIN_BYTES, MAX_BYTES = 256, 4096  # small objects, stored inline in MinIO's xl.meta
VERIFY_WORKERS = 16


def make_tree(root: Path, count: int, seed: int) -> dict[str, str]:
    """`count` files of random bytes under `root` (in folders of 100); return {relative path: sha256}."""
    rng = random.Random(seed)
    hashes: dict[str, str] = {}
    for index in range(count):
        rel = f"d{index // 100:03d}/o{index:05d}.bin"
        data = rng.randbytes(rng.randint(MIN_BYTES, MAX_BYTES))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        hashes[rel] = hashlib.sha256(data).hexdigest()
    return hashes


def s3(
    settings: Settings, endpoint: str, *, attempts: int = 2, timeout_s: float = 10.0, pool: int = VERIFY_WORKERS
) -> Any:
    """A boto3 client as the stack's root user, with short timeouts: a refusal is counted, not waited out."""
    target = S3Target.from_settings(settings, endpoint)
    return boto3_client(
        target,
        max_pool_connections=pool,
        max_attempts=attempts,
        connect_timeout_s=3.0,
        read_timeout_s=timeout_s,
    )


def ensure_bucket(client: Any) -> None:
    try:
        client.head_bucket(Bucket=BUCKET)
    except ClientError:
        client.create_bucket(Bucket=BUCKET)


def _get_sha(client: Any, key: str) -> str | None:
    """sha256 of the object, or None when it is not there (other errors propagate)."""
    try:
        body: bytes = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return hashlib.sha256(body).hexdigest()


def missing_or_wrong(clients: Sequence[Any], expected: Mapping[str, str]) -> list[str]:
    """The keys of `expected` ({key: sha256}) that no node serves with these bytes, read one by one.

    Each node of the cluster is asked in turn (`clients`, one per node): a node that has just
    rejoined can answer NoSuchKey, for a minute or more, for objects written while it was down
    (the other nodes serve them, from the same erasure set), so one node's answer is not the
    cluster's. A key counts as lost only when every node, asked three times, lacks it.
    """

    def check(item: tuple[str, str]) -> str | None:
        key, sha = item
        for attempt in range(3):
            for client in clients:
                try:
                    if _get_sha(client, key) == sha:
                        return None
                except (ClientError, BotoCoreError):
                    pass
            if attempt < 2:
                threading.Event().wait(1.0)
        return key

    with concurrent.futures.ThreadPoolExecutor(VERIFY_WORKERS) as pool:
        return sorted(k for k in pool.map(check, expected.items()) if k is not None)


class ReadSweep:
    """Reads `objects` ({key: sha256}) round and round until stopped; counts answers, refusals, wrong bytes."""

    def __init__(self, client: Any, objects: Mapping[str, str]) -> None:
        self._client = client
        self._objects = list(objects.items())
        self.stop = threading.Event()
        self.reads = self.errors = self.wrong = 0
        self.wrong_keys: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for key, sha in self._objects:
                if self.stop.is_set():
                    return
                self.reads += 1
                try:
                    got = _get_sha(self._client, key)
                except (ClientError, BotoCoreError):
                    self.errors += 1
                    self.stop.wait(0.2)
                    continue
                if got != sha:
                    self.wrong += 1
                    self.wrong_keys.append(key)


class Worker(threading.Thread):
    """A thread that keeps its function's result or exception for the caller."""

    def __init__(self, name: str, fn: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = fn
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # reported in the table, not raised in a thread
            self.error = exc


def prefixed(prefix: str, hashes: Mapping[str, str]) -> dict[str, str]:
    return {f"{prefix}/{rel}": sha for rel, sha in hashes.items()}


def delete_prefix(client: Any, prefix: str) -> None:
    """Remove what a run left under `prefix` (best effort: a leftover costs space, not correctness)."""
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            keys: Iterable[dict[str, Any]] = page.get("Contents", [])
            batch = [{"Key": o["Key"]} for o in keys]
            if batch:
                client.delete_objects(Bucket=BUCKET, Delete={"Objects": batch, "Quiet": True})
    except (ClientError, BotoCoreError):
        return
