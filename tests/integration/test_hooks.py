"""The UMI validation hook against the session stack's lakeFS and hooks server.

The stack guards robotics-data's main. Tests that commit or merge guard a branch of their own
(a per-test "trunk" with the hook installed), so main stays as it was; branches are deleted
afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml

from robolake.stack.native import NativeStack
from robolake.umi import generate_dataset
from robolake.versioning import LakeFSClient, PreconditionFailedError, put_dataset
from robolake.versioning.hooks import (
    ACTION_PATH,
    REPLY_PREFIX,
    HookInstallError,
    action_yaml,
    hook_reasons,
    install_validation_hook,
    stack_hook_url,
    validation_hook_url,
)
from tests.integration.conftest import REPO, MakeBranch
from tests.stackutil import settings_env

pytestmark = pytest.mark.integration


@pytest.fixture
def hook_url(stack: NativeStack) -> str:
    return stack_hook_url(stack.settings)


@pytest.fixture
def trunk(client: LakeFSClient, branch: MakeBranch, hook_url: str) -> str:
    """A branch from main guarded by the hook, standing in for main."""
    name = branch("trunk")
    assert install_validation_hook(client, REPO, name, hook_url) is not None
    return name


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("umi") / "tiny"
    generate_dataset(out, profile="tiny", seed=1)
    return out


def test_the_stack_guards_main_and_installing_again_changes_nothing(
    client: LakeFSClient,
    stack: NativeStack,
    hook_url: str,
) -> None:
    head = client.get_branch(REPO, "main").commit_id
    action = client.get_object(REPO, "main", ACTION_PATH)
    assert action == action_yaml("main", hook_url)
    assert stack.state.credentials().hooks_token.encode() not in action  # lakeFS has it from its environment
    assert install_validation_hook(client, REPO, "main", hook_url) is None
    assert stack.up() == []
    assert client.get_branch(REPO, "main").commit_id == head
    action = yaml.safe_load(client.get_object(REPO, "main", ACTION_PATH))
    assert set(action["on"]) == {"pre-commit", "pre-merge"}
    properties = action["hooks"][0]["properties"]
    assert properties["url"] == f"{stack.settings.hooks_endpoint}/lakefs/validate-umi"  # no token in it
    assert properties["headers"] == {"Authorization": "Bearer {{ ENV.LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN }}"}


def test_a_valid_episode_set_merges(client: LakeFSClient, branch: MakeBranch, trunk: str, episodes: Path) -> None:
    feature = branch("valid", trunk)
    put_dataset(client, REPO, feature, episodes, "umi/cup")
    with hook_reasons(client, REPO):
        merged = client.merge(REPO, feature, trunk)
    assert client.get_branch(REPO, trunk).commit_id == merged
    landed = {o.path for o in client.list_objects(REPO, trunk, "umi/cup/")}
    assert {
        "umi/cup/replay_buffer/dataset.zarr.zip",
        "umi/cup/pose/episode_00001.json",
        "umi/cup/gripper/episode_00000.json",
        "umi/cup/video/episode_00001.mp4",
    } <= landed


def test_a_truncated_replay_buffer_fails_the_merge_and_the_trunk_is_unchanged(
    client: LakeFSClient,
    branch: MakeBranch,
    trunk: str,
    episodes: Path,
) -> None:
    main_head = client.get_branch(REPO, "main").commit_id
    feature = branch("truncated", trunk)
    put_dataset(client, REPO, feature, episodes, "umi/cut")
    whole = (episodes / "replay_buffer" / "dataset.zarr.zip").read_bytes()
    client.upload_object(REPO, feature, "umi/cut/replay_buffer/dataset.zarr.zip", whole[: len(whole) // 2])
    client.commit(REPO, feature, "cut the replay buffer in half")
    head = client.get_branch(REPO, trunk).commit_id

    with pytest.raises(PreconditionFailedError) as info, hook_reasons(client, REPO):
        client.merge(REPO, feature, trunk)
    message = str(info.value)
    assert "the validation hook refused it: umi/cut/replay_buffer/dataset.zarr.zip: truncated" in message, message
    assert "\n" not in message
    assert client.get_branch(REPO, trunk).commit_id == head
    assert not list(client.list_objects(REPO, trunk, "umi/cut/"))
    assert client.get_branch(REPO, "main").commit_id == main_head


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _wide_gripper(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["width_m"][3] = 0.5
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("relpath", "damage", "problem"),
    [
        ("pose/episode_00000.json", _cut, "is not valid JSON"),
        ("gripper/episode_00001.json", _wide_gripper, r"width_m\[3\] = 0.5 m is outside 0.0..0.2 m"),
        ("video/episode_00000.mp4", _cut, "not a readable MP4"),
    ],
)
def test_a_pre_commit_with_a_damaged_file_is_rejected(
    client: LakeFSClient,
    branch: MakeBranch,
    hook_url: str,
    episodes: Path,
    relpath: str,
    damage: Callable[[bytes], bytes],
    problem: str,
) -> None:
    guarded = branch("commit")
    install_validation_hook(client, REPO, guarded, hook_url)
    head = client.get_branch(REPO, guarded).commit_id
    path = f"umi/bad/{relpath}"
    client.upload_object(REPO, guarded, path, damage((episodes / relpath).read_bytes()))

    with pytest.raises(PreconditionFailedError, match=rf"refused it: {path}: {problem}"), hook_reasons(client, REPO):
        client.commit(REPO, guarded, "damaged episode")
    assert client.get_branch(REPO, guarded).commit_id == head
    assert [e.path for e in client.uncommitted(REPO, guarded)] == [path]  # still staged, for the user to fix

    client.upload_object(REPO, guarded, path, (episodes / relpath).read_bytes())
    with hook_reasons(client, REPO):
        assert client.commit(REPO, guarded, "repaired episode").parents == (head,)


def test_the_endpoint_rejects_a_wrong_or_missing_token(stack: NativeStack, hook_url: str) -> None:
    event = {"event_type": "pre-commit", "repository_id": REPO, "branch_id": "main", "source_ref": "main"}
    endpoint = stack.settings.hooks_endpoint
    for url in (validation_hook_url(endpoint, "not-the-token"), f"{endpoint}/lakefs/validate-umi"):
        answer = requests.post(url, json=event, timeout=30)
        assert answer.status_code == 401, answer.text
        assert answer.text.startswith(REPLY_PREFIX + "missing or wrong token")
    token = stack.state.credentials().hooks_token
    bearer = {"Authorization": f"Bearer {token}"}
    right = requests.post(hook_url, json={**event, "event_type": "pre-create-tag"}, headers=bearer, timeout=30)
    assert right.status_code == 400 and "'pre-create-tag' events are not validated" in right.text


def test_install_hook_command(stack: NativeStack, client: LakeFSClient, branch: MakeBranch) -> None:
    target = branch("cli")
    env = settings_env(stack.settings)
    cmd = [str(Path(sys.executable).parent / "robolake"), "version", "install-hook", "--branch", target, "--json"]

    def run() -> dict[str, str | None]:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert stack.state.credentials().hooks_token not in done.stdout + done.stderr
        return dict(json.loads(done.stdout))

    first = run()
    assert first["commit_id"] == client.get_branch(REPO, target).commit_id
    assert run()["commit_id"] is None  # installed already: nothing committed
    assert yaml.safe_load(client.get_object(REPO, target, ACTION_PATH))["on"]["pre-merge"] == {"branches": [target]}


def test_an_install_the_hook_refuses_fails_and_leaves_the_branch_as_it_was(
    client: LakeFSClient,
    branch: MakeBranch,
    stack: NativeStack,
    hook_url: str,
) -> None:
    target = branch("refused")
    head = client.get_branch(REPO, target).commit_id
    wrong = validation_hook_url(stack.settings.hooks_endpoint, "not-the-token")
    with pytest.raises(PreconditionFailedError, match=r"install commit and it did not pass \(missing or wrong token"):
        install_validation_hook(client, REPO, target, wrong)
    assert client.get_branch(REPO, target).commit_id == head
    assert list(client.uncommitted(REPO, target)) == []
    assert client.get_object(REPO, target, ACTION_PATH) == action_yaml("main", hook_url)  # main's, inherited

    client.upload_object(REPO, target, "notes/wip.txt", b"someone's work in progress")
    with pytest.raises(HookInstallError, match=r"1 uncommitted change\(s\) \('notes/wip.txt'\)"):
        install_validation_hook(client, REPO, target, hook_url)
    assert [e.path for e in client.uncommitted(REPO, target)] == ["notes/wip.txt"]
