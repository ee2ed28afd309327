"""The lakeFS error table is complete: every kind a Call can name has a hint, every status a class."""

from __future__ import annotations

from typing import get_args

import pytest

from robolake.versioning.errors import NOT_FOUND_HINTS, STATUS_TO_ERROR, Call, Kind, NotFoundError, not_found


@pytest.mark.parametrize("kind", get_args(Kind))
def test_every_kind_a_call_can_name_has_a_not_found_hint(kind: Kind) -> None:
    assert NOT_FOUND_HINTS.get(kind)
    err = not_found(Call("delete it", "robotics-data", (("branch", "main"),), "x"), "not found", (kind, "nope"))
    assert isinstance(err, NotFoundError)
    assert "'nope' does not exist" in str(err) and NOT_FOUND_HINTS[kind] in str(err)


def test_a_tag_that_does_not_exist_is_named_with_its_hint() -> None:
    err = not_found(Call("delete tag 'v9'", "robotics-data", (("tag", "v9"),)), "tag not found", ("tag", "v9"))
    assert str(err) == (
        "cannot delete tag 'v9': tag 'v9' does not exist in repository 'robotics-data'; "
        "list tags with `robolake version tag list`"
    )


def test_every_mapped_status_has_an_error_class() -> None:
    for status, (cls, _hint) in STATUS_TO_ERROR.items():
        assert 400 <= status < 600 and issubclass(cls, Exception)
