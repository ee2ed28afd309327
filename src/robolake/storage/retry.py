"""When to retry an S3 request and how long to wait: one immutable policy object, no globals.

The decision is made from the exception's type, the HTTP status and the S3 error code (parsed
from the XML body, compared exactly), never from message text:

- no answer at all (connection refused or reset, timeout; `S3Error.status == 0`) → retry;
- 500, 502, 503, 504 and 429 → retry (a node going away, MinIO's quorum errors, throttling);
- codes that S3 and MinIO document as transient (`SlowDown`, `RequestTimeout`, `InternalError`,
  `XMinioServerNotInitialized`, ...) → retry whatever the status;
- `BadDigest` (the body was damaged on the way; MinIO checked Content-MD5) → retry: we resend
  the same bytes, which we hashed ourselves;
- anything else (403, 404, 400 with another code) → fail at once.

Waits follow "full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): attempt n
waits a uniform random time in [0, min(cap, base * 2**(n-1))], which spreads out clients that
failed together, e.g. every in-flight request when a node is killed.
"""

from __future__ import annotations

import dataclasses
import math
import random

from robolake.errors import AuthError
from robolake.storage.errors import IntegrityError, S3Error

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "BadDigest",
        "IncompleteBody",
        "XMinioServerNotInitialized",
        "XMinioReadQuorum",
        "XMinioWriteQuorum",
        "XMinioStorageFull",
        "ExpiredToken",
    }
)
# RequestTimeTooSkewed and ExpiredToken: a request signed before a long stall (a node kill can
# hold a connection for seconds) is re-signed with a fresh date on the next attempt.


def is_retryable(error: BaseException) -> bool:
    """True when sending the same request again may succeed."""
    if isinstance(error, AuthError):
        return False
    if isinstance(error, IntegrityError):
        return True  # the server stored other bytes than we sent: send them again
    if isinstance(error, S3Error):
        return error.status == 0 or error.status in RETRYABLE_STATUSES or error.code in RETRYABLE_CODES
    return False


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter.

    `max_attempts` counts the first try; `base_delay_s` is the cap of the first wait, doubling up to
    `max_delay_s`. The defaults ride out a MinIO node being killed (about 40 s of retries).
    """

    max_attempts: int = 10
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts={self.max_attempts!r} must be at least 1")
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(
                f"delays must satisfy 0 <= base_delay_s <= max_delay_s, got {self.base_delay_s!r}, {self.max_delay_s!r}"
            )

    def cap_s(self, attempt: int) -> float:
        """The longest wait after failed attempt number `attempt` (1-based)."""
        return min(self.max_delay_s, math.ldexp(self.base_delay_s, min(attempt - 1, 62)))

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """A jittered wait after failed attempt `attempt`; `rng` is the caller's own generator."""
        return rng.uniform(0.0, self.cap_s(attempt))

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Retry after failed attempt `attempt` (1-based) that raised `error`?"""
        return attempt < self.max_attempts and is_retryable(error)


NO_RETRY = RetryPolicy(max_attempts=1)
