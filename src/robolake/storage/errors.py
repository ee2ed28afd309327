"""Errors of the storage layer (S3 client, uploader, downloader).

    RobolakeError                      (robolake.errors)
    ├── AuthError                      403 from the server: bad key or secret (PermissionError)
    ├── ServiceUnavailableError        the endpoint does not answer (ConnectionError)
    └── StorageError                   a storage operation failed for good
        ├── S3Error                    the server answered with an S3 error; `.status`, `.code`
        │   └── NoSuchBucketError      the bucket does not exist (LookupError)
        ├── IntegrityError             bytes written or read do not match their digest (also
        │                              robolake.errors.IntegrityError, exit status 3)
        ├── LocalFileChangedError      a local file changed while it was being uploaded
        ├── UploadIncompleteError      some objects failed after every retry; rerun to resume
        └── DownloadError              a URL could not be fetched, or its checksum is wrong

aiohttp's and botocore's exceptions never leave the S3 clients: every client turns an error
answer into one of these through the one table in `error_for` (status and S3 code -> class and
what to do), and no answer at all into S3Error with status 0 (retryable). The retry policy
decides by type and status, never by message.
"""

from __future__ import annotations

from robolake import errors
from robolake.errors import AuthError, RobolakeError

AUTH_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"})
BUCKETS_HINT = "create the bucket first (robolake stack up creates umi-raw, umi-processed, umi-experiments)"


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


class IntegrityError(StorageError, errors.IntegrityError):
    """What the server stored (its ETag) differs from what we computed locally."""


class LocalFileChangedError(StorageError):
    """A file's bytes changed between hashing and sending; the object was not written from it."""


class UploadIncompleteError(StorageError):
    """Some objects failed after every retry. Everything else is stored and verified."""

    exit_code = 4


class DownloadError(StorageError):
    """A URL could not be downloaded, or the download does not have the expected sha256."""


def error_for(
    method: str,
    target: str,
    endpoint: str,
    status: int,
    code: str = "",
    message: str = "",
    *,
    access_key: str = "",
    hint: str = "",
) -> RobolakeError:
    """The exception for an S3 error answer: what failed, the server's words, and what to do.

    `target` is ``bucket`` or ``bucket/key``; `hint` (what the caller's user should do) ends the
    message. A 403 with an authentication code (or none) is an AuthError naming the access key.
    """
    said = " ".join(part for part in (f"HTTP {status}", code, message) if part)
    text = f"{method} {target} at {endpoint}: {said}"
    tail = f"; {hint}" if hint else ""
    if status == 403 and (code in AUTH_CODES or not code):
        return AuthError(f"{text}; check MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (access key {access_key!r}){tail}")
    if code == "NoSuchBucket":
        return NoSuchBucketError(
            f"{text}; {BUCKETS_HINT}{tail}", status=status, code=code, method=method, target=target
        )
    return S3Error(text + tail, status=status, code=code, method=method, target=target)


def no_answer(
    method: str, target: str, endpoint: str, exc: BaseException, *, hint: str = "", what: str = "no answer"
) -> S3Error:
    """The error for a request that got no answer (refused, reset, timed out): status 0, retryable.

    `what` says otherwise when the request failed before it was sent (a client-side error).
    """
    tail = f"; {hint}" if hint else ""
    return S3Error(
        f"{method} {target} at {endpoint}: {what} ({type(exc).__name__}: {exc}){tail}",
        status=0,
        method=method,
        target=target,
    )
