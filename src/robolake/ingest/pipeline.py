"""Ingest UMI data into the lake: check everything first, then upload, then write the manifest.

    result = ingest("cup_in_the_wild.zarr.zip", settings)                    # a replay buffer
    result = ingest("https://host/cup_in_the_wild_mp4s.zip", settings, sha256="...")
    result = ingest("umi_data", settings)                                     # a generated layout

Order, so that a bad input never leaves anything behind:
  1. a URL is downloaded (resumable, checksummed) into the cache; a local file is checked against
     `sha256` when given;
  2. the source is validated and planned in full (sources.py): per-episode JSON is derived
     into a staging directory, MP4s are probed, manifests checked. Any problem raises
     DatasetFormatError naming the file, and nothing has been written to the lake;
  3. the objects are uploaded, verified, by the storage uploader (a rerun skips what is stored);
  4. last, ``umi-raw/manifests/<dataset>.json``, so a manifest only exists for a complete dataset.

The dataset manifest holds no time stamps: ingesting the same input again produces the same
bytes, and the rerun writes nothing. A manifest already in the lake is merged (the replay buffer
and the MP4 zip of one UMI task both describe one dataset).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.ingest.sources import (
    PlannedObject,
    SourcePlan,
    default_dataset_name,
    detect_kind,
    plan_generated,
    plan_replay_buffer,
    plan_video_folder,
    plan_video_zip,
)
from robolake.keys import check_dataset_name
from robolake.storage.aio import run_async
from robolake.storage.download import ByteProgress, check_sha256, fetch_url, file_sha256, is_url
from robolake.storage.errors import S3Error
from robolake.storage.layout import RAW_BUCKET, SCHEMA_VERSION, content_type_for, manifest_key
from robolake.storage.progress import ProgressCallback
from robolake.storage.s3 import AsyncS3, S3Target
from robolake.storage.uploader import UploadItem, UploadOptions, UploadSummary, upload_items
from robolake.umi.errors import DatasetFormatError

MANIFEST_SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class IngestResult:
    dataset: str
    source: str
    kind: str
    episodes: int
    objects: int
    manifest: str  # s3://umi-raw/manifests/<dataset>.json
    upload: UploadSummary
    manifest_written: bool

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["upload"] = self.upload.as_dict()
        return doc


def _noop(_: str) -> None:
    return None


def ingest(
    source: str | Path,
    settings: Settings,
    *,
    dataset_name: str | None = None,
    sha256: str | None = None,
    endpoint: str | None = None,
    concurrency: int = 32,
    download_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    download_progress: ByteProgress | None = None,
    status: Callable[[str], None] = _noop,
) -> IngestResult:
    """Validate `source` completely, then upload it into the lake layout; see the module docstring."""
    expected = check_sha256(sha256)
    target = S3Target.from_settings(settings, endpoint)
    path, shown_source = _local_source(
        source, expected, download_dir or settings.cache_dir / "downloads", download_progress, status
    )
    kind = detect_kind(path)
    if kind == "lerobot":  # a lakeFS commit, which this layer does not make
        raise ConfigError(
            f"{str(path)!r} is a LeRobot v3.0 folder: ingest it with `robolake ingest` or "
            "robolake.ml.lerobot_ingest.ingest_lerobot, which commit it to lakeFS"
        )
    dataset = dataset_name or default_dataset_name(path, kind)
    check_dataset_name(dataset, "dataset name (--name)")
    work = settings.cache_dir / "ingest"
    work.mkdir(parents=True, exist_ok=True)
    options = UploadOptions(concurrency=concurrency)
    with tempfile.TemporaryDirectory(prefix=f"{dataset}-", dir=work) as tmp:
        staging = Path(tmp)
        plan = _plan(kind, path, dataset, staging, status)
        status(f"{len(plan.objects)} objects checked; reading the lake's manifest for {dataset!r}")
        manifest = build_manifest(dataset, plan, shown_source, run_async(_read_manifest(target, dataset)))
        items = [_item(obj, dataset) for obj in plan.objects]
        status(f"uploading {len(items)} objects to {target.endpoint}")
        summary = upload_items(
            target, items, options=options, progress=progress, destination=f"s3://{RAW_BUCKET}/*/{dataset}/"
        )
        summary.raise_for_failures()
        final = _put_manifest(target, dataset, manifest, staging / "dataset-manifest.json", options)
    return IngestResult(
        dataset=dataset,
        source=shown_source,
        kind=plan.kind,
        episodes=plan.episodes,
        objects=len(items) + 1,
        manifest=f"s3://{RAW_BUCKET}/{manifest_key(dataset)}",
        upload=_added(summary, final),
        manifest_written=final.objects == 1,
    )


def _local_source(
    source: str | Path,
    expected: str | None,
    download_dir: Path,
    progress: ByteProgress | None,
    status: Callable[[str], None],
) -> tuple[Path, str]:
    """The local file (a URL downloaded first, a file checked against `expected`) and how the lake names it."""
    if is_url(str(source)):
        url = str(source)
        status(f"downloading {url}")
        return fetch_url(url, download_dir, sha256=expected, progress=progress), url
    path = Path(source).expanduser()
    if expected is not None:
        if not path.is_file():
            raise ConfigError(f"--sha256 checks a file, but {str(path)!r} is not a file")
        actual = file_sha256(path)
        if actual != expected:
            raise DatasetFormatError(
                path, f"has sha256 {actual}, expected {expected}", "nothing was uploaded; check --sha256 or the file"
            )
    return path, path.name or str(path)  # no machine paths in the lake


def _put_manifest(
    target: S3Target, dataset: str, manifest: bytes, staged: Path, options: UploadOptions
) -> UploadSummary:
    """The dataset manifest, last, so that one only exists for a complete dataset."""
    staged.write_bytes(manifest)
    item = UploadItem(
        bucket=RAW_BUCKET,
        key=manifest_key(dataset),
        path=staged,
        size=len(manifest),
        content_type="application/json",
        metadata={"dataset": dataset, "schema-version": SCHEMA_VERSION},
    )
    final = upload_items(target, [item], options=options)
    final.raise_for_failures()
    return final


def _added(summary: UploadSummary, final: UploadSummary) -> UploadSummary:
    """The objects' upload and the manifest's as one summary."""
    return dataclasses.replace(
        summary,
        objects=summary.objects + final.objects,
        skipped=summary.skipped + final.skipped,
        bytes=summary.bytes + final.bytes,
        seconds=round(summary.seconds + final.seconds, 3),
        retries=summary.retries + final.retries,
    )


def _plan(kind: str, path: Path, dataset: str, staging: Path, status: Callable[[str], None]) -> SourcePlan:
    if kind == "replay_buffer":
        return plan_replay_buffer(path, dataset, staging, status)
    if kind == "video_zip":
        return plan_video_zip(path, dataset, staging, status)
    if kind == "video_folder":
        return plan_video_folder(path, dataset, status)
    return plan_generated(path, dataset, status)


def _item(obj: PlannedObject, dataset: str) -> UploadItem:
    meta = {"dataset": dataset}
    if obj.episode is not None:
        meta["episode"] = str(obj.episode)
    if obj.kind in ("pose", "gripper", "video"):
        meta["sensor"] = obj.kind
        meta["schema-version"] = SCHEMA_VERSION
    return UploadItem(
        bucket=obj.bucket,
        key=obj.key,
        path=obj.path,
        size=obj.size,
        content_type=content_type_for(obj.key),
        metadata=meta,
    )


async def _read_manifest(target: S3Target, dataset: str) -> dict[str, Any] | None:
    async with AsyncS3(target, connections=2) as s3:
        try:
            body = await s3.call(lambda: s3.get_object(RAW_BUCKET, manifest_key(dataset)))
        except S3Error as exc:
            if exc.code == "NoSuchKey" or exc.status == 404:
                return None
            raise
    try:
        doc = json.loads(body)
    except ValueError:
        return None  # unreadable: replaced by the new one
    return doc if isinstance(doc, dict) and doc.get("schema_version") == MANIFEST_SCHEMA else None


def build_manifest(dataset: str, plan: SourcePlan, source: str, previous: dict[str, Any] | None) -> bytes:
    """The dataset manifest (deterministic bytes), merged into `previous` when there is one."""
    sources: dict[str, Any] = dict(previous.get("sources", {})) if previous else {}
    sources[plan.kind] = {"source": source, **plan.info}
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for old in (previous or {}).get("objects", []):
        if isinstance(old, dict) and "bucket" in old and "key" in old:
            objects[(old["bucket"], old["key"])] = old
    for obj in plan.objects:
        entry: dict[str, Any] = {
            "bucket": obj.bucket,
            "key": obj.key,
            "size_bytes": obj.size,
            "sha256": obj.sha256,
            "kind": obj.kind,
        }
        if obj.episode is not None:
            entry["episode"] = obj.episode
        objects[(obj.bucket, obj.key)] = entry
    listed = [objects[k] for k in sorted(objects)]
    episodes = {o["episode"] for o in listed if "episode" in o}
    doc = {
        "schema_version": MANIFEST_SCHEMA,
        "dataset": dataset,
        "episodes": len(episodes),
        "total_bytes": sum(int(o["size_bytes"]) for o in listed),
        "sources": sources,
        "objects": listed,
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
