"""A task's video read through the accelerator vs straight from a MinIO node (`bench process --compare-read-from`).

What a replay-buffer task does for its video, timed alone: ``read_input`` (a GET of the object's
physical address, sha256 checked, written to a temp file, a fresh client as a worker has), for
the bench's own videos and for one large object of a 2.7K GoPro clip's size (48 MB by default,
random bytes: only its size matters). Each object is read ``repeats`` times by each path, the two
paths alternating and the order flipped every round, so a warm page cache or a busy moment falls
on both. Reported: the median MB/s of each path and their ratio, nodes over accelerator.

Objects under the accelerator's size limit (1 MB by default) are served from its cache after the
first read; larger ones pass through it uncached, one more hop than reading from a node.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from robolake.config import Settings
from robolake.processing.inputs import InputObject, read_input
from robolake.storage.s3 import S3Target
from robolake.versioning import LakeFSClient
from robolake.versioning.dataset import hash_file


def _timed_reads(
    objects: list[InputObject], targets: dict[str, list[S3Target]], repeats: int, tmp: Path
) -> dict[str, float]:
    """Median MB/s per path over `repeats` rounds of reading every object once by each path."""
    rates: dict[str, list[float]] = {name: [] for name in targets}
    size = sum(o.size_bytes for o in objects)
    for round_ in range(repeats):
        names = list(targets) if round_ % 2 == 0 else list(reversed(targets))
        for name in names:
            started = time.monotonic()
            for i, obj in enumerate(objects):
                pool = targets[name]
                read_input(pool[i % len(pool)], obj, tmp / "read.bin")
            rates[name].append(size / (time.monotonic() - started) / 1e6)
    return {name: round(statistics.median(values), 2) for name, values in rates.items()}


def _large_object(client: LakeFSClient, repo: str, branch: str, path: str, size_bytes: int, tmp: Path) -> InputObject:
    local = tmp / "large.bin"
    with open(local, "wb") as fh:
        for _ in range(size_bytes // (1 << 20)):
            fh.write(os.urandom(1 << 20))
    md5, sha = hash_file(local)
    with open(local, "rb") as fh:
        client.upload_object(repo, branch, path, fh, md5_hex=md5, metadata={"sha256": sha})
    local.unlink()
    return InputObject.from_stat(client.stat_object(repo, branch, path))


def read_paths(
    settings: Settings,
    client: LakeFSClient,
    repo: str,
    branch: str,
    prefix: str,
    *,
    large_mb: int = 48,
    repeats: int = 5,
) -> dict[str, Any]:
    """The read figures (module docstring) for the videos under `prefix` on `branch`, and one large object."""
    videos = [InputObject.from_stat(s) for s in client.list_objects(repo, branch, f"{prefix}/video/")]
    targets = {
        "accelerator": [S3Target.from_settings(settings)],
        "nodes": [S3Target.from_settings(settings, e) for e in settings.minio_endpoints],
    }
    out: dict[str, Any] = {"repeats": repeats}
    with tempfile.TemporaryDirectory(prefix="read-bench-") as tmp:
        large = _large_object(client, repo, branch, f"{prefix}/read-probe/large.bin", large_mb << 20, Path(tmp))
        for label, objects in (("videos", videos), ("large_object", [large])):
            rates = _timed_reads(objects, targets, repeats, Path(tmp))
            out[label] = {
                "objects": len(objects),
                "mean_bytes": sum(o.size_bytes for o in objects) // max(1, len(objects)),
                "accelerator_mb_per_s": rates["accelerator"],
                "nodes_mb_per_s": rates["nodes"],
                "ratio_nodes": round(rates["nodes"] / rates["accelerator"], 3) if rates["accelerator"] else 0.0,
            }
    return out
