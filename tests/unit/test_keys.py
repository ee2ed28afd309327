"""The one check on keys, prefixes, bucket and dataset names: each rule, each message."""

from __future__ import annotations

import pytest

from robolake.errors import ConfigError
from robolake.keys import check_bucket, check_dataset_name, check_key, check_prefix, key_problem

BAD_KEYS = {
    "": "empty",
    "../../x": "'..' segment",
    "a/../b": "'..' segment",
    "./a": "'.' segment",
    "a/./b": "'.' segment",
    "/abs/key": "starts with '/'",
    "a//b": "empty segment",
    "a\x00b": "control character",
    "a\nb": "control character",
    "tab\there": "control character",
    "del\x7f": "control character",
    "x" * 1025: "longer than 1024 bytes",
}


@pytest.mark.parametrize(("value", "why"), BAD_KEYS.items())
def test_a_bad_key_is_refused_naming_the_value_and_the_rule(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_key(value, "--key")
    message = str(caught.value)
    assert message.startswith(f"--key {value!r} is not a usable object key") and why in message
    assert "no '.' or '..' segment" in message and "\n" not in message.replace(repr(value), "")


@pytest.mark.parametrize("value", ["a", "pose/cup/episode_00001.json", "a.b/c..d/.hidden", "dots.../x", "tâche/ü"])
def test_good_keys_pass_unchanged(value: str) -> None:
    assert check_key(value) == value


@pytest.mark.parametrize("value", ["", "/", "datasets/cup", "datasets/cup/"])
def test_a_prefix_may_be_the_root_or_end_in_a_slash(value: str) -> None:
    assert check_prefix(value) == value


@pytest.mark.parametrize("value", ["../../x", "/x", "a//b", "a/./", "x\x00", "a//"])
def test_a_prefix_that_climbs_out_or_is_malformed_is_refused(value: str) -> None:
    assert key_problem(value, prefix=True) is not None
    with pytest.raises(ConfigError, match=r"--prefix .* is not a usable key prefix"):
        check_prefix(value, "--prefix")


@pytest.mark.parametrize("value", ["ab", "A-bucket", "-umi", "umi-", "a..b", "a" * 64, "umi_raw", "umi raw"])
def test_bad_bucket_names(value: str) -> None:
    with pytest.raises(ConfigError, match="is not a valid bucket name"):
        check_bucket(value)


@pytest.mark.parametrize("value", ["umi-raw", "lakefs-storage", "a.b.c", "abc"])
def test_good_bucket_names(value: str) -> None:
    assert check_bucket(value) == value


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-x", "a b", "x" * 129, "a..b", "a\x00"])
def test_bad_dataset_names(name: str) -> None:
    with pytest.raises(ConfigError, match="dataset name"):
        check_dataset_name(name)
