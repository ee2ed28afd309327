"""Dataset versioning against the real lakeFS server of the session stack.

Every test works on branches of its own (a per-test "trunk" stands in for main, so the tests
leave main as they found it) and deletes them afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from robolake.errors import AuthError, ServiceUnavailableError
from robolake.stack.native import NativeStack
from robolake.stack.process import free_port
from robolake.versioning import (
    BadRequestError,
    ConflictError,
    IntegrityError,
    LakeFSClient,
    NotFoundError,
    content_checksum,
    diff_summary,
    put_dataset,
    read_dataset,
)
from robolake.versioning.dataset import SHA256_META
from tests.conftest import s3_client
from tests.integration.conftest import REPO, MakeBranch
from tests.stackutil import settings_env, sha256

pytestmark = pytest.mark.integration


def put_files(client: LakeFSClient, branch_name: str, files: dict[str, bytes]) -> None:
    for path, body in files.items():
        client.upload_object(REPO, branch_name, path, body)


def test_commit_metadata_appears_in_the_log(client: LakeFSClient, branch: MakeBranch) -> None:
    b = branch("meta")
    client.upload_object(REPO, b, "meta/episode_00000/pose.bin", os.urandom(1000))
    made = client.commit(REPO, b, "generated", {"seed": 42, "profile": "small", "episodes": 1})
    assert made.metadata == {"seed": "42", "profile": "small", "episodes": "1"}
    newest = next(client.log(REPO, b, limit=1))
    assert newest.id == made.id
    assert newest.message == "generated"
    assert newest.metadata == {"seed": "42", "profile": "small", "episodes": "1"}
    assert client.get_commit(REPO, b).metadata["seed"] == "42"


def test_branches_on_different_episodes_diff_merge_and_a_conflict(client: LakeFSClient, branch: MakeBranch) -> None:
    trunk = branch("trunk")
    p = f"merge-{uuid.uuid4().hex[:6]}/"
    base = {f"{p}episode_{i:05d}/{kind}.bin": os.urandom(500 + i) for i in (1, 2, 3) for kind in ("pose", "gripper")}
    put_files(client, trunk, base)
    client.commit(REPO, trunk, "base episodes")
    a, b, c = branch("a", trunk), branch("b", trunk), branch("c", trunk)

    a_new = {f"{p}episode_00001/pose.bin": b"pose from a", f"{p}episode_00004/pose.bin": b"new episode"}
    put_files(client, a, a_new)
    client.commit(REPO, a, "a: fix episode 1, add episode 4")
    put_files(client, b, {f"{p}episode_00002/gripper.bin": b"gripper from b"})
    client.delete_objects(REPO, b, [f"{p}episode_00003/pose.bin"])
    client.commit(REPO, b, "b: fix episode 2, drop a pose of episode 3")

    a_diff = list(client.diff(REPO, trunk, a))
    assert {(d.type, d.path) for d in a_diff} == {
        ("changed", f"{p}episode_00001/pose.bin"),
        ("added", f"{p}episode_00004/pose.bin"),
    }
    a_summary = diff_summary(a_diff)
    assert list(a_summary.episodes) == ["episode_00001", "episode_00004"]
    assert a_summary.episodes["episode_00001"].changed == (f"{p}episode_00001/pose.bin",)
    assert a_summary.episodes["episode_00004"].added == (f"{p}episode_00004/pose.bin",)
    assert a_summary.counts == {"added": 1, "removed": 0, "changed": 1, "conflict": 0}
    b_summary = diff_summary(client.diff(REPO, trunk, b))
    assert list(b_summary.episodes) == ["episode_00002", "episode_00003"]
    assert b_summary.episodes["episode_00002"].changed == (f"{p}episode_00002/gripper.bin",)
    assert b_summary.episodes["episode_00003"].removed == (f"{p}episode_00003/pose.bin",)

    client.merge(REPO, a, trunk, message="merge a", metadata={"reviewed": "yes"})
    merged_b = client.merge(REPO, b, trunk)
    assert client.get_commit(REPO, trunk).id == merged_b
    assert client.get_object(REPO, trunk, f"{p}episode_00001/pose.bin") == b"pose from a"
    assert client.get_object(REPO, trunk, f"{p}episode_00002/gripper.bin") == b"gripper from b"
    paths = {o.path for o in client.list_objects(REPO, trunk, p)}
    assert f"{p}episode_00004/pose.bin" in paths and f"{p}episode_00003/pose.bin" not in paths

    # c started before trunk moved, and changes the object a changed: a real conflict.
    put_files(client, c, {f"{p}episode_00001/pose.bin": b"pose from c", f"{p}episode_00005/pose.bin": b"x"})
    client.commit(REPO, c, "c: another fix of episode 1")
    with pytest.raises(ConflictError) as info:
        client.merge(REPO, c, trunk)
    assert info.value.paths == (f"{p}episode_00001/pose.bin",)
    assert f"{p}episode_00001/pose.bin" in str(info.value)
    assert client.get_commit(REPO, trunk).id == merged_b  # nothing was merged


def test_tag_pins_bytes_and_revert_restores_the_prior_state(client: LakeFSClient, branch: MakeBranch) -> None:
    trunk = branch("tag")
    path = f"tagged-{uuid.uuid4().hex[:6]}/episode_00000/pose.bin"
    first, second = os.urandom(20_000), os.urandom(20_000)
    client.upload_object(REPO, trunk, path, first)
    tagged = client.commit(REPO, trunk, "first")
    tag = f"v-{uuid.uuid4().hex[:8]}"
    try:
        assert client.create_tag(REPO, tag, trunk).commit_id == tagged.id
        assert tag in {t.id for t in client.list_tags(REPO)}
        client.upload_object(REPO, trunk, path, second)
        moved = client.commit(REPO, trunk, "second")
        assert sha256(client.get_object(REPO, tag, path)) == sha256(first)
        assert sha256(client.get_object(REPO, trunk, path)) == sha256(second)

        reverted = client.revert(REPO, trunk, moved.id)
        assert reverted.parents == (moved.id,)
        assert sha256(client.get_object(REPO, trunk, path)) == sha256(first)
        assert list(client.diff(REPO, tag, trunk, two_dot=True)) == []
    finally:
        client.delete_tag(REPO, tag)
    assert tag not in {t.id for t in client.list_tags(REPO)}


def make_dataset(root: Path, episodes: int) -> dict[str, bytes]:
    files = {
        f"episode_{i:05d}/{kind}.bin": os.urandom(3000 + 17 * i)
        for i in range(episodes)
        for kind in ("pose", "gripper")
    }
    files["meta/info.json"] = json.dumps({"episodes": episodes}).encode()
    for key, body in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
    return files


def test_put_dataset_then_read_at_the_commit_after_the_branch_moved(
    client: LakeFSClient,
    branch: MakeBranch,
    tmp_path: Path,
) -> None:
    b = branch("put")
    local = tmp_path / "local"
    original = make_dataset(local, episodes=5)
    seen: list[int] = []
    first = put_dataset(
        client,
        REPO,
        b,
        local,
        "datasets/cup",
        {"seed": 7, "profile": "small", "episodes": 5},
        lambda p: seen.append(p.objects_done),
    )
    assert sorted(seen) == list(range(1, len(original) + 1))
    assert first.uploaded == first.object_count == len(original)
    assert first.total_bytes == sum(len(v) for v in original.values())
    meta = first.commit.metadata
    assert meta["object_count"] == str(len(original)) and meta["total_bytes"] == str(first.total_bytes)
    assert meta["dataset"] == "cup" and meta["prefix"] == "datasets/cup/"
    assert meta["seed"] == "7" and meta["profile"] == "small" and meta["episodes"] == "5"
    assert meta["content_sha256"] == content_checksum({k: sha256(v) for k, v in original.items()})

    (local / "episode_00002" / "pose.bin").write_bytes(b"replaced")
    (local / "episode_00004" / "gripper.bin").unlink()
    second = put_dataset(client, REPO, b, local, "datasets/cup", {"seed": 8})
    assert (second.uploaded, second.deleted, second.object_count) == (1, 1, len(original) - 1)
    assert second.commit.parents == (first.commit.id,)

    got = read_dataset(client, REPO, first.commit.id, "datasets/cup", tmp_path / "at-first")
    assert got == {k: sha256(v) for k, v in original.items()}
    for key, body in original.items():
        assert (tmp_path / "at-first" / key).read_bytes() == body
    assert content_checksum(got) == meta["content_sha256"]
    now = read_dataset(client, REPO, b, "datasets/cup", tmp_path / "at-head")
    assert now["episode_00002/pose.bin"] == sha256(b"replaced") and "episode_00004/gripper.bin" not in now
    assert content_checksum(now) == second.content_sha256
    assert not list((tmp_path / "at-first").rglob("*.partial"))

    again = put_dataset(client, REPO, b, local, "datasets/cup", {"seed": 8}, if_changed=True)
    assert again.commit.id == second.commit.id and again.uploaded == again.deleted == 0
    forced = put_dataset(client, REPO, b, local, "datasets/cup", {"seed": 8})
    assert forced.commit.parents == (second.commit.id,)


def test_a_rerun_put_takes_over_what_an_interrupted_put_staged(
    client: LakeFSClient, branch: MakeBranch, tmp_path: Path
) -> None:
    # What a put stopped midway (lakeFS or the client killed) leaves: some files staged, none committed.
    b = branch("resume")
    local = tmp_path / "local"
    original = make_dataset(local, episodes=4)
    staged = sorted(original)[:3]
    for key in staged:
        client.upload_object(
            REPO, b, f"datasets/cup/{key}", original[key], metadata={SHA256_META: sha256(original[key])}
        )
    client.upload_object(REPO, b, "datasets/cup/episode_00009/stray.bin", b"not in the folder")
    head = client.get_commit(REPO, b).id

    done = put_dataset(client, REPO, b, local, "datasets/cup", if_changed=True)
    assert done.resumed == len(staged) + 1 and done.uploaded == len(original) - len(staged) and done.deleted == 1
    assert done.commit.parents == (head,)
    assert list(client.uncommitted(REPO, b)) == []
    got = read_dataset(client, REPO, done.commit.id, "datasets/cup", tmp_path / "back")
    assert got == {k: sha256(v) for k, v in original.items()}

    # A change outside the dataset's prefix is not the put's to take: refused, nothing written.
    client.upload_object(REPO, b, "elsewhere/notes.txt", b"someone else's work")
    (local / "episode_00000" / "pose.bin").write_bytes(b"changed")
    with pytest.raises(
        BadRequestError, match=r"uncommitted changes outside 'datasets/cup/' \(e.g. 'elsewhere/notes.txt'\)"
    ):
        put_dataset(client, REPO, b, local, "datasets/cup")
    assert [e.path for e in client.uncommitted(REPO, b)] == ["elsewhere/notes.txt"]


def test_read_dataset_detects_an_object_changed_behind_lakefs(
    client: LakeFSClient,
    branch: MakeBranch,
    tmp_path: Path,
    stack: NativeStack,
) -> None:
    b = branch("rot")
    local = tmp_path / "local"
    local.mkdir()
    body = os.urandom(1_500_000)  # above the accelerator's cache limit: reads reach MinIO
    (local / "episode_00000.bin").write_bytes(body)
    put_dataset(client, REPO, b, local, "rot")
    stat = client.stat_object(REPO, b, "rot/episode_00000.bin")
    bucket, _, key = stat.physical_address.removeprefix("s3://").partition("/")
    s = stack.settings
    s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password).put_object(
        Bucket=bucket, Key=key, Body=os.urandom(len(body))
    )
    with pytest.raises(IntegrityError, match=r"rot/episode_00000\.bin"):
        read_dataset(client, REPO, b, "rot", tmp_path / "out")


def test_zero_copy_import_of_a_raw_bucket_prefix(client: LakeFSClient, branch: MakeBranch, stack: NativeStack) -> None:
    s = stack.settings
    raw = s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)
    src = f"import-{uuid.uuid4().hex[:8]}"
    bodies = {f"episode_{i:05d}/pose.bin": os.urandom(2000 + i) for i in range(4)}
    for key, body in bodies.items():
        raw.put_object(Bucket="umi-raw", Key=f"{src}/{key}", Body=body)
    b = branch("import")
    dest = f"raw/{src}/"
    status = client.import_prefix(REPO, b, f"s3://umi-raw/{src}", dest, "import raw poses", {"source": "umi-raw"})
    assert status.completed and status.ingested_objects == len(bodies) and status.commit is not None
    assert status.commit.metadata["source"] == "umi-raw"
    assert client.get_commit(REPO, b).id == status.commit.id
    listed = {o.path: o for o in client.list_objects(REPO, status.commit.id, dest)}
    assert set(listed) == {dest + k for k in bodies}
    for key, body in bodies.items():
        obj = listed[dest + key]
        assert obj.physical_address == f"s3://umi-raw/{src}/{key}"  # recorded, not copied
        assert sha256(client.get_object(REPO, b, dest + key)) == sha256(body)


def test_unknown_repo_branch_ref_and_path_are_named(client: LakeFSClient) -> None:
    with pytest.raises(NotFoundError, match="repository 'no-such-repo'") as info:
        client.get_branch("no-such-repo", "main")
    assert (info.value.kind, info.value.name) == ("repository", "no-such-repo")
    with pytest.raises(NotFoundError, match="branch 'no-such-branch'") as info:
        client.commit(REPO, "no-such-branch", "x")
    assert (info.value.kind, info.value.name) == ("branch", "no-such-branch")
    with pytest.raises(NotFoundError, match="ref 'no-such-ref'") as info:
        next(client.diff(REPO, "main", "no-such-ref"))
    assert info.value.kind == "ref"
    with pytest.raises(NotFoundError, match="ref 'deadbeef01'"):
        client.get_object(REPO, "deadbeef01", "a/b.bin")
    with pytest.raises(NotFoundError, match=r"path 'no/such/object\.bin'") as info:
        client.stat_object(REPO, "main", "no/such/object.bin")
    assert info.value.kind == "path"


def test_bad_credentials_and_a_server_that_is_down(client: LakeFSClient) -> None:
    wrong = LakeFSClient(client.endpoint, "AKIAJWRONGWRONGWRONG", "not-the-secret")
    with pytest.raises(AuthError, match="AKIAJWRONGWRONGWRONG"):
        list(wrong.list_branches(REPO))
    down = LakeFSClient(f"http://127.0.0.1:{free_port()}", "AKIAJX", "y", timeout_s=5)
    hint = r"does not answer; is the stack running\? \(`robolake stack status`\)"
    with pytest.raises(ServiceUnavailableError, match=hint):
        down.get_commit(REPO, "main")


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "robolake"
    return subprocess.run(
        [str(exe), "version", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def cli_env(stack: NativeStack) -> dict[str, str]:
    env = settings_env(stack.settings)
    env.pop("ROBOLAKE_LAKEFS_ACCESS_KEY_ID", None)
    env.pop("ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY", None)
    return env


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_cli_errors_are_one_line(cli_env: dict[str, str]) -> None:
    assert_one_line_error(run_cli(cli_env, "branch", "delete", "no-such-branch-x"), "'no-such-branch-x'")
    assert_one_line_error(run_cli(cli_env, "log", "no-such-ref-x"), "ref 'no-such-ref-x'")
    assert_one_line_error(run_cli(cli_env, "log", "--repo", "no-such-repo-x"), "repository 'no-such-repo-x'")
    wrong = {
        **cli_env,
        "ROBOLAKE_LAKEFS_ACCESS_KEY_ID": "AKIAJWRONGWRONGWRONG",
        "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": "nope",
    }
    assert_one_line_error(run_cli(wrong, "branch", "list"), "AKIAJWRONGWRONGWRONG", "HTTP 401")
    down = {**cli_env, "ROBOLAKE_LAKEFS_PORT": str(free_port())}
    assert_one_line_error(run_cli(down, "branch", "list"), "does not answer", "robolake stack status")
    assert_one_line_error(run_cli(cli_env, "commit", "main", "-m", "x", "--meta", "novalue"), "KEY=VALUE")


def test_cli_put_log_diff_read_round_trip(cli_env: dict[str, str], tmp_path: Path, client: LakeFSClient) -> None:
    name = f"t-cli-{uuid.uuid4().hex[:8]}"
    local = tmp_path / "local"
    original = make_dataset(local, episodes=2)
    try:
        created = run_cli(cli_env, "branch", "create", name, "--from", "main", "--json")
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["id"] == name
        put = run_cli(cli_env, "put", str(local), "--branch", name, "--prefix", "cli/ds", "--meta", "seed=5", "--json")
        assert put.returncode == 0, put.stderr
        done = json.loads(put.stdout)
        assert done["object_count"] == len(original) and done["commit"]["metadata"]["seed"] == "5"
        log = json.loads(run_cli(cli_env, "log", name, "-n", "1", "--json").stdout)
        assert log[0]["id"] == done["commit"]["id"] and log[0]["metadata"]["content_sha256"] == done["content_sha256"]
        diff = json.loads(run_cli(cli_env, "diff", "main", name, "--json").stdout)
        assert sorted(diff["summary"]["episodes"]) == ["episode_00000", "episode_00001"]
        assert diff["summary"]["counts"]["added"] == len(original)
        read = run_cli(cli_env, "read", done["commit"]["id"], "cli/ds", str(tmp_path / "out"), "--json")
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout)["content_sha256"] == done["content_sha256"]
        assert json.loads(read.stdout)["files"] == {k: sha256(v) for k, v in original.items()}
    finally:
        with contextlib.suppress(NotFoundError):
            client.delete_branch(REPO, name)
