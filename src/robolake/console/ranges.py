"""HTTP byte ranges for the console's media (RFC 9110 section 14): one range, or the whole object.

    parse_range("bytes=0-", 1000)      -> ByteRange(0, 999)
    parse_range("bytes=-100", 1000)    -> ByteRange(900, 999)
    parse_range(None, 1000)            -> None                  (no Range: answer 200, whole body)
    parse_range("bytes=2000-", 1000)   -> RangeNotSatisfiable    (answer 416)

A header naming several ranges is answered with the first one only; a browser's video element
never asks for more than one, and RFC 9110 lets a server ignore a Range it does not support.
A header that is not a byte range at all is ignored (the whole body, 200), as the RFC says.
"""

from __future__ import annotations

import dataclasses


class RangeNotSatisfiable(ValueError):
    """The range starts past the end of the object: answer 416 with ``Content-Range: bytes */size``."""


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """Bytes ``first .. last`` inclusive, as in ``Content-Range: bytes first-last/size``."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range `header` asks for in an object of `size` bytes; None: send the whole object."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    first_spec = spec.split(",", 1)[0].strip()
    start_text, dash, end_text = first_spec.partition("-")
    start_text, end_text = start_text.strip(), end_text.strip()
    if not dash or not (start_text or end_text):
        return None
    if not (start_text.isdigit() or not start_text) or not (end_text.isdigit() or not end_text):
        return None
    if not start_text:  # a suffix: the last N bytes
        suffix = int(end_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes=-{suffix} of an object of {size} bytes")
        return ByteRange(max(0, size - suffix), size - 1)
    first = int(start_text)
    last = int(end_text) if end_text else None
    if last is not None and last < first:
        return None  # invalid: ignore it
    if first >= size:
        raise RangeNotSatisfiable(f"bytes={first}- of an object of {size} bytes")
    last = size - 1 if last is None else last
    return ByteRange(first, min(last, size - 1))
