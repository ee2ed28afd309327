"""Raw HTTP on a socket: send exactly the bytes a case names, read what comes back, judge it.

No HTTP client library sits in between, so nothing repairs a malformed request line, removes
dot segments or re-encodes a key before the server sees it. `verdict` is the campaign's rule:
a case is mishandled when the accelerator crashes, hangs where MinIO answers, answers 5xx where
MinIO does not, or serves an object's bytes that MinIO refuses (or other bytes than MinIO's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import socket
from urllib.parse import urlsplit

MAX_ANSWER_BYTES = 8 * 1024 * 1024
KEPT_BODY_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Answer:
    """What a server did with one request: its status (0: no HTTP answer), and how it ended."""

    status: int
    body_sha256: str = ""
    body_bytes: int = 0
    timed_out: bool = False  # nothing at all within the timeout
    error: str = ""  # the connection could not be made
    body: bytes = dataclasses.field(default=b"", repr=False)  # the first KEPT_BODY_BYTES of it
    head: bytes = dataclasses.field(default=b"", repr=False)  # status line and headers

    @property
    def label(self) -> str:
        if self.error:
            return f"error ({self.error})"
        if self.status:
            return str(self.status)
        return "timeout" if self.timed_out else "closed"


def host_port(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return out
        if not sep or size == 0:
            return out
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def parse(raw: bytes, *, timed_out: bool = False) -> Answer:
    """The status and body of an HTTP/1.1 answer (Content-Length or chunked), as far as it came."""
    if not raw.startswith(b"HTTP/1."):
        return Answer(0, timed_out=timed_out and not raw)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        return Answer(0)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    elif b"content-length" in headers:
        with contextlib.suppress(ValueError):
            body = body[: int(headers[b"content-length"])]
    return Answer(status, hashlib.sha256(body).hexdigest(), len(body), body=body[:KEPT_BODY_BYTES], head=head)


def exchange(endpoint: str, data: bytes, *, timeout_s: float = 3.0) -> Answer:
    """Send `data` on a fresh connection; read until the server closes, the answer is whole, or `timeout_s`."""
    try:
        sock = socket.create_connection(host_port(endpoint), timeout=timeout_s)
    except OSError as exc:
        return Answer(0, error=type(exc).__name__)
    raw = b""
    timed_out = False
    with sock:
        with contextlib.suppress(OSError):  # the server may close before taking everything: read what it said
            sock.sendall(data)
        try:
            while len(raw) < MAX_ANSWER_BYTES and (chunk := sock.recv(65536)):
                raw += chunk
                if _complete(raw):
                    break
        except TimeoutError:
            timed_out = True
        except OSError:
            pass
    return parse(raw, timed_out=timed_out)


def _complete(raw: bytes) -> bool:
    """True once an answer with a Content-Length has all of its body (keep-alive servers do not close)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return False
    return False


def verdict(accelerator: Answer, minio: Answer | None, *, alive: bool, expect_refusal: bool = False) -> str:
    """Why the accelerator mishandled a case, or "" when it did not.

    `minio`: MinIO's answer to the same request, or None where no comparison applies (the
    accelerator's own endpoints); then `expect_refusal` says the request must get a 4xx.
    """
    if not alive:
        return "the accelerator stopped answering its health check (crash)"
    if accelerator.error:
        return f"could not connect to the accelerator ({accelerator.error})"
    if accelerator.timed_out and (minio is None or not minio.timed_out):
        return "the accelerator said nothing within the timeout (hang)"
    if accelerator.status >= 500 and (minio is None or minio.status < 500):
        return f"the accelerator answered {accelerator.status} where MinIO answers {minio.label if minio else 'no 5xx'}"
    served = 200 <= accelerator.status < 300 and accelerator.body_bytes > 0
    if minio is None:
        if expect_refusal and 200 <= accelerator.status < 300:
            return f"the accelerator accepted it ({accelerator.status}); it must be refused"
        return ""
    if served and not 200 <= minio.status < 300:
        return f"the accelerator served {accelerator.body_bytes} bytes that MinIO refuses ({minio.label})"
    if served and accelerator.status == minio.status and accelerator.body_sha256 != minio.body_sha256:
        return "the accelerator served other bytes than MinIO"
    return ""
