"""Team users' access decisions: how long an allow lasts, what it covers, and robolake's policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robolake.accelerator.access import AccessDecisions, _normal
from robolake.accelerator.principals import Policy, User, load_users, save_users
from robolake.errors import ConfigError, StateError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decisions() -> tuple[AccessDecisions, Clock]:
    clock = Clock()
    return AccessDecisions(own=frozenset({"root"}), ttl_s=5.0, clock=clock), clock


def test_root_always_and_others_only_with_a_fresh_allow() -> None:
    d, clock = decisions()
    assert d.allows("root", ("b", "k"))
    assert not d.allows("alice", ("b", "k"))
    d.grant("alice", ("b", "k"), bucket_wide=True)
    assert d.allows("alice", ("b", "other")) and not d.allows("alice", ("c", "k")) and not d.allows("bob", ("b", "k"))
    clock.now += 5.0
    assert not d.allows("alice", ("b", "k"))


def test_an_object_allow_covers_that_object_and_a_403_or_forget_drops_allows() -> None:
    d, _ = decisions()
    d.grant("alice", ("b", "k"), bucket_wide=False)
    assert d.allows("alice", ("b", "k")) and not d.allows("alice", ("b", "k2"))
    d.grant("alice", ("c", "x"), bucket_wide=True)
    d.deny("alice", ("b", "anything"))
    assert not d.allows("alice", ("b", "k")) and d.allows("alice", ("c", "x"))
    d.forget("alice")
    assert not d.allows("alice", ("c", "x"))


@pytest.mark.parametrize(
    ("spec", "name", "resources", "writes"),
    [
        ("readonly", "robolake-readonly", ["arn:aws:s3:::*", "arn:aws:s3:::*/*"], False),
        ("readwrite", "robolake-readwrite", ["arn:aws:s3:::*", "arn:aws:s3:::*/*"], True),
        ("bucket:umi-raw", "robolake-bucket-umi-raw", ["arn:aws:s3:::umi-raw", "arn:aws:s3:::umi-raw/*"], True),
        ("bucket:umi-raw:ro", "robolake-bucket-umi-raw-ro", ["arn:aws:s3:::umi-raw", "arn:aws:s3:::umi-raw/*"], False),
    ],
)
def test_robolakes_policies_grant_whole_buckets(spec: str, name: str, resources: list[str], writes: bool) -> None:
    policy = Policy.parse(spec)
    assert policy.minio_name == name
    first = policy.document()["Statement"][0]
    assert first["Resource"] == resources
    assert ("s3:*" in first["Action"]) is writes


@pytest.mark.parametrize("spec", ["", "admin", "bucket:", "bucket:UPPER", "bucket:a:rw", "bucket:x"])
def test_unknown_policies_are_refused_with_the_choices(spec: str) -> None:
    with pytest.raises(ConfigError, match="readonly, readwrite, bucket:NAME"):
        Policy.parse(spec)


def test_a_stored_policy_matches_only_when_it_grants_the_same() -> None:
    doc = Policy.parse("bucket:umi-raw:ro").document()
    reordered = json.loads(json.dumps(doc))
    reordered["Statement"][0]["Action"].reverse()
    reordered["Statement"].reverse()
    assert _normal(reordered) == _normal(doc)
    narrowed = json.loads(json.dumps(doc))
    narrowed["Statement"][0]["Resource"] = ["arn:aws:s3:::umi-raw/pose/*"]
    assert _normal(narrowed) != _normal(doc)
    conditioned = json.loads(json.dumps(doc))
    conditioned["Statement"][0]["Condition"] = {"StringLike": {"s3:prefix": ["pose/*"]}}
    assert _normal(conditioned) != _normal(doc)


def test_the_users_file_is_0600_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "accelerator" / "users.json"
    users = {"alice": User("alice", "s3cret-value", "readonly", "robolake-readonly")}
    save_users(path, users)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_users(path) == users
    assert "s3cret" not in repr(users["alice"])
    path.write_text("{not json")
    with pytest.raises(StateError, match="users add"):
        load_users(path)
    assert load_users(tmp_path / "none.json") == {}
