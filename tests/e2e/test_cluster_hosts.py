"""A cluster across three hosts, made on this machine with network namespaces, all TLS.

Three namespaces joined by veth pairs to a bridge stand in for three machines. `robolake certs`
makes the CA and each host's certificate from the cluster file; in each namespace `robolake stack
up --cluster F --host-id N` runs that host's MinIO node (host 1 also the accelerator, and lakeFS
on its own PostgreSQL with the hooks server; started last, it sets the cluster up). Through the
accelerator and lakeFS (https, verified with the CA) objects are written, committed and read,
and main refuses a broken replay buffer; then host 3's link goes down: reads, writes and commits
go on; after the link comes back and the node heals, every acknowledged write reads back through
host 3's own node.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from botocore.config import Config

from robolake.errors import ConfigError
from robolake.stack.postgres import find_bindir
from robolake.versioning.client import LakeFSClient
from robolake.versioning.errors import PreconditionFailedError
from robolake.versioning.hooks import explain_hook_failure

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ROBOLAKE = str(ROOT / ".venv/bin/robolake")
Hosts = tuple[list[str], list[str], list[str]]  # links (bridge side), namespaces, addresses


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr}")
    return done


@pytest.fixture
def three_hosts() -> Iterator[Hosts]:
    """(each host's link, bridge side; namespaces; addresses); everything removed after."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    tag = f"rl{secrets.token_hex(2)}"
    subnet = f"10.{77 + int(tag[2:4], 16) % 100}.{int(tag[4:], 16)}"
    bridge, hosts = f"{tag}br", [f"{tag}h{i}" for i in (1, 2, 3)]
    links = [f"{tag}v{i}" for i in (1, 2, 3)]
    addresses = [f"{subnet}.{i}" for i in (1, 2, 3)]
    forward = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    made = subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a bridge here (ip link add: {made.stderr.strip()})")
    try:
        sh("ip", "addr", "add", f"{subnet}.254/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        # A firewall that drops forwarded packets (a Docker engine sets that) would drop bridged ones too.
        if shutil.which("iptables"):
            sh("iptables", "-I", *forward, check=False)
        for ns, link, address in zip(hosts, links, addresses, strict=True):
            peer = f"{link}p"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", link, "type", "veth", "peer", "name", peer)
            sh("ip", "link", "set", peer, "netns", ns)
            sh("ip", "link", "set", link, "master", bridge, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", peer)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield links, hosts, addresses
    finally:
        for ns, link in zip(hosts, links, strict=True):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            sh("ip", "link", "del", link, check=False)
            sh("ip", "netns", "del", ns, check=False)
        if shutil.which("iptables"):
            sh("iptables", "-D", *forward, check=False)
        sh("ip", "link", "del", bridge, check=False)


def _in(ns: str, *argv: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _wait(what: str, probe: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(1)


@pytest.fixture
def lake_dir() -> Iterator[Path]:
    """The hosts' files: a short path every user may traverse (PostgreSQL runs as its own user)."""
    try:
        find_bindir()
    except ConfigError as exc:
        pytest.skip(str(exc))
    path = Path(tempfile.mkdtemp(prefix="rlh"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(900)
def test_three_hosts_over_tls_survive_one_cut_off(
    three_hosts: tuple[str, list[str], list[str]], lake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    links, hosts, addresses = three_hosts
    tmp_path = lake_dir
    doc = {
        "tls": {"dir": "certs"},
        "allow_root_disk": True,  # the three "hosts" share this machine's disk
        "minio": {"port": 9000, "console_port": 9090, "drives": 2},
        "accelerator": {"port": 9100, "admin_port": 9110},
        "hosts": [
            {"name": f"host{i}", "address": a, "data": f"host{i}", "accelerator": i == 1, "lakefs": i == 1}
            for i, a in enumerate(addresses, start=1)
        ],
    }
    cluster = tmp_path / "cluster.yml"
    cluster.write_text(yaml.safe_dump(doc))
    env = {
        **os.environ,
        "MINIO_ROOT_USER": "robolake-hosts",
        "MINIO_ROOT_PASSWORD": secrets.token_hex(16),
        "ROBOLAKE_WEBHOOK_TOKEN": secrets.token_hex(16),
        "ROBOLAKE_ADMIN_TOKEN": secrets.token_hex(16),
        "LAKEFS_AUTH_ENCRYPT_SECRET_KEY": secrets.token_hex(16),
        "ROBOLAKE_LAKEFS_ACCESS_KEY_ID": "AKIAJROBOLAKEHOSTS01",
        "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "ROBOLAKE_HOOKS_TOKEN": secrets.token_hex(16),
        "ROBOLAKE_ENV_FILE": "/nonexistent/.env",
    }
    # No secret, no start: there are no defaults for a cluster across hosts.
    bare = {k: v for k, v in env.items() if k != "ROBOLAKE_ADMIN_TOKEN"}
    refused = _in(hosts[0], ROBOLAKE, "stack", "up", "--cluster", str(cluster), "--host-id", "1", env=bare)
    assert refused.returncode != 0 and "set ROBOLAKE_ADMIN_TOKEN" in refused.stderr, refused.stderr

    made = subprocess.run([ROBOLAKE, "certs", "--cluster", str(cluster)], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    ca = tmp_path / "certs" / "ca.crt"
    assert (tmp_path / "certs/host2/private.key").stat().st_mode & 0o777 == 0o600

    for i in (3, 2, 1):  # the lakeFS host last: its `up` sets up the cluster the others form
        up = _in(hosts[i - 1], ROBOLAKE, "stack", "up", "--cluster", str(cluster), "--host-id", str(i), env=env)
        assert up.returncode == 0, up.stdout + up.stderr
    assert "installed the UMI validation hook on robotics-data/main" in up.stderr, up.stderr
    status = _in(hosts[0], ROBOLAKE, "stack", "status", "--cluster", str(cluster), "--host-id", "1", env=env)
    assert status.returncode == 0, status.stderr
    assert [line.split()[0] for line in status.stderr.splitlines()] == [
        "minio",
        "accelerator",
        "postgres",
        "lakefs",
        "hooks",
    ], status.stderr
    accelerator = f"https://{addresses[0]}:9100"

    def ready() -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"https://{addresses[0]}:9000/minio/health/cluster", verify=str(ca), timeout=3).ok
        return False

    _wait("the cluster of three hosts did not form", ready, 120)
    s3 = boto3.client(
        "s3",
        endpoint_url=accelerator,
        aws_access_key_id=env["MINIO_ROOT_USER"],
        aws_secret_access_key=env["MINIO_ROOT_PASSWORD"],
        region_name="us-east-1",
        verify=str(ca),
        config=Config(retries={"max_attempts": 6, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )
    assert "umi-raw" in [b["Name"] for b in s3.list_buckets()["Buckets"]]  # made by host 1's set-up
    acknowledged: dict[str, bytes] = {}
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    lakefs = LakeFSClient(
        f"https://{addresses[0]}:8000", env["ROBOLAKE_LAKEFS_ACCESS_KEY_ID"], env["ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY"]
    )

    def commit_and_read(name: str) -> None:
        """A branch, an episode staged and committed; the commit reads back byte-identical."""
        lakefs.create_branch("robotics-data", name, "main")
        body = os.urandom(300_000)
        lakefs.upload_object("robotics-data", name, f"{name}/episode.bin", body)
        commit = lakefs.commit("robotics-data", name, f"episode of {name}", {"host": "cluster"})
        assert lakefs.get_object("robotics-data", commit.id, f"{name}/episode.bin") == body

    commit_and_read("before-cut")
    # main is guarded by the validation hook, served on host 1's loopback.
    lakefs.upload_object("robotics-data", "main", "broken/replay_buffer/dataset.zarr.zip", b"not a zip at all")
    with pytest.raises(PreconditionFailedError) as hook_refusal:
        lakefs.commit("robotics-data", "main", "a broken replay buffer")
    assert "validation hook refused it" in str(explain_hook_failure(lakefs, "robotics-data", hook_refusal.value))
    lakefs.reset_object("robotics-data", "main", "broken/replay_buffer/dataset.zarr.zip")

    def write(prefix: str, count: int) -> None:
        for n in range(count):
            key, body = f"{prefix}/{n:04d}.bin", os.urandom(2000 + n)
            s3.put_object(Bucket="umi-raw", Key=key, Body=body)
            acknowledged[key] = body
            assert s3.get_object(Bucket="umi-raw", Key=key)["Body"].read() == body

    write("before", 30)
    # Host 3 cut off: its link to the bridge goes down.
    sh("ip", "link", "set", links[2], "down")
    write("during", 30)
    commit_and_read("during-cut")
    for key in list(acknowledged)[:30]:
        assert s3.get_object(Bucket="umi-raw", Key=key)["Body"].read() == acknowledged[key]
    sh("ip", "link", "set", links[2], "up")
    _wait("the cluster did not take host 3 back", ready, 120)

    node3 = boto3.client(
        "s3",
        endpoint_url=f"https://{addresses[2]}:9000",
        aws_access_key_id=env["MINIO_ROOT_USER"],
        aws_secret_access_key=env["MINIO_ROOT_PASSWORD"],
        region_name="us-east-1",
        verify=str(ca),
        config=Config(retries={"max_attempts": 6, "mode": "standard"}),
    )
    deadline, pending = time.monotonic() + 180, dict(acknowledged)
    while pending:
        for key in list(pending):
            with contextlib.suppress(Exception):
                if node3.get_object(Bucket="umi-raw", Key=key)["Body"].read() == pending[key]:
                    del pending[key]
        assert time.monotonic() < deadline or not pending, f"{len(pending)} acknowledged writes unreadable via host 3"
        time.sleep(1)

    for i, ns in enumerate(hosts, start=1):
        down = _in(ns, ROBOLAKE, "stack", "down", "--cluster", str(cluster), "--host-id", str(i), env=env)
        assert down.returncode == 0, down.stderr
