"""The hardening rules on their own: MinIO's object names, multi-delete XML, bounded epochs, blame, batch input."""

from __future__ import annotations

import asyncio
import io
import tarfile
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from robolake.accelerator import batch, multidelete
from robolake.accelerator.forward import Target
from robolake.accelerator.invalidation import Epochs, write_targets
from robolake.accelerator.s3xml import split_path
from robolake.accelerator.upstream import ClientBodyError, StreamedBody, UpstreamPool, UpstreamRequest


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("/b/k", ("b", "k")),
        ("/b//a.txt", ("b", "a.txt")),  # trimLeadingSlash: what boto3's Key='/a.txt' stores
        ("/b/%2Fa.txt", ("b", "a.txt")),
        ("/b///x//y/", ("b", "x/y/")),  # path.Clean, trailing slash kept
        ("/b/a//k", ("b", "a//k")),  # only a leading slash is cleaned
        ("/b/a%20b/c", ("b", "a b/c")),
        ("/b/", ("b", "")),
        ("/b//", ("b", "")),
        ("/%62/k", ("%62", "k")),  # the bucket is routed escaped: no bucket of that name
        ('/b%2Fx/k"', ("b", 'x/k"')),  # not Go-valid escaping: split after decoding
        ("/b//a/../k", ("", "")),  # `.`/`..` segments: MinIO's 400
        ("/b/ .. /k", ("", "")),
        ("/b/a\\..\\k", ("", "")),
        ("/b/%zz", ("", "")),  # bad escape: Go's 400
        ("/b/%ff", ("", "")),  # not UTF-8
        ("//b/k", ("", "")),
        ("/", ("", "")),
        ("/b/" + "k" * 33000, ("", "")),
    ],
)
def test_request_paths_become_minios_object_names(raw: str, key: tuple[str, str]) -> None:
    assert split_path(raw) == key


def test_absolute_form_targets_are_routed_by_their_path() -> None:
    assert Target.of("http://h:1/b/k?x=1") == Target("/b/k?x=1", "h:1")
    assert Target.of("HTTP://h") == Target("/", "h")
    assert Target.of("/b/k").authority == ""
    assert Target.of("*").origin == ""


def listed(body: bytes, piece: int = 5) -> list[str] | None:
    listing = multidelete.KeyListing()
    for start in range(0, len(body), piece):
        listing.feed(body[start : start + piece])
    listing.close()
    return listing.keys


def test_multi_delete_keys_are_read_as_go_reads_them() -> None:
    doc = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "boom">]>'
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>'
        b"<Object><Key>it&#39;s &amp; &lt;x&gt;.txt</Key></Object>"
        b"<Object><Key><![CDATA[cd.txt]]></Key><VersionId>v</VersionId></Object>"
        b"<Object><Key>//lead/../x</Key></Object>"
        b"<Object><Key>q&e;</Key></Object>"  # a declared entity stays unexpanded (Go refuses it)
        b"<Nested><Object><Key>not-listed</Key></Object></Nested>"
        b"</Delete>trailing junk Go never reads"
    )
    assert listed(doc) == ["it's & <x>.txt", "cd.txt", "x", "q"]
    assert listed(b"<Delete><Object><Key>a</Key></Object>") is None  # unfinished
    assert listed(b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>") is None
    long_key = b"<Delete><Object><Key>" + b"k" * 5000 + b"</Key></Object><Object><Key>ok</Key></Object></Delete>"
    assert listed(long_key) == ["ok"]  # a name MinIO refuses names nothing it deletes
    assert listed(b"<a>" * 100 + b"</a>" * 100) is None


def test_only_keys_minio_reports_failed_are_spared() -> None:
    listing = multidelete.KeyListing()
    listing.feed(b"<Delete>" + b"".join(f"<Object><Key>{k}</Key></Object>".encode() for k in "abbc") + b"</Delete>")
    listing.close()
    answer = (
        b"<DeleteResult><Deleted><Key>a</Key></Deleted>"
        b"<Error><Key>b</Key></Error><Error><Key>c</Key></Error></DeleteResult>"
    )
    result = multidelete.DeleteResult.parse(answer)
    assert result is not None
    assert multidelete.deleted_keys(listing, result) == ["a", "b"]  # b was named twice: one may be gone
    assert multidelete.deleted_keys(listing, None) == ["a", "b", "b", "c"]
    unknown = multidelete.KeyListing()
    unknown.close()
    denied = multidelete.DeleteResult.parse(b"<DeleteResult><Error><Key>a</Key></Error></DeleteResult>")
    assert multidelete.deleted_keys(unknown, denied) == []
    assert multidelete.deleted_keys(unknown, None) is None
    assert write_targets("POST", "b", "", {"delete": ""}, None) == [("b", "")]


def test_epochs_hold_digests_and_forget_buckets_too() -> None:
    epochs = Epochs(limit=4)
    captured = epochs.current(("b" * 4096, "k" * 8192))
    for i in range(10):
        epochs.bump(("b", f"{i}{'k' * 8192}"))
        epochs.bump_bucket(f"{i}{'b' * 4096}")
    assert epochs.tracked() == (4, 4)
    epochs.bump_bucket("b" * 4096)
    assert epochs.current(("b" * 4096, "k" * 8192)) != captured


class BrokenSource:
    """A client body that breaks after one piece, as aiohttp's payload does when the client goes."""

    def __init__(self) -> None:
        self.sent = False

    async def read(self, _: int) -> bytes:
        if not self.sent:
            self.sent = True
            return b"x" * 1024
        raise ConnectionResetError("Connection lost")


def test_a_broken_client_body_is_not_the_nodes_fault() -> None:
    async def main() -> None:
        async def slurp(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(status=200)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", slurp)
        async with TestServer(app) as server:
            pool = UpstreamPool([str(server.make_url("")).rstrip("/")] * 3)
            await pool.start()
            try:
                for _ in range(5):
                    body: Any = StreamedBody(BrokenSource())  # type: ignore[arg-type]
                    with pytest.raises(ClientBodyError):
                        await pool.request(
                            UpstreamRequest("PUT", "/b/k", {"Content-Length": "4096"}, body), retry=False
                        )
                assert pool.healthy_count() == 3
            finally:
                await pool.close()

    asyncio.run(main())


def test_batch_keys_are_checked_and_member_names_are_safe() -> None:
    assert [batch._plain_name(k) for k in ("a/b.txt", "../x", "/abs", "a/./b", "a//b", "t\x00", "a\\b")] == [
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]
    tar = batch._member(7, "../x", b"data") + b"\0" * 1024
    assert batch.parse_batch(io.BytesIO(tar)) == [("../x", b"data", "")]
    with tarfile.open(fileobj=io.BytesIO(tar)) as opened:
        assert opened.getnames() == ["robolake-member-00007"]
