"""botocore's errors become robolake's at the boundary (storage.boto), and bench results say where they are."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from robolake.bench import results
from robolake.errors import AuthError
from robolake.storage.boto import boto_errors
from robolake.storage.errors import NoSuchBucketError, S3Error
from robolake.storage.s3 import S3Target
from tests.stackutil import isolated_settings

TARGET = S3Target(endpoint="http://127.0.0.1:9001", access_key="robolake-test", secret_key="secret")


def _client_error(status: int, code: str, message: str = "") -> ClientError:
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


def test_no_such_bucket_names_the_bucket_and_what_to_do() -> None:
    with pytest.raises(NoSuchBucketError) as caught, boto_errors("PUT", "umi-experiments", "a/b.json", TARGET):
        raise _client_error(404, "NoSuchBucket", "The specified bucket does not exist")
    text = str(caught.value)
    assert "PUT umi-experiments/a/b.json at http://127.0.0.1:9001: HTTP 404 NoSuchBucket" in text
    assert "create the bucket first" in text
    assert caught.value.status == 404 and caught.value.code == "NoSuchBucket"
    assert isinstance(caught.value.__cause__, ClientError)


def test_bad_credentials_are_an_auth_error_naming_the_key() -> None:
    with pytest.raises(AuthError, match="access key 'robolake-test'"), boto_errors("GET", "b", "k", TARGET):
        raise _client_error(403, "InvalidAccessKeyId")


def test_a_head_404_is_no_such_key_and_the_hint_ends_the_message() -> None:
    with pytest.raises(S3Error) as caught, boto_errors("HEAD", "b", "k", TARGET, hint="run it again"):
        raise _client_error(404, "404")
    assert caught.value.code == "NoSuchKey" and str(caught.value).endswith("; run it again")


def test_no_answer_is_status_0() -> None:
    with (
        pytest.raises(
            S3Error, match=r"GET b/k at http://127.0.0.1:9001: no answer \(EndpointConnectionError"
        ) as caught,
        boto_errors("GET", "b", "k", TARGET),
    ):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9001/b/k")
    assert caught.value.status == 0


def test_a_request_botocore_refuses_to_send_says_so() -> None:
    with pytest.raises(S3Error, match="not sent"), boto_errors("PUT", "b", "", TARGET):
        raise ParamValidationError(report="Invalid bucket name")


def test_saving_results_without_a_stack_keeps_them_locally_and_says_where(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path / "state")  # free ports: nothing listens there
    with pytest.raises(S3Error) as caught:
        results.save(settings, "20260101T000000Z-x-000000", tmp_path / "out", {"report.md": b"# hi\n"})
    text = str(caught.value)
    assert "PUT umi-experiments/benchmarks/20260101T000000Z-x-000000/report.md" in text and "no answer" in text
    assert str(tmp_path / "out" / "20260101T000000Z-x-000000") in text and "robolake stack up" in text
    assert (tmp_path / "out" / "20260101T000000Z-x-000000" / "report.md").read_bytes() == b"# hi\n"
    assert results.fetch(settings, "20260101T000000Z-x-000000") is None
