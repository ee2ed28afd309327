"""robolake.sigv4.sign computes the signature botocore's S3SigV4Auth computes, header for header.

We keep our own signer for its cost (see the sigv4 module docstring); this is the proof that it
is the same signature, so the choice costs nothing in correctness.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from robolake.sigv4 import EMPTY_SHA256, Verified, Verifier, canonical_query, sign

ACCESS, SECRET, HOST = "robolake-test", "robolake-test-secret", "127.0.0.1:9001"
NOW = dt.datetime(2026, 3, 14, 15, 9, 26, tzinfo=dt.UTC)

CASES = [
    ("GET", "umi-raw", "pose/cup/episode_00012.json", [], b"", {}),
    ("GET", "umi-raw", "", [("list-type", "2"), ("prefix", "pose/cup/"), ("max-keys", "1000")], b"", {}),
    ("HEAD", "umi-raw", "video/a b+c/épisode 1.mp4", [], b"", {}),
    (
        "PUT",
        "umi-raw",
        "pose/cup/episode_00001.json",
        [],
        b'{"frame_count": 60}\n',
        {"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==", "content-type": "application/json", "x-amz-meta-sha256": "ab" * 32},
    ),
    ("POST", "umi-raw", "big.mp4", [("uploads", "")], b"", {"content-type": "video/mp4"}),
]


def _botocore(
    method: str, path: str, query: list[tuple[str, str]], body: bytes, headers: dict[str, str]
) -> dict[str, str]:
    qs = canonical_query(query)
    request = AWSRequest(
        method=method, url=f"http://{HOST}{path}" + (f"?{qs}" if qs else ""), data=body, headers=dict(headers)
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize(("method", "bucket", "key", "query", "body", "headers"), CASES)
def test_sign_matches_botocore(
    method: str, bucket: str, key: str, query: list[tuple[str, str]], body: bytes, headers: dict[str, str]
) -> None:
    path = f"/{bucket}/{quote(key, safe='/~')}" if key else f"/{bucket}"
    payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    ours = sign(method, path, query, HOST, ACCESS, SECRET, payload_hash=payload, extra_headers=headers, now=NOW)
    theirs = _botocore(method, path, query, body, headers)
    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"] == "20260314T150926Z"
    assert ours["x-amz-content-sha256"] == theirs["x-amz-content-sha256"] == payload


def test_what_botocore_signs_our_verifier_accepts() -> None:
    path = "/umi-raw/pose/cup/episode_00012.json"
    headers = _botocore("GET", path, [], b"", {})
    verdict = Verifier({ACCESS: SECRET}).verify("GET", path, "", {**headers, "host": HOST}, now=NOW)
    assert verdict == Verified(access_key=ACCESS, payload_hash=EMPTY_SHA256, presigned=False)
