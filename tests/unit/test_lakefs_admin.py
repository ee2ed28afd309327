"""The stack's lakeFS setup calls answer through the versioning package's one status table: no raw
`requests` exception ever leaves LakeFSAdmin. HTTP is faked; nothing listens."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from robolake.errors import AuthError, ServiceUnavailableError
from robolake.stack import bootstrap
from robolake.stack.bootstrap import LakeFSAdmin
from robolake.versioning.errors import BadRequestError, LakeFSError

ENDPOINT = "http://lakefs.invalid:8000"


def answer(status: int, body: Any = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = "Whatever"
    response.url = f"{ENDPOINT}/api/v1/x"
    response._content = json.dumps(body if body is not None else {"message": f"said {status}"}).encode()
    return response


@pytest.fixture
def lakefs(monkeypatch: pytest.MonkeyPatch) -> list[requests.Response | Exception]:
    """Answers the fake lakeFS gives, in order; a request past the last one fails the test."""
    answers: list[requests.Response | Exception] = []

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        got = answers.pop(0)
        if isinstance(got, Exception):
            raise got
        return got

    monkeypatch.setattr(bootstrap.requests, "request", request)
    return answers


def test_a_server_error_is_the_tables_error_with_the_http_error_as_its_cause(lakefs: list[Any]) -> None:
    lakefs.append(answer(500, {"message": "kv unavailable"}))
    with pytest.raises(LakeFSError, match=r"cannot read lakeFS's setup state: kv unavailable \(HTTP 500\)") as info:
        LakeFSAdmin(ENDPOINT).is_set_up()
    assert isinstance(info.value.__cause__, requests.HTTPError) and info.value.status == 500


def test_setup_and_repository_answers(lakefs: list[Any]) -> None:
    admin = LakeFSAdmin(ENDPOINT, "AKIAJEXAMPLE", "secret")
    lakefs += [answer(200, {"state": "initialized"}), answer(409), answer(200, {})]
    assert admin.is_set_up() and admin.set_up("admin") is False and admin.set_up("admin") is True
    lakefs += [answer(404), answer(201, {}), answer(200, {})]
    assert admin.ensure_repository("robotics-data", "s3://lakefs-storage/robotics-data") is True
    assert admin.ensure_repository("robotics-data", "s3://lakefs-storage/robotics-data") is False
    lakefs.append(answer(400, {"message": "invalid storage namespace"}))
    with pytest.raises(BadRequestError, match=r"cannot set up lakeFS with admin user 'x'.*invalid storage namespace"):
        admin.set_up("x")


def test_a_wrong_key_and_no_answer_are_named(lakefs: list[Any]) -> None:
    admin = LakeFSAdmin(ENDPOINT, "AKIAJWRONG", "nope")
    lakefs.append(answer(401))
    with pytest.raises(AuthError, match=r"rejected access key 'AKIAJWRONG' \(HTTP 401\) when trying to read repo"):
        admin.repository_exists("robotics-data")
    lakefs.append(requests.ConnectionError("refused"))
    with pytest.raises(ServiceUnavailableError, match="does not answer; is the stack running"):
        admin.repository_exists("robotics-data")
