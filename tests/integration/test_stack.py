"""The native stack against real MinIO and lakeFS servers."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from robolake.errors import AuthError, PortInUseError
from robolake.httpauth import ADMIN_USER
from robolake.reliability.security import check_endpoint_auth, endpoints
from robolake.stack import health
from robolake.stack.bootstrap import BUCKET_LAYOUT, LakeFSAdmin, ensure_buckets
from robolake.stack.native import NativeStack
from tests.conftest import s3_client
from tests.stackutil import isolated_settings, processes_using, sha256

pytestmark = pytest.mark.integration


def test_status_reports_one_healthy_cluster_and_the_repository(stack: NativeStack) -> None:
    status = stack.status().as_dict()
    assert status["healthy"] is True
    names = [c["name"] for c in status["components"]]
    assert names == ["minio-1", "minio-2", "minio-3", "accelerator", "hooks", "lakefs", "prometheus", "console"]
    assert all(c["healthy"] and c["running"] for c in status["components"])
    cluster = status["cluster"]
    assert cluster["one_cluster"] is True and len(cluster["deployment_ids"]) == 1
    assert cluster["nodes_answering"] == 3
    assert cluster["servers_online"] == cluster["servers_total"] == 3
    assert cluster["drives_online"] == 3 * stack.settings.drives_per_node
    assert cluster["parity"] == stack.parity
    assert status["repository"] == {"name": "robotics-data", "exists": True}


def test_buckets_and_prefixes_exist(node_clients: list) -> None:  # type: ignore[type-arg]
    client = node_clients[1]
    names = {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert set(BUCKET_LAYOUT) <= names
    listed = client.list_objects_v2(Bucket="umi-raw", Delimiter="/")
    assert {p["Prefix"] for p in listed.get("CommonPrefixes", [])} >= {"pose/", "gripper/", "video/"}


def test_object_written_on_node1_reads_back_identical_on_node3(node_clients: list) -> None:  # type: ignore[type-arg]
    body = os.urandom(300_000)
    key = f"tests/{uuid.uuid4()}.bin"
    node_clients[0].put_object(Bucket="umi-raw", Key=key, Body=body)
    got = node_clients[2].get_object(Bucket="umi-raw", Key=key)["Body"].read()
    assert sha256(got) == sha256(body)


def test_lakefs_gateway_upload_commit_and_read_at_commit(stack: NativeStack) -> None:
    creds = stack.state.credentials()
    s = stack.settings
    gateway = s3_client(s.lakefs_endpoint, creds.lakefs_access_key_id, creds.lakefs_secret_access_key)
    api = f"{s.lakefs_endpoint}/api/v1/repositories/{s.lakefs_repo}"
    auth = (creds.lakefs_access_key_id, creds.lakefs_secret_access_key)
    branch = f"t-{uuid.uuid4().hex[:8]}"
    requests.post(f"{api}/branches", json={"name": branch, "source": "main"}, auth=auth, timeout=30).raise_for_status()
    first, second = os.urandom(50_000), os.urandom(50_000)
    gateway.put_object(Bucket=s.lakefs_repo, Key=f"{branch}/episodes/e0.bin", Body=first)
    commit = requests.post(
        f"{api}/branches/{branch}/commits",
        json={"message": "first", "metadata": {"seed": "1"}},
        auth=auth,
        timeout=60,
    )
    commit.raise_for_status()
    commit_id = commit.json()["id"]
    gateway.put_object(Bucket=s.lakefs_repo, Key=f"{branch}/episodes/e0.bin", Body=second)
    at_commit = gateway.get_object(Bucket=s.lakefs_repo, Key=f"{commit_id}/episodes/e0.bin")["Body"].read()
    at_branch = gateway.get_object(Bucket=s.lakefs_repo, Key=f"{branch}/episodes/e0.bin")["Body"].read()
    assert sha256(at_commit) == sha256(first)
    assert sha256(at_branch) == sha256(second)


def test_second_up_is_a_no_op(stack: NativeStack) -> None:
    pids = {c.name: c.pid for c in stack.status().components}
    assert stack.up() == []
    assert {c.name: c.pid for c in stack.status().components} == pids


def test_every_endpoint_but_health_asks_for_auth(stack: NativeStack) -> None:
    case = check_endpoint_auth(stack)
    assert not case.mishandled, case.why
    s = stack.settings
    urls = [url for _, url, _ in endpoints(s)]  # every component's port is asked
    ports = {*s.minio_ports, *s.minio_console_ports, s.accelerator_port, s.accelerator_admin_port, s.lakefs_port}
    ports |= {s.hooks_port, *([s.prometheus_port] if s.prometheus else []), *([s.console_port] if s.console else [])}
    assert {int(url.split(":")[2].split("/")[0]) for url in urls} == ports
    # A wrong admin token is refused like none.
    answer = requests.get(f"{s.accelerator_admin_endpoint}/stats", timeout=5, auth=(ADMIN_USER, "not-the-token"))
    assert answer.status_code == 401 and "admin token" in answer.text


def test_wrong_root_credentials_are_named(stack: NativeStack) -> None:
    wrong = NativeStack(dataclasses.replace(stack.settings, minio_root_password="not-the-password"))
    cluster = wrong.status().cluster
    assert cluster is not None and "rejected the root credentials" in cluster["error"]
    with pytest.raises(AuthError, match="MINIO_ROOT_USER"):
        ensure_buckets(stack.settings.minio_endpoints[0], stack.settings.minio_root_user, "not-the-password")


def test_wrong_lakefs_key_is_named(stack: NativeStack) -> None:
    admin = LakeFSAdmin(stack.settings.lakefs_endpoint, "AKIAJWRONGWRONGWRONG", "nope")
    with pytest.raises(AuthError, match="AKIAJWRONGWRONGWRONG"):
        admin.repository_exists("robotics-data")


def test_losing_one_node_keeps_reads_and_writes_and_it_rejoins(stack: NativeStack, node_clients: list) -> None:  # type: ignore[type-arg]
    s = stack.settings
    before = {f"nodeloss/before/{i}.bin": os.urandom(4096 + i) for i in range(50)}
    for key, body in before.items():
        node_clients[i_of(key) % 3].put_object(Bucket="umi-raw", Key=key, Body=body)

    victim = stack._process("minio-2").pid()
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while health.minio_live(s.minio_endpoints[1]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not health.minio_live(s.minio_endpoints[1])

    survivors = [node_clients[0], node_clients[2]]
    during = {f"nodeloss/during/{i}.bin": os.urandom(2048 + i) for i in range(100)}
    for n, (key, body) in enumerate(during.items()):
        survivors[n % 2].put_object(Bucket="umi-raw", Key=key, Body=body)
    for n, (key, body) in enumerate({**before, **during}.items()):
        got = survivors[n % 2].get_object(Bucket="umi-raw", Key=key)["Body"].read()
        assert sha256(got) == sha256(body), key

    assert stack.up() == ["minio-2"]
    cluster = stack.status().cluster
    assert cluster is not None and cluster["servers_online"] == 3 and cluster["one_cluster"]
    # The rejoined node serves every object, including those written while it was away. Under
    # load its peer connections can take a few seconds more to settle: allow that, not more.
    deadline = time.monotonic() + 30
    pending = dict(before) | during
    last_error: Exception | None = None
    while pending:
        for key, body in list(pending.items()):
            try:
                got = node_clients[1].get_object(Bucket="umi-raw", Key=key)["Body"].read()
            except ClientError as exc:  # NoSuchKey or SlowDownRead while its peer links settle
                if time.monotonic() > deadline:
                    raise
                last_error = exc
                continue
            assert sha256(got) == sha256(body), key
            del pending[key]
        assert time.monotonic() < deadline or not pending, f"{len(pending)} unreadable via node 2: {last_error}"
        time.sleep(0.2 if pending else 0)


def i_of(key: str) -> int:
    return int(key.rsplit("/", 1)[1].split(".", maxsplit=1)[0])


def test_port_in_use_fails_before_starting_anything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    settings = isolated_settings(tmp_path / "state")
    blocker = socket.socket()
    blocker.bind((settings.host, settings.lakefs_port))
    blocker.listen()
    try:
        with pytest.raises(PortInUseError) as info:
            NativeStack(settings).up()
    finally:
        blocker.close()
    message = str(info.value)
    assert str(settings.lakefs_port) in message and "ROBOLAKE_LAKEFS_PORT" in message
    assert processes_using(settings.state_dir) == []


def test_down_stops_everything_keeps_data_and_volumes_wipes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = isolated_settings(tmp_path / "state")
    native = NativeStack(settings)
    native.up()
    client = s3_client(settings.minio_endpoints[0], settings.minio_root_user, settings.minio_root_password)
    client.put_object(Bucket="umi-processed", Key="keep/me.txt", Body=b"still here")
    assert len(processes_using(settings.state_dir)) == len(native.component_names()) == 8

    stopped = native.down()
    assert sorted(stopped) == sorted(native.component_names())
    assert processes_using(settings.state_dir) == []

    native.up()
    assert client.get_object(Bucket="umi-processed", Key="keep/me.txt")["Body"].read() == b"still here"
    assert native.status().repository == {"name": "robotics-data", "exists": True}

    native.down(volumes=True)
    assert processes_using(settings.state_dir) == []
    assert not settings.state_dir.exists()
