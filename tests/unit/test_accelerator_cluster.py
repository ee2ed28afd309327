"""The cluster view's pure parts: which requests are node-local, and how node answers merge."""

from __future__ import annotations

import pytest

from robolake.accelerator.cluster import ListingError, is_node_local, merge_uploads, upload_ids

HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/'
    b'2006-03-01/"><Bucket>b</Bucket><KeyMarker></KeyMarker><MaxUploads>1</MaxUploads><IsTruncated>false</IsTruncated>'
)
TAIL = b"</ListMultipartUploadsResult>"


def upload(key: str, upload_id: str, initiated: str) -> bytes:
    return (
        f"<Upload><Key>{key}</Key><UploadId>{upload_id}</UploadId><Initiator><ID></ID></Initiator>"
        f"<Initiated>{initiated}</Initiated></Upload>"
    ).encode()


def doc(*uploads: bytes, head: bytes = HEAD) -> bytes:
    return head + b"".join(uploads) + TAIL


A = upload("a &amp; b", "U1", "2026-12-01T11:44:29.715Z")
B = upload("b", "U2", "2026-12-01T11:44:29.700Z")
C = upload("c", "U3", "2026-12-01T11:44:30.001Z")


@pytest.mark.parametrize(
    ("method", "bucket", "key", "query", "local"),
    [
        ("GET", "b", "", "uploads", True),
        ("GET", "b", "", "uploads=&prefix=", True),
        ("GET", "b", "", "uploads&max-uploads=1&key-marker=x", True),
        ("GET", "b", "", "uploads&prefix=k", False),  # MinIO reads the drives: the same on each node
        ("GET", "b", "", "prefix=&uploads&prefix=k", True),  # Go's Form.Get: the first value
        ("GET", "b", "k", "uploads", False),
        ("POST", "b", "k", "uploads", False),  # CreateMultipartUpload
        ("GET", "b", "", "list-type=2", False),
        ("HEAD", "b", "", "uploads", False),
    ],
)
def test_only_a_listing_without_prefix_is_node_local(
    method: str, bucket: str, key: str, query: str, local: bool
) -> None:
    assert is_node_local(method, bucket, key, query) is local


def test_uploads_of_every_node_in_initiated_order_in_the_first_nodes_document() -> None:
    merged = merge_uploads([doc(A), doc(), doc(C, B)])
    assert merged == doc(B, A, C)


def test_an_upload_listed_twice_is_listed_once_and_dropped_ones_not_at_all() -> None:
    assert merge_uploads([doc(A, B), doc(A)]) == doc(B, A)
    assert merge_uploads([doc(A, B), doc(C)], drop={"U1"}) == doc(B, C)
    assert upload_ids([doc(A, B), doc(C)]) == {"U1", "U2", "U3"}


def test_an_empty_first_answer_keeps_its_skeleton() -> None:
    head = HEAD.replace(b"<MaxUploads>1</MaxUploads>", b"<EncodingType>url</EncodingType><MaxUploads>1</MaxUploads>")
    assert merge_uploads([doc(head=head), doc(A)]) == doc(A, head=head)


@pytest.mark.parametrize("bad", [b"<Error><Code>x</Code></Error>", HEAD, doc(b"<Upload><Key>k</Key></Upload>")])
def test_what_is_not_a_listing_is_refused(bad: bytes) -> None:
    with pytest.raises(ListingError):
        merge_uploads([bad, doc(A)])
