"""What a multi-object delete (`POST /bucket?delete`) removed: its XML request and MinIO's answer, parsed.

    request   <Delete><Object><Key>a</Key></Object>...</Delete>    fed to `KeyListing` as it streams
    answer    <DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>b</Key>...</Error>

Keys are read as Go's encoding/xml reads them for MinIO (DeleteObjectsRequest, cmd/), with a
real parser: character references (`&#39;`, which Go's encoder writes for `'`), CDATA and the
predefined entities decoded, elements matched by local name, only the text directly inside a
`<Key>` of an `<Object>` of the root. expat runs with a default handler, which stops it expanding
any entity a DOCTYPE declares (no billion laughs; Go does not expand them either, it refuses the
document), and with limits: MinIO deletes at most MAX_OBJECTS keys per request, and refuses
names over 1024 bytes. MinIO answers 200 even when it deleted nothing (an anonymous request gets
an AccessDenied `<Error>` per key), so the answer decides which listed keys were spared.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from xml.parsers import expat

from robolake.accelerator.s3xml import trim_leading_slash

MAX_OBJECTS = 1000  # MinIO's maxDeleteList: a longer list is refused (MalformedXML), nothing deleted
MAX_KEY_CHARS = 4096  # MinIO refuses object names over 1024 bytes: a longer text names nothing it deletes
MAX_DEPTH = 64  # the documents nest four deep; deeper is no delete request MinIO accepts
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # MinIO's DeleteResult for MAX_OBJECTS keys of 1024 bytes, and room


class _Elements:
    """Collects the text directly inside elements at one path (local names) of an XML stream."""

    def __init__(self, paths: tuple[tuple[str, ...], ...], *, max_items: int) -> None:
        self._paths = paths
        self._max_items = max_items
        self._stack: list[str] = []
        self._text: list[str] | None = None
        self._length = 0
        self._done = False  # the root element has closed: Go's decoder reads no further
        self.found: dict[tuple[str, ...], list[str]] = {p: [] for p in paths}
        self.complete = True  # False: a limit was hit or the document is not well-formed XML
        self._parser = expat.ParserCreate(namespace_separator=" ")
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.CharacterDataHandler = self._chars
        self._parser.DefaultHandler = _ignore  # set: entities a DOCTYPE declares stay unexpanded

    def feed(self, data: bytes, *, final: bool = False) -> None:
        if not self.complete or self._done:
            return
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError:
            self.complete = self._done  # junk after the root element is no error to Go
        except _LimitError:
            self.complete = False

    def _start(self, name: str, _: object) -> None:
        self._stack.append(name.rpartition(" ")[2])
        if len(self._stack) > MAX_DEPTH:
            raise _LimitError
        self._text = [] if tuple(self._stack) in self.found else None
        self._length = 0

    def _end(self, _: str) -> None:
        path = tuple(self._stack)
        if self._text is not None and path in self.found and self._length <= MAX_KEY_CHARS:
            listed = self.found[path]
            if len(listed) >= self._max_items:
                raise _LimitError
            listed.append("".join(self._text))
        self._stack.pop()
        self._text = None
        self._done = not self._stack

    def _chars(self, data: str) -> None:
        if self._text is not None:
            self._length += len(data)
            if self._length <= MAX_KEY_CHARS:  # a longer name is no object MinIO holds: dropped
                self._text.append(data)


class _LimitError(Exception):
    """A document past one of the limits: not a delete request MinIO carries out as written."""


def _ignore(_: str) -> None:
    pass


REQUEST_KEY = ("Delete", "Object", "Key")
DELETED_KEY = ("DeleteResult", "Deleted", "Key")
ERROR_KEY = ("DeleteResult", "Error", "Key")


class KeyListing:
    """The keys a multi-delete request names, parsed from its body as it is sent (`feed`, then `close`)."""

    def __init__(self) -> None:
        self._elements = _Elements((REQUEST_KEY,), max_items=MAX_OBJECTS)

    def feed(self, chunk: bytes) -> None:
        self._elements.feed(chunk)

    def close(self) -> None:
        self._elements.feed(b"", final=True)

    @property
    def keys(self) -> list[str] | None:
        """The object names MinIO reads from the body (trimLeadingSlash applied); None if unknown."""
        if not self._elements.complete:
            return None
        return [trim_leading_slash(k) for k in self._elements.found[REQUEST_KEY]]


@dataclasses.dataclass(frozen=True)
class DeleteResult:
    """MinIO's answer to a multi-delete: the keys it reports deleted and those it reports failed."""

    deleted: list[str]
    failed: list[str]

    @classmethod
    def parse(cls, body: bytes) -> DeleteResult | None:
        elements = _Elements((DELETED_KEY, ERROR_KEY), max_items=4 * MAX_OBJECTS)
        elements.feed(body, final=True)
        if not elements.complete:
            return None
        return cls(elements.found[DELETED_KEY], elements.found[ERROR_KEY])


def deleted_keys(listing: KeyListing, result: DeleteResult | None) -> list[str] | None:
    """The keys a successful multi-delete may have removed; None: unknown, assume the whole bucket.

    A key is spared only when the request names it once and the answer reports it failed and
    never deleted (a request naming two versions of a key can delete one and fail the other,
    and a Quiet answer lists only the failures).
    """
    named = listing.keys
    if named is None:
        if result is not None and result.failed and not result.deleted:
            return []  # every key it reports on failed (an anonymous request, typically)
        return None
    if result is None:
        return named
    once = Counter(named)
    failed = set(result.failed) - set(result.deleted)
    kept = [k for k in named if not (once[k] == 1 and k in failed)]
    return list(dict.fromkeys([*kept, *result.deleted]))
