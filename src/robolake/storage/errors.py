"""Errors of the storage layer (S3 client, uploader, downloader).

    RobolakeError                      (robolake.errors)
    ├── AuthError                      403 from the server: bad key or secret (PermissionError)
    ├── ServiceUnavailableError        the endpoint does not answer (ConnectionError)
    └── StorageError                   a storage operation failed for good
        ├── S3Error                    the server answered with an S3 error; `.status`, `.code`
        │   └── NoSuchBucketError      the bucket does not exist (LookupError)
        ├── IntegrityError             bytes written or read do not match their digest
        ├── LocalFileChangedError      a local file changed while it was being uploaded
        ├── UploadIncompleteError      some objects failed after every retry; rerun to resume
        └── DownloadError              a URL could not be fetched, or its checksum is wrong

aiohttp's exceptions never leave the S3 client: connection errors become S3 errors with status 0
(retryable) at the boundary, and the retry policy decides by type and status, never by message.
"""

from __future__ import annotations

from robolake.errors import RobolakeError


class StorageError(RobolakeError):
    """A storage operation failed for good (after any retries)."""


class S3Error(StorageError):
    """An S3 request failed: the server's status and error code, or status 0 for no answer."""

    def __init__(self, message: str, *, status: int, code: str = "", method: str = "", target: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.method = method
        self.target = target


class NoSuchBucketError(S3Error, LookupError):
    """The bucket named in a request does not exist at this endpoint."""


class IntegrityError(StorageError):
    """What the server stored (its ETag) differs from what we computed locally."""


class LocalFileChangedError(StorageError):
    """A file's bytes changed between hashing and sending; the object was not written from it."""


class UploadIncompleteError(StorageError):
    """Some objects failed after every retry. Everything else is stored and verified."""

    exit_code = 4


class DownloadError(StorageError):
    """A URL could not be downloaded, or the download does not have the expected sha256."""
