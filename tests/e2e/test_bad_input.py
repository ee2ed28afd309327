"""Bad input, as a user types it: every command, a missing or nonexistent value of each kind.

The sweep walks the whole `robolake` command tree, so a new command without a row here fails.
Each invocation runs the real CLI in a subprocess against the session stack: what matters is
what a user sees (one line naming the value, the exit code, never a Python traceback).
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from robolake.cli.main import cli
from robolake.stack.native import NativeStack
from robolake.stack.process import free_port
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ROBOLAKE = str(ROOT / ".venv" / "bin" / "robolake")
CLOSED = f"127.0.0.1:{free_port()}"  # nothing listens here
NO_DIR = "/nonexistent/robolake-input"


def leaf_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> set[str]:
    names: set[str] = set()
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # the top group loads its commands when asked
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            names |= leaf_commands(command, (*path, name))
        else:
            names.add(" ".join((*path, name)))
    return names


# command -> invocations: the command with nothing, then a nonexistent value of each kind it takes.
# Commands that start long-running work get only values that are refused before any work starts.
SWEEP: dict[str, list[list[str]]] = {
    "stack up": [
        ["--bogus-flag"],
        ["--cluster", "{tmp}/no-such-cluster.yml", "--host-id", "1"],
        ["--cluster", "{file}", "--host-id", "1"],
        ["--host-id", "2"],
    ],
    "certs": [[], ["--cluster", "{tmp}/no-such-cluster.yml"], ["--cluster", "{file}"]],
    "users add": [
        [],
        ["x"],
        ["alice", "--policy", "superuser"],
        ["a b", "--policy", "readonly"],
        ["al", "--policy", "bucket:"],
    ],
    "users list": [["--bogus-flag"]],
    "users remove": [[], ["no-such-user"]],
    "stack down": [["--bogus-flag"]],
    "stack build": [["--bogus-flag"]],
    "stack status": [["--bogus-flag"]],
    "stack env": [["extra-argument"], ["--compose", "{tmp}/no-such-compose.yml"], ["--compose", "{file}"]],
    "stack images": [["--base", "alpine"], ["--bogus-flag"]],
    "stack logs": [["no-such-component"], ["lakefs", "--lines", "many"]],
    "stack bootstrap": [
        [],
        ["--minio-endpoint", f"http://{CLOSED}", "--wait", "1"],
        ["--minio-endpoint", "not a url", "--wait", "1"],
    ],
    "buckets setup": [["--endpoint", f"http://{CLOSED}"], ["--endpoint", "ftp://x"]],
    "version branch create": [
        [],
        ["t-sweep", "--from", "no-such-ref"],
        ["t-sweep", "--repo", "no-such-repo"],
        ["bad name!"],
    ],
    "version branch list": [["--repo", "no-such-repo"]],
    "version branch delete": [[], ["no-such-branch"]],
    "version commit": [[], ["no-such-branch", "-m", "x"], ["main"]],
    "version log": [["no-such-ref"], ["main", "--limit", "-3"], ["main", "--repo", "no-such-repo"]],
    "version diff": [[], ["main", "no-such-ref"], ["no-such-ref", "main"]],
    "version merge": [
        [],
        ["no-such-branch", "main"],
        ["main", "no-such-branch"],
        ["main", "main", "--strategy", "sideways"],
    ],
    "version tag create": [[], ["t-sweep-tag", "no-such-ref"]],
    "version tag list": [["--repo", "no-such-repo"]],
    "version tag delete": [[], ["no-such-tag"]],
    "version revert": [[], ["main", "no-such-ref"], ["no-such-branch", "main"]],
    "version put": [
        [],
        [NO_DIR, "--branch", "main", "--prefix", "x"],
        ["{file}", "--branch", "main", "--prefix", "x"],
        ["{dir}", "--branch", "no-such-branch", "--prefix", "x"],
    ],
    "version read": [[], ["no-such-ref", "datasets", "{tmp}/out"], ["main", "no/such/prefix", "{tmp}/out2"]],
    "version import": [
        [],
        ["--from", "s3://no-such-bucket/x/", "--branch", "main"],
        ["--from", "http://x/y", "--branch", "main"],
        ["--from", "s3://umi-raw/x/", "--branch", "nope"],
    ],
    "version install-hook": [
        ["--branch", "no-such-branch"],
        ["--url", f"http://{CLOSED}/hook?token=x", "--branch", "no-such-branch"],
    ],
    "accelerator serve": [["--port", "99999"], ["--upstream", "not-a-host-port"]],
    "accelerator stats": [["--admin-url", f"http://{CLOSED}"], ["--admin-url", "nonsense"]],
    "hooks serve": [["--port", "-1"], ["--port", "99999"], ["--allow-from", "10.0.0.300/8"]],
    "console": [["--port", "-1"], ["--port", "99999"], [], ["--host", "256.0.0.1"]],  # []: the stack's console has it
    "bench accelerator": [
        ["--concurrency", "0"],
        ["--obj-size", "huge"],
        ["--parts", "warm,fast"],
        ["--large-size", "big"],
        ["--large-objects", "0"],
    ],
    "bench small-files": [["--levels", "a,b"], ["--endpoint", "not a host"]],
    "bench upload": [["--objects", "0"], ["--obj-size", "huge"]],
    "bench large-file-streaming": [["--sizes", "huge"], ["--levels", "x"]],
    "bench mixed-workload": [["--mix", "loader=x"], ["--paths", "nowhere"]],
    "bench dataloader": [["--episodes", "0"], ["--paths", "nowhere"]],
    "bench warp-check": [["--small-size", "huge"], ["--duration", "never"]],
    "bench compare": [[], ["no-such-run", "no-such-run-either"], ["{file}", "{file}"]],
    "generate": [["--profile", "huge"], ["--episodes", "0", "--out", "{tmp}/gen"], ["--out", "{file}"]],
    "upload": [
        [],
        [NO_DIR, "--bucket", "umi-raw"],
        ["{dir}", "--bucket", "no-such-bucket"],
        ["{dir}", "--bucket", "umi-raw", "--endpoint", CLOSED],
    ],
    "runs list": [["--commit"], ["--bogus-flag"]],
    "reliability": [["--profile", "huge"], ["--seed", "-1"], ["--bogus-flag"]],
    "export lerobot": [
        [],
        ["--ref", "main", "--dataset", "x"],
        ["--ref", "no-such-ref", "--dataset", "x", "--out", "{tmp}/lr1"],
        ["--ref", "main", "--dataset", "no/such/path/", "--out", "{tmp}/lr2"],
        ["--ref", "main", "--dataset", "x", "--out", "{tmp}/lr3", "--fps", "29.97"],
        ["--ref", "main", "--dataset", "x", "--out", "{dir}"],
        ["--ref", "main", "--dataset", "x", "--into-branch", "no-such-branch", "--lake-path", "lr"],
        ["--ref", "main", "--dataset", "x", "--into-branch", "main"],
    ],
    "process replay-buffer": [
        [],
        ["--ref", "main"],
        ["--ref", "no-such-ref", "--dataset", "x", "--to-branch", "main"],
        ["--ref", "main", "--dataset", "no/such/path"],
        ["--ref", "main", "--dataset", "x", "--to-branch", "no-such-branch"],
        ["--ref", "main", "--dataset", "x", "--scheduler", "not-an-address"],
        ["--ref", "main", "--dataset", "x", "--scheduler", f"tcp://{CLOSED}", "--single-process"],
        ["--ref", "main", "--dataset", "x", "--workers", "0"],
        ["--ref", "main", "--dataset", "x", "--out-path", "../up.zarr.zip"],
        ["--ref", "main", "--dataset", "x", "--out-path", "buffer.txt"],
        ["--ref", "main", "--dataset", "x", "--read-from", "disk"],
    ],
    "bench process": [["--episodes", "0"], ["--profile", "huge"], ["--workers", "0"]],
    "process stats": [
        [],
        ["--ref", "no-such-ref", "--dataset", "x"],
        ["--ref", "main", "--dataset", "no/such/path/"],
        ["--ref", "main", "--dataset", "x", "--scheduler", "nonsense"],
        ["--ref", "main", "--dataset", "x", "--to-branch", "no-such-branch"],
    ],
    "process lerobot": [
        [],
        ["--ref", "main"],
        ["--ref", "no-such-ref", "--dataset", "x", "--to-branch", "main"],
        ["--ref", "main", "--dataset", "no/such/path/"],
        ["--ref", "main", "--dataset", "x", "--to-branch", "no-such-branch"],
        ["--ref", "main", "--dataset", "x", "--fps", "0"],
        ["--ref", "main", "--dataset", "x", "--codec", "vp9"],
        ["--ref", "main", "--dataset", "x", "--action", "later"],
        ["--ref", "main", "--dataset", "x", "--task", " "],
        ["--ref", "main", "--dataset", "x", "--scheduler", "not-an-address"],
        ["--ref", "main", "--dataset", "x", "--out-path", "../up"],
    ],
    "process clean-staging": [
        ["--older-than", "soon"],
        ["--older-than", "-1d"],
        ["--job", "stats"],
        ["--bogus-flag"],
    ],
    "process transcode": [
        [],
        ["--ref", "main", "--dataset", "x"],
        ["--ref", "no-such-ref", "--dataset", "x", "--codec", "h264", "--size", "64x48", "--to-branch", "main"],
        ["--ref", "main", "--dataset", "no/such/path", "--codec", "h264", "--size", "64x48"],
        ["--ref", "main", "--dataset", "x", "--codec", "vp9", "--size", "64x48"],
        ["--ref", "main", "--dataset", "x", "--codec", "h264", "--size", "64"],
        ["--ref", "main", "--dataset", "x", "--codec", "h264", "--size", "63x48"],
        ["--ref", "main", "--dataset", "x", "--codec", "h264", "--size", "0x0"],
        ["--ref", "main", "--dataset", "x", "--codec", "h264", "--size", "64x48", "--to-branch", "no-such-branch"],
        ["--ref", "main", "--dataset", "x", "--codec", "h264", "--size", "64x48", "--workers", "0"],
    ],
    "ingest": [
        [],
        [f"{NO_DIR}.zarr.zip"],
        ["{file}"],
        [f"http://{CLOSED}/task.zarr.zip"],
        ["https://example.invalid/x.zarr.zip", "--sha256", "nothex"],
    ],
}


def test_the_sweep_covers_every_command() -> None:
    assert leaf_commands() == set(SWEEP)


def _fill(args: list[str], tmp: Path) -> list[str]:
    return [a.format(tmp=tmp, file=tmp / "not-a-dataset.txt", dir=tmp / "dir") for a in args]


def test_no_command_answers_bad_input_with_a_traceback(stack: NativeStack, tmp_path: Path) -> None:
    (tmp_path / "not-a-dataset.txt").write_text("hello\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.json").write_text("{}")
    env = settings_env(stack.settings)
    runs = [(cmd, args) for cmd, variants in SWEEP.items() for args in variants]

    def run(item: tuple[str, list[str]]) -> tuple[str, list[str], Any]:
        cmd, args = item
        done = subprocess.run(
            [ROBOLAKE, *cmd.split(), *_fill(args, tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return cmd, args, done

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, runs))
    bad = []
    for cmd, args, done in results:
        output = done.stdout + done.stderr
        if "Traceback" in output or done.returncode == 0:
            bad.append(f"robolake {cmd} {' '.join(args)} -> {done.returncode}: {output[-600:]}")
    assert bad == [], "\n".join(bad)


def _robolake(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROBOLAKE, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


BAD_PREFIXES = ["../../x", "/abs", "a//b", "a/./b", "x\x01y"]


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_a_prefix_that_climbs_out_is_refused_everywhere_and_writes_nothing(
    stack: NativeStack,
    tmp_path: Path,
    prefix: str,
    client: Any,
) -> None:
    from robolake.versioning import LakeFSClient

    (tmp_path / "a.json").write_text("{}")
    env = settings_env(stack.settings)
    repo = stack.settings.lakefs_repo
    with LakeFSClient.from_settings(stack.settings) as lakefs:
        head = lakefs.get_commit(repo, "main").id
        invocations = [
            ["version", "put", str(tmp_path), "--branch", "main", "--prefix", prefix],
            ["version", "read", "main", prefix, str(tmp_path / "out")],
            ["version", "import", "--from", "s3://umi-raw/pose/", "--branch", "main", "--to", prefix],
            ["version", "import", "--from", f"s3://umi-raw/{prefix}", "--branch", "main"],
            ["version", "log", "main", "--prefix", prefix],
            ["version", "diff", "main", "main", "--prefix", prefix],
            ["upload", str(tmp_path), "--bucket", "umi-raw", "--prefix", prefix],
        ]
        for args in invocations:
            done = _robolake(env, *args)
            shown = " ".join(args)
            assert done.returncode == 2, f"{shown}: {done.returncode} {done.stdout}{done.stderr}"
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and repr(prefix)[1:-1] in lines[0], f"{shown}: {done.stderr}"
            assert "not a usable key prefix" in lines[0] and "Traceback" not in done.stderr
        assert lakefs.get_commit(repo, "main").id == head
        assert list(lakefs.uncommitted(repo, "main")) == []
    listed = client.list_objects_v2(Bucket="umi-raw", Prefix="a.json").get("KeyCount", 0)
    assert listed == 0


@pytest.mark.parametrize("name", ["../up", "a/b", "x\ty", ".hidden"])
def test_a_bad_dataset_name_is_refused_before_anything_is_written(
    stack: NativeStack, tmp_path: Path, name: str
) -> None:
    from robolake.umi import generate_dataset

    data = tmp_path / "ds"
    generate_dataset(data, profile="tiny", episodes=1, seed=2)
    env = settings_env(stack.settings)
    for cmd in (
        [ROBOLAKE, "ingest", str(data), "--name", name],
        [sys.executable, str(ROOT / "download_umi_data.py"), "--upload", "--out", str(data), "--name", name],
        [ROBOLAKE, "version", "put", str(data), "--branch", "main", "--prefix", "datasets/x", "--name", name],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 2, done.stdout + done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "is not usable in object keys" in last and "Traceback" not in done.stderr
