"""Putting files into the lake (and fetching them): S3 clients, layout, verified uploader, downloader.

    upload_tree(settings_or_target, local_dir, bucket, prefix, *, concurrency, ...) -> UploadSummary
    upload_items(settings_or_target, items, *, options, progress) -> UploadSummary
    fetch_url(url, dest_dir, *, sha256, progress) -> Path           (resumable HTTP download)

Which S3 client does what (one answer per job; anything else is a bug to fix, not a fourth way):

  boto3         the default, for synchronous calls off the data path, a few per command:
                benchmark reports (bench/results.py) and, by the same rule, the stack's bucket
                setup. ``boto`` builds the client and maps botocore's errors to ours. Also what
                tests and users reach for.
  AsyncS3       (``s3``: aiohttp + robolake.sigv4) asyncio traffic with request bodies and S3's
                XML operations at volume: the uploader (single and multipart PUT, listings),
                ingest, the benchmarks' setup and their PUT/HEAD/LIST drivers. http and https.
                Never for large response bodies (it reads them whole).
  ObjectReader  (``reader``: raw keep-alive HTTP/1.1 over asyncio's BufferedProtocol) GET,
                ranged GET and HEAD at volume: the benchmarks' GET drivers, video streaming,
                the accelerator's batch client. Plain http only.
  minio-py      not here. stack/bootstrap.py uses it to create buckets, write prefix markers
                and set bucket notifications, all of which boto3 does (create_bucket,
                put_object, put_bucket_notification_configuration with MinIO's queue ARN).

Why the two hand-written clients: measured with ``python -m robolake.bench.clients`` against
MinIO node 1 of a test stack (3 nodes, erasure coded, all on this 2-core machine; Python 3.11,
uvloop 0.23, boto3 1.44, aiohttp 3.14; 5 s cells, three runs, load average 1-7 from other jobs,
so the rates are the busy servers'; the CPU is the client process's own, per request):

  4 KiB GET                 1 concurrent                 16 concurrent
    boto3 (threads)         190-232 GET/s, 1.55-1.73 ms  327-389 GET/s, 1.55-1.74 ms
    AsyncS3                 271-375 GET/s, 0.39-0.46 ms  397-687 GET/s, 0.33-0.40 ms
    ObjectReader            306-416 GET/s, 0.24-0.25 ms  405-733 GET/s, 0.18-0.22 ms
  4 KiB PUT, CPU/request    boto3 1.9-2.6 ms, AsyncS3 0.45-0.90 ms (rates set by the server)
  64 MiB GET, 1-2 streams   CPU s/GiB: boto3 (iter_chunks) 0.32-0.50, ObjectReader 0.24-0.37,
                            aiohttp streamed (iter_chunked) 1.1-1.4, AsyncS3 (whole body) 1.3-2.3

On a machine the servers share, every millisecond of client CPU is taken from MinIO. AsyncS3
spends a fifth to a third of boto3's per small request (the uploader sends thousands of small
PUTs; bench upload compares its rate with warp's). ObjectReader spends about half of AsyncS3's per
small GET and a quarter to a third of aiohttp's per GiB, which is why the benchmark drivers,
which must measure the storage and not themselves, read with it (bench warp-check holds them to
warp). For a big stream boto3 comes close to ObjectReader; the reason there is mostly that the
callers are asyncio code.

Modules: ``s3`` (AsyncS3), ``reader`` (ObjectReader), ``boto`` (boto3 client, error mapping),
``retry`` (RetryPolicy), ``integrity`` (MD5 / multipart ETag / SHA-256), ``layout`` (keys,
content types, metadata), ``uploader``, ``multipart``, ``download``, ``aio`` (event loop, byte
budget), ``progress`` (TransferProgress and rich bars), ``errors`` (the tree and the one table).
"""

from typing import TYPE_CHECKING

from robolake.lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__ = lazy_exports(
    __name__,
    {
        "fetch_url": "download",
        "DownloadError": "errors",
        "IntegrityError": "errors",
        "LocalFileChangedError": "errors",
        "NoSuchBucketError": "errors",
        "S3Error": "errors",
        "StorageError": "errors",
        "UploadIncompleteError": "errors",
        "TransferProgress": "progress",
        "RetryPolicy": "retry",
        "is_retryable": "retry",
        "AsyncS3": "s3",
        "ObjectInfo": "s3",
        "S3Target": "s3",
        "normalise_endpoint": "s3",
        "UploadFailure": "uploader",
        "UploadItem": "uploader",
        "UploadOptions": "uploader",
        "UploadSummary": "uploader",
        "collect_tree": "uploader",
        "upload_items": "uploader",
        "upload_items_async": "uploader",
        "upload_tree": "uploader",
    },
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
