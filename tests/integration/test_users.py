"""A team's own credentials through the accelerator: cache hits for them, MinIO the judge of access."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from robolake.accelerator.admin import read_stats
from robolake.accelerator.principals import users_path
from robolake.stack.native import NativeStack
from robolake.stack.users import add_user, credentials_file, remove_user
from tests.integration.test_accelerator_conformance import boto3_client
from tests.stackutil import settings_env

pytestmark = pytest.mark.integration
ROBOLAKE = str(Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "robolake")
AddUser = Callable[[str], Any]


def stats(stack: NativeStack) -> dict[str, Any]:
    doc: dict[str, Any] = read_stats(stack.settings)
    return doc


def memory_hits(stack: NativeStack) -> int:
    return int(stats(stack)["tiers"]["memory"]["hits"])


@pytest.fixture
def buckets(stack: NativeStack) -> Iterator[list[str]]:
    """Two fresh buckets with one small object each, cached by root's reads."""
    s = stack.settings
    root = boto3_client(s.accelerator_endpoint, s.minio_root_user, s.minio_root_password)
    run = uuid.uuid4().hex[:8]
    names = [f"robolake-test-team-{run}-a", f"robolake-test-team-{run}-b"]
    for name in names:
        root.create_bucket(Bucket=name)
        for key in ("obj-1", "obj-2"):
            root.put_object(Bucket=name, Key=key, Body=f"{name}/{key}".encode() * 100)
            root.get_object(Bucket=name, Key=key)["Body"].read()
    yield names
    for name in names:
        for key in ("obj-1", "obj-2"):
            root.delete_object(Bucket=name, Key=key)
        root.delete_bucket(Bucket=name)


@pytest.fixture
def user(stack: NativeStack) -> Iterator[Callable[[str], Any]]:
    """Make a user with a policy; a client signed with its keys; every user removed afterwards."""
    made: list[str] = []

    def make(policy: str, name: str = "") -> Any:
        name = name or f"t-{uuid.uuid4().hex[:10]}"
        add_user(stack.settings, name, policy)
        made.append(name)
        return client_of(stack, name)

    yield make
    for name in made:
        if name in json.loads(users_path(stack.settings.state_dir).read_text())["users"]:
            remove_user(stack.settings, name)


def client_of(stack: NativeStack, name: str, secret: str | None = None) -> Any:
    keys = dict(line.split("=", 1) for line in credentials_file(stack.settings, name).read_text().split())
    return boto3_client(stack.settings.accelerator_endpoint, name, secret or keys["AWS_SECRET_ACCESS_KEY"])


def cache_marker(client: Any, bucket: str, key: str) -> str:
    answer = client.get_object(Bucket=bucket, Key=key)
    answer["Body"].read()
    return str(answer["ResponseMetadata"]["HTTPHeaders"].get("x-robolake-cache"))


def status_of(call: Callable[[], Any]) -> int:
    try:
        call()
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


def test_a_readonly_user_gets_cache_hits_and_403_for_a_put(
    stack: NativeStack, buckets: list[str], user: AddUser
) -> None:
    alice = user("readonly")
    bucket = buckets[0]
    assert cache_marker(alice, bucket, "obj-1") == "miss"  # MinIO's answer to alice herself: the allow
    before = memory_hits(stack)
    assert cache_marker(alice, bucket, "obj-1") == "hit-memory"
    assert cache_marker(alice, bucket, "obj-2") == "hit-memory"  # the allow covers the bucket
    assert memory_hits(stack) - before == 2
    assert status_of(lambda: alice.put_object(Bucket=bucket, Key="obj-1", Body=b"overwritten")) == 403
    root = boto3_client(
        stack.settings.minio_endpoints[0], stack.settings.minio_root_user, stack.settings.minio_root_password
    )
    assert root.get_object(Bucket=bucket, Key="obj-1")["Body"].read() == f"{bucket}/obj-1".encode() * 100


def test_a_user_without_access_to_a_bucket_gets_403_for_its_cached_objects(
    stack: NativeStack, buckets: list[str], user: AddUser
) -> None:
    allowed, other = buckets
    bob = user(f"bucket:{allowed}:ro")
    assert cache_marker(bob, allowed, "obj-1") == "miss"
    assert cache_marker(bob, allowed, "obj-1") == "hit-memory"
    for _ in range(3):  # cached by root, an allow for another bucket in hand: still MinIO's 403
        assert status_of(lambda: bob.get_object(Bucket=other, Key="obj-1")) == 403
        assert status_of(lambda: bob.head_object(Bucket=other, Key="obj-2")) == 403


def test_right_after_a_policy_change_the_old_bucket_is_403(
    stack: NativeStack, buckets: list[str], user: AddUser
) -> None:
    first, second = buckets
    name = f"t-{uuid.uuid4().hex[:10]}"
    carol = user(f"bucket:{first}:ro", name)
    cache_marker(carol, first, "obj-1")
    assert cache_marker(carol, first, "obj-2") == "hit-memory"
    add_user(stack.settings, name, f"bucket:{second}:ro")  # the same user, a new policy, the same keys
    assert status_of(lambda: carol.get_object(Bucket=first, Key="obj-2")) == 403
    assert cache_marker(carol, second, "obj-1") == "miss"
    assert cache_marker(carol, second, "obj-2") == "hit-memory"


def test_a_wrong_secret_for_a_known_user_gets_403(stack: NativeStack, buckets: list[str], user: AddUser) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    dave = user("readonly", name)
    cache_marker(dave, buckets[0], "obj-1")
    assert cache_marker(dave, buckets[0], "obj-1") == "hit-memory"
    impostor = client_of(stack, name, secret="not-the-secret-at-all")
    assert status_of(lambda: impostor.get_object(Bucket=buckets[0], Key="obj-1")) == 403


def test_a_removed_user_is_refused_within_a_second(stack: NativeStack, buckets: list[str], user: AddUser) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    erin = user("readonly", name)
    cache_marker(erin, buckets[0], "obj-1")
    assert cache_marker(erin, buckets[0], "obj-1") == "hit-memory"
    started = time.monotonic()
    remove_user(stack.settings, name)
    assert status_of(lambda: erin.get_object(Bucket=buckets[0], Key="obj-1")) == 403
    assert time.monotonic() - started < 1.0


def test_secrets_stay_in_0600_files_out_of_output_logs_and_argv(stack: NativeStack) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    env = settings_env(stack.settings)
    done = subprocess.run(
        [ROBOLAKE, "users", "add", name, "--policy", "readwrite", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    try:
        keys_file = credentials_file(stack.settings, name)
        secret = dict(line.split("=", 1) for line in keys_file.read_text().split())["AWS_SECRET_ACCESS_KEY"]
        assert json.loads(done.stdout)["credentials_file"] == str(keys_file)
        assert secret not in done.stdout + done.stderr
        listed = subprocess.run(
            [ROBOLAKE, "users", "list", "--json"], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        assert name in listed.stdout and secret not in listed.stdout
        for path in (keys_file, users_path(stack.settings.state_dir)):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert secret not in stack.settings.state_dir.joinpath("logs", "accelerator.log").read_text(errors="replace")
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    assert secret.encode() not in (proc / "cmdline").read_bytes()
                except OSError:
                    continue
    finally:
        remove_user(stack.settings, name)
    assert not keys_file.exists()
