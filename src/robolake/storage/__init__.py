"""Putting files into the lake (and fetching them): S3 client, layout, verified uploader, downloader.

    upload_tree(settings_or_target, local_dir, bucket, prefix, *, concurrency, ...) -> UploadSummary
    upload_items(settings_or_target, items, *, options, progress) -> UploadSummary
    fetch_url(url, dest_dir, *, sha256, progress) -> Path           (resumable HTTP download)

Modules: ``s3`` (asyncio S3 client over aiohttp with our SigV4 signer), ``retry`` (RetryPolicy),
``integrity`` (MD5 / multipart ETag / SHA-256), ``layout`` (keys, content types, metadata),
``uploader``, ``download``, ``progress`` (rich bars), ``errors``.
"""

from robolake.storage.download import fetch_url
from robolake.storage.errors import (
    DownloadError,
    IntegrityError,
    LocalFileChangedError,
    NoSuchBucketError,
    S3Error,
    StorageError,
    UploadIncompleteError,
)
from robolake.storage.progress import TransferProgress
from robolake.storage.retry import RetryPolicy, is_retryable
from robolake.storage.s3 import AsyncS3, ObjectInfo, S3Target, normalise_endpoint
from robolake.storage.uploader import (
    UploadFailure,
    UploadItem,
    UploadOptions,
    UploadSummary,
    collect_tree,
    upload_items,
    upload_items_async,
    upload_tree,
)

__all__ = [
    "AsyncS3",
    "DownloadError",
    "IntegrityError",
    "LocalFileChangedError",
    "NoSuchBucketError",
    "ObjectInfo",
    "RetryPolicy",
    "S3Error",
    "S3Target",
    "StorageError",
    "TransferProgress",
    "UploadFailure",
    "UploadIncompleteError",
    "UploadItem",
    "UploadOptions",
    "UploadSummary",
    "collect_tree",
    "fetch_url",
    "is_retryable",
    "normalise_endpoint",
    "upload_items",
    "upload_items_async",
    "upload_tree",
]
