"""Resumable, checksummed HTTP(S) downloads (for datasets published as big zip files).

A download goes to ``<dest_dir>/<url-hash>/<name>.partial``; an interrupted one continues with
``Range: bytes=<have>-`` (RFC 9110 §14): a 206 whose Content-Range starts where we stopped is
appended, a 200 means the server ignores ranges and the file starts over. Only a complete file
with the expected SHA-256 is renamed (``os.replace``) to ``<name>``, so `<name>` is always whole.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests

from robolake.errors import ConfigError
from robolake.storage.errors import DownloadError
from robolake.storage.retry import RetryPolicy

ByteProgress = Callable[[int, int | None], None]
CHUNK_BYTES = 256 * 1024  # a broken connection loses at most the chunk being read
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
DOWNLOAD_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.5, max_delay_s=4.0)


class _Transient(Exception):
    """A failure worth another attempt (connection lost, 5xx)."""


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.split("://", 1)[0].lower() in ("http", "https") and "://" in source


def check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise ConfigError(f"--sha256 {value!r} is not a SHA-256 digest (64 hex characters)")
    return digest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK_BYTES * 4), b""):
            digest.update(block)
    return digest.hexdigest()


def download_path(url: str, dest_dir: Path) -> Path:
    """Where `url` is stored: one directory per URL, the file keeping the URL's last path segment."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "download"
    if name in (".", "..") or "/" in name or "\\" in name:
        name = "download"
    return dest_dir / hashlib.sha256(url.encode()).hexdigest()[:16] / name


def fetch_url(
    url: str,
    dest_dir: str | Path,
    *,
    sha256: str | None = None,
    progress: ByteProgress | None = None,
    timeout_s: float = 30.0,
    retry: RetryPolicy = DOWNLOAD_RETRY,
) -> Path:
    """Download `url` (resuming a previous partial download) and return the local path.

    With `sha256`, the file must have that digest: a mismatch deletes the download and raises
    DownloadError. A complete earlier download with the right digest is reused without a request.
    """
    expected = check_sha256(sha256)
    if not is_url(url):
        raise ConfigError(f"{url!r} is not an http:// or https:// URL")
    dest = download_path(url, Path(dest_dir))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (expected is None or file_sha256(dest) == expected):
        return dest
    partial = dest.with_name(dest.name + ".partial")
    rng = random.Random()
    attempt = 1
    with requests.Session() as session:
        while True:
            try:
                _fetch_once(session, url, partial, progress, timeout_s)
                break
            except _Transient as exc:
                if attempt >= retry.max_attempts:
                    raise DownloadError(
                        f"{url}: {exc} (after {attempt} attempts); nothing was uploaded. Check the "
                        "URL and the network; rerun to resume the download"
                    ) from exc
                time.sleep(retry.delay_s(attempt, rng))
                attempt += 1
    actual = file_sha256(partial)
    if expected is not None and actual != expected:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: the download has sha256 {actual}, expected {expected}; the file was deleted "
            "and nothing was uploaded. Check --sha256, or the server's copy"
        )
    partial.replace(dest)
    return dest


def _fetch_once(
    session: requests.Session, url: str, partial: Path, progress: ByteProgress | None, timeout_s: float
) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout_s, allow_redirects=True)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Transient(f"cannot connect ({type(exc).__name__})") from exc
    except requests.RequestException as exc:
        raise DownloadError(f"{url}: the request failed ({exc}); nothing was uploaded") from exc
    with response:
        if response.status_code == 416 and have:
            if _total_from_416(response) == have:
                return  # the partial file is complete already
            partial.unlink()
            raise _Transient(f"the server refused to resume at byte {have}")
        if response.status_code >= 500 or response.status_code == 429:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code not in (200, 206):
            raise DownloadError(
                f"{url}: HTTP {response.status_code} {response.reason}; nothing was uploaded. Check the URL"
            )
        mode = "wb"
        total: int | None
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != have:
                partial.unlink(missing_ok=True)
                raise _Transient("the server answered a range request with another range")
            mode = "ab"
            total = int(match.group(3)) if match.group(3) != "*" else None
        else:
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        done = have
        try:
            with partial.open(mode) as fh:
                for chunk in response.iter_content(CHUNK_BYTES):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(f"the connection broke after {done} bytes") from exc
        if total is not None and done != total:
            raise _Transient(f"got {done} of {total} bytes")


def _total_from_416(response: requests.Response) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None
