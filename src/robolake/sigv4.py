"""AWS Signature Version 4 verification (header and presigned), as S3 and MinIO compute it.

The accelerator verifies a request locally only to decide whether it may answer from its cache.
A request it cannot verify (unsigned, unknown key, bad signature, skewed clock, other region) is
passed to MinIO untouched, so the client gets exactly the answer MinIO would give.

Canonical request (AWS SigV4 spec, "Create a canonical request"):
    METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n PayloadHash
S3 does not normalise the path (no dot-segment removal) and encodes it once; MinIO decodes the
path and re-encodes every byte outside [A-Za-z0-9-_.~/], which is what we do too.

Client side, `sign` signs the requests robolake's own clients send (AsyncS3, ObjectReader, the
accelerator's upstream and batch clients). botocore's ``S3SigV4Auth`` computes the same
signature (tests/unit/test_sigv4_client.py checks it header for header), but we keep our own for
its cost, measured on the project's 2-core machine (Python 3.11, botocore 1.44):
  - signing alone: 17-25 µs per request here, 96-123 µs with ``S3SigV4Auth.add_auth`` on an
    ``AWSRequest`` (timeit, best of 5 x 20,000, GET and PUT with Content-MD5 and metadata);
  - a whole small GET (4 KiB, ObjectReader against one MinIO node of a test stack): 0.21-0.28 ms
    of client CPU per request with `sign`, 0.32-0.45 ms with botocore's signer swapped in
    (+55-78%, three runs), which on a machine the servers share is throughput lost.
    Reproduce: ``.venv/bin/python -m robolake.bench.clients --ops signer``.
The verifier needs the canonical request code anyway (botocore has no verifier), so `sign` is
the ~25 lines that put it to the other use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = dt.timedelta(minutes=15)  # S3's RequestTimeTooSkewed limit
MAX_PRESIGN_EXPIRY_S = 7 * 24 * 3600

_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})\s*$"
)
_SPACES = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature checks out: who signed it and over which payload hash."""

    access_key: str
    payload_hash: str
    presigned: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Rejected:
    """Why local verification did not succeed (the request then goes to MinIO as it is)."""

    reason: str


@lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")."""
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_uri(raw_path: str) -> str:
    return quote(unquote(raw_path), safe="/~")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str | None:
    lines = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            return None
        lines.append(f"{name}:{_SPACES.sub(' ', value.strip())}\n")
    return "".join(lines)


@lru_cache(maxsize=64)  # the requests of one second share their date: strptime once, not per request
def _parse_time(amz_date: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


class Verifier:
    """Checks SigV4 signatures against the secrets of the principals the accelerator knows."""

    def __init__(self, secrets: Mapping[str, str], *, region: str = "us-east-1") -> None:
        self._secrets = dict(secrets)
        self.region = region

    def replace_secrets(self, secrets: Mapping[str, str]) -> None:
        """Know exactly these principals from now on (a user added or removed)."""
        self._secrets = dict(secrets)

    def knows(self, access_key: str) -> bool:
        return access_key in self._secrets

    def verify(
        self,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Mapping[str, str],
        *,
        now: dt.datetime | None = None,
    ) -> Verified | Rejected:
        """Verify a request; `headers` must be a case-insensitive mapping (lower-case lookups)."""
        now = now or dt.datetime.now(dt.UTC)
        query = parse_qsl(query_string, keep_blank_values=True)
        req = _Request(method, raw_path, query, headers)
        if headers.get("authorization"):
            return self._verify_header(req, now)
        if any(k == "X-Amz-Signature" for k, _ in query):
            return self._verify_presigned(req, now)
        return Rejected("unsigned request")

    def _verify_header(self, req: _Request, now: dt.datetime) -> Verified | Rejected:
        match = _AUTH_RE.match(req.headers["authorization"])
        if not match:
            return Rejected("malformed Authorization header")
        amz_date = req.headers.get("x-amz-date") or ""
        when = _parse_time(amz_date)
        if when is None or abs(now - when) > MAX_SKEW:
            return Rejected("missing or skewed X-Amz-Date")
        payload_hash = req.headers.get("x-amz-content-sha256")
        if not payload_hash:
            return Rejected("missing X-Amz-Content-Sha256")
        return self._check(req, _Claim(match["cred"], match["signed"], match["sig"], amz_date, payload_hash, False))

    def _verify_presigned(self, req: _Request, now: dt.datetime) -> Verified | Rejected:
        params = dict(req.query)
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            return Rejected("unsupported presign algorithm")
        amz_date = params.get("X-Amz-Date", "")
        when = _parse_time(amz_date)
        try:
            expires = int(params.get("X-Amz-Expires", ""))
        except ValueError:
            return Rejected("bad X-Amz-Expires")
        if when is None or not 0 < expires <= MAX_PRESIGN_EXPIRY_S:
            return Rejected("bad presign date or expiry")
        if now > when + dt.timedelta(seconds=expires) or when - now > MAX_SKEW:
            return Rejected("presigned URL expired or not yet valid")
        unsigned = dataclasses.replace(req, query=[(k, v) for k, v in req.query if k != "X-Amz-Signature"])
        claim = _Claim(
            params.get("X-Amz-Credential", ""),
            params.get("X-Amz-SignedHeaders", ""),
            params["X-Amz-Signature"],
            amz_date,
            params.get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD),
            presigned=True,
        )
        return self._check(unsigned, claim)

    def _check(self, req: _Request, claim: _Claim) -> Verified | Rejected:
        parts = claim.credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or parts[3] != "s3":
            return Rejected("malformed credential scope")
        access_key, date, region = parts[0], parts[1], parts[2]
        secret = self._secrets.get(access_key)
        if secret is None:
            return Rejected("access key not known locally")
        if region != self.region or date != claim.amz_date[:8]:
            return Rejected("credential scope does not match region or date")
        signed = claim.signed_headers.split(";")
        if "host" not in signed or signed != sorted(signed):
            return Rejected("SignedHeaders must include host and be sorted")
        canon_headers = _canonical_headers(req.headers, signed)
        if canon_headers is None:
            return Rejected("a signed header is missing")
        canonical = _canonical_request(
            req.method, req.raw_path, req.query, canon_headers, claim.signed_headers, claim.payload_hash
        )
        if not hmac.compare_digest(_signature(secret, claim.amz_date, region, canonical), claim.signature):
            return Rejected("signature does not match")
        return Verified(access_key=access_key, payload_hash=claim.payload_hash, presigned=claim.presigned)


@dataclasses.dataclass(frozen=True)
class _Request:
    """The parts of a request its signature covers (`headers` looked up in lower case)."""

    method: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class _Claim:
    """What a request says about its own signature, from the Authorization header or the presigned query."""

    credential: str
    signed_headers: str
    signature: str
    amz_date: str
    payload_hash: str
    presigned: bool


def _canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    canon_headers: str,
    signed_headers: str,
    payload_hash: str,
) -> str:
    """METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n PayloadHash."""
    parts = (method, canonical_uri(raw_path), canonical_query(query), canon_headers, signed_headers, payload_hash)
    return "\n".join(parts)


def _signature(secret: str, amz_date: str, region: str, canonical: str) -> str:
    """The hex signature of a canonical request made at `amz_date` (YYYYMMDDTHHMMSSZ) in `region`."""
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(signing_key(secret, amz_date[:8], region, "s3"), to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    method: str,
    url_path: str,
    query: list[tuple[str, str]],
    host: str,
    access_key: str,
    secret: str,
    *,
    payload_hash: str = EMPTY_SHA256,
    region: str = "us-east-1",
    extra_headers: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Headers (Authorization, X-Amz-Date, X-Amz-Content-Sha256) for a request we originate.

    `url_path` is the encoded path as it goes on the wire; `extra_headers` are signed too.
    """
    when = now or dt.datetime.now(dt.UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    headers.update({k.lower(): v for k, v in (extra_headers or {}).items()})
    signed = sorted(headers)
    canon_headers = "".join(f"{name}:{_SPACES.sub(' ', headers[name].strip())}\n" for name in signed)
    canonical = _canonical_request(method, url_path, query, canon_headers, ";".join(signed), payload_hash)
    signature = _signature(secret, amz_date, region, canonical)
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    out = {k: v for k, v in headers.items() if k != "host"}
    out["authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return out
