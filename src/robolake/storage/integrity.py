"""Digests that prove an object holds exactly the local bytes.

- Single-part PUT: the request carries Content-MD5 (S3 and MinIO reject a body that does not match
  with `BadDigest`), and the ETag S3 returns for an unencrypted single-part object is the hex MD5
  of its bytes, so comparing it to our MD5 proves what was stored.
- Multipart: every part carries its own Content-MD5; the object's ETag is
  ``md5(md5(part 1) + ... + md5(part N)).hexdigest() + "-N"`` over the binary part digests,
  which we compute from the same parts before sending.
- The SHA-256 of the whole file goes into ``x-amz-meta-sha256``: a digest that does not depend
  on how the object was split, so a later run (or a reader) can check it whatever the part size.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path

MIB = 1024 * 1024
MIN_PART_BYTES = 5 * MIB  # S3: every part but the last is at least 5 MiB
MAX_PARTS = 10_000  # S3: part numbers 1..10000
READ_BLOCK_BYTES = 4 * MIB


@dataclasses.dataclass(frozen=True)
class Digest:
    """Size and digests of one object's bytes; `part_md5s` is empty for a single-part upload."""

    size: int
    md5: bytes
    sha256: str
    part_size: int = 0
    part_md5s: tuple[bytes, ...] = ()

    @property
    def etag(self) -> str:
        """The ETag S3 will report (without quotes)."""
        if self.part_md5s:
            return multipart_etag(self.part_md5s)
        return self.md5.hex()

    @property
    def content_md5(self) -> str:
        return base64.b64encode(self.md5).decode()


def content_md5(md5: bytes) -> str:
    """The Content-MD5 header value: base64 of the binary digest (RFC 1864)."""
    return base64.b64encode(md5).decode()


def multipart_etag(part_md5s: tuple[bytes, ...] | list[bytes]) -> str:
    """S3's ETag of a completed multipart upload, from the binary MD5 of each part in order."""
    if not part_md5s:
        raise ValueError("a multipart upload has at least one part")
    return hashlib.md5(b"".join(part_md5s)).hexdigest() + f"-{len(part_md5s)}"


def normalise_etag(etag: str) -> str:
    """An ETag as a bare lower-case string: no quotes, no weak prefix."""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"').lower()


def md5_of(data: bytes) -> bytes:
    """The binary MD5 of `data` (for a part's Content-MD5 and ETag)."""
    return hashlib.md5(data).digest()


def digest_bytes(data: bytes) -> Digest:
    return Digest(size=len(data), md5=hashlib.md5(data).digest(), sha256=hashlib.sha256(data).hexdigest())


def choose_part_size(size: int, part_size: int) -> int:
    """`part_size`, doubled until `size` fits in S3's 10,000 parts."""
    if part_size < MIN_PART_BYTES:
        raise ValueError(f"part_size={part_size!r} is below S3's minimum of {MIN_PART_BYTES} bytes (5 MiB)")
    while -(-size // part_size) > MAX_PARTS:
        part_size *= 2
    return part_size


def part_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """(offset, length) of each part of a `size`-byte object; at least one part."""
    if size == 0:
        return [(0, 0)]
    return [(offset, min(part_size, size - offset)) for offset in range(0, size, part_size)]


def digest_file(path: Path, *, multipart_part_size: int | None = None) -> Digest:
    """Read `path` once: its size, MD5 and SHA-256, and per-part MD5s when `multipart_part_size` is set.

    Blocking (hashlib releases the GIL on large buffers): run it in a thread from async code.
    """
    sha = hashlib.sha256()
    whole = hashlib.md5()
    parts: list[bytes] = []
    part = hashlib.md5()
    in_part = 0
    size = 0
    block = min(READ_BLOCK_BYTES, multipart_part_size or READ_BLOCK_BYTES)
    with path.open("rb") as fh:
        while True:
            data = fh.read(block if multipart_part_size is None else min(block, multipart_part_size - in_part))
            if not data:
                break
            size += len(data)
            sha.update(data)
            if multipart_part_size is None:
                whole.update(data)
                continue
            part.update(data)
            in_part += len(data)
            if in_part == multipart_part_size:
                parts.append(part.digest())
                part, in_part = hashlib.md5(), 0
    if multipart_part_size is None:
        return Digest(size=size, md5=whole.digest(), sha256=sha.hexdigest())
    if in_part or not parts:
        parts.append(part.digest())
    return Digest(size=size, md5=b"", sha256=sha.hexdigest(), part_size=multipart_part_size, part_md5s=tuple(parts))
