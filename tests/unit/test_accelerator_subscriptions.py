"""The bucket-notification documents the accelerator reads and writes (MinIO's shapes)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from robolake.accelerator.subscriptions import CONFIG_ID, EVENTS, Echoes, bucket_names, covers, with_our_queue

ARN = "arn:minio:sqs::ROBOLAKE:webhook"
NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
EMPTY = f"<NotificationConfiguration {NS}></NotificationConfiguration>".encode()


def _queue(arn: str, events: tuple[str, ...], *, prefix: str | None = None, id_: str = "x") -> str:
    filt = (
        f"<Filter><S3Key><FilterRule><Name>prefix</Name><Value>{prefix}</Value></FilterRule></S3Key></Filter>"
        if prefix
        else ""
    )
    evs = "".join(f"<Event>{e}</Event>" for e in events)
    return f"<QueueConfiguration><Id>{id_}</Id><Queue>{arn}</Queue>{evs}{filt}</QueueConfiguration>"


def test_covered_only_by_an_unfiltered_queue_of_ours_with_both_events() -> None:
    doc = lambda *q: f"<NotificationConfiguration {NS}>{''.join(q)}</NotificationConfiguration>".encode()  # noqa: E731
    assert not covers(EMPTY, ARN)
    assert covers(doc(_queue(ARN, EVENTS)), ARN)
    assert not covers(doc(_queue(ARN, EVENTS[:1])), ARN)
    assert not covers(doc(_queue(ARN, EVENTS, prefix="a/")), ARN)
    assert not covers(doc(_queue("arn:minio:sqs::OTHER:webhook", EVENTS)), ARN)


def test_our_queue_is_added_beside_what_the_bucket_has() -> None:
    theirs = _queue(ARN, ("s3:ObjectCreated:Put",), prefix="theirs/", id_="theirs")
    other = _queue("arn:minio:sqs::OTHER:webhook", EVENTS, id_="other")
    doc = f"<NotificationConfiguration {NS}>{theirs}{other}</NotificationConfiguration>".encode()
    out = with_our_queue(doc, ARN)
    assert covers(out, ARN)
    root = ET.fromstring(out)
    ids = [q.find("{http://s3.amazonaws.com/doc/2006-03-01/}Id").text for q in root]  # type: ignore[union-attr]
    assert ids == ["other", CONFIG_ID]  # their filtered queue to our ARN is replaced, the other target kept
    assert covers(with_our_queue(b"", ARN), ARN) and covers(with_our_queue(EMPTY, ARN), ARN)


def test_bucket_names_of_a_listing() -> None:
    listing = (
        f"<ListAllMyBucketsResult {NS}><Owner><ID>o</ID><DisplayName>minio</DisplayName></Owner><Buckets>"
        "<Bucket><Name>umi-raw</Name><CreationDate>2026-01-01T00:00:00Z</CreationDate></Bucket>"
        "<Bucket><Name>it-x</Name><CreationDate>2026-01-01T00:00:00Z</CreationDate></Bucket>"
        "</Buckets></ListAllMyBucketsResult>"
    ).encode()
    assert bucket_names(listing) == ["umi-raw", "it-x"]


def test_an_echo_of_our_own_put_is_skipped_once_and_only_with_its_etag() -> None:
    echoes = Echoes()
    echoes.wrote("b", "k", '"abc"')
    assert not echoes.is_echo("b", "other", "s3:ObjectCreated:Put", "abc")
    assert not echoes.is_echo("b", "k", "s3:ObjectRemoved:Delete", "abc")  # a delete is news, and ends the wait
    echoes.wrote("b", "k", '"abc"')
    assert echoes.is_echo("b", "k", "s3:ObjectCreated:Put", "abc")
    assert not echoes.is_echo("b", "k", "s3:ObjectCreated:Put", "abc")  # once: a second write with it drops
    echoes.wrote("b", "k", '"abc"')
    assert not echoes.is_echo("b", "k", "s3:ObjectCreated:Put", "def")  # someone else's bytes
    stale = Echoes(ttl_s=-1)
    stale.wrote("b", "k", "abc")
    assert not stale.is_echo("b", "k", "s3:ObjectCreated:Put", "abc")
    small = Echoes(max_entries=2)
    for key in ("a", "b", "c"):
        small.wrote("b", key, "e")
    assert not small.is_echo("b", "a", "s3:ObjectCreated:Put", "e") and small.is_echo(
        "b", "c", "s3:ObjectCreated:Put", "e"
    )
