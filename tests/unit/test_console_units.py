"""The console's pure parts: HTTP Range parsing, basic auth, the loopback rule, error statuses."""

from __future__ import annotations

import base64

import pytest

from robolake.console.episodes import dataset_prefix
from robolake.console.ranges import ByteRange, RangeNotSatisfiable, parse_range
from robolake.console.server import status_of
from robolake.errors import AuthError, ConfigError, RobolakeError, ServiceUnavailableError
from robolake.httpauth import BasicAuth
from robolake.umi.errors import DatasetFormatError
from robolake.versioning import NotFoundError


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-", ByteRange(0, 999)),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=100-199", ByteRange(100, 199)),
        ("bytes=900-5000", ByteRange(900, 999)),  # clipped to the object
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=10-20, 30-40", ByteRange(10, 20)),  # several: the first one only
        ("BYTES = 5-6", ByteRange(5, 6)),
        ("items=0-1", None),  # not bytes: ignored (RFC 9110 14.2)
        ("bytes=20-10", None),  # invalid: ignored
        ("bytes=a-b", None),
        ("bytes=-", None),
    ],
)
def test_a_range_header_is_read_as_rfc_9110_says(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


def test_content_range_names_first_last_and_size() -> None:
    assert ByteRange(100, 199).content_range(1000) == "bytes 100-199/1000"
    assert ByteRange(100, 199).length == 100


def _basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_basic_auth_needs_both_halves_of_the_key_pair() -> None:
    auth = BasicAuth("AKIAEXAMPLE", "s3cr:et")
    assert auth.allows(_basic("AKIAEXAMPLE", "s3cr:et"))
    assert not auth.allows(_basic("AKIAEXAMPLE", "wrong"))
    assert not auth.allows(_basic("other", "s3cr:et"))
    assert not auth.allows("Bearer abc")
    assert not auth.allows("Basic !!!not-base64")
    assert not auth.allows("Basic " + base64.b64encode(b"AKIAEXAMPLE").decode())  # no colon
    assert not auth.allows("")


def test_errors_map_to_statuses_that_fit() -> None:
    assert status_of(ConfigError("x")) == 400
    assert status_of(NotFoundError("x", status=404)) == 404
    assert status_of(DatasetFormatError("p", "bad")) == 422
    assert status_of(ServiceUnavailableError("x")) == 503
    assert status_of(AuthError("x")) == 502
    assert status_of(RobolakeError("x")) == 500


@pytest.mark.parametrize(
    ("dataset", "prefix"), [("", ""), ("/", ""), ("umi/cup", "umi/cup/"), ("umi/cup/", "umi/cup/")]
)
def test_a_dataset_is_a_key_prefix(dataset: str, prefix: str) -> None:
    assert dataset_prefix(dataset) == prefix


@pytest.mark.parametrize("dataset", ["../x", "a/../b", "/abs", "a//b", "x\x00y"])
def test_a_dataset_that_climbs_out_is_refused(dataset: str) -> None:
    with pytest.raises(ConfigError, match="dataset"):
        dataset_prefix(dataset)
