"""The Docker Compose runtime's files, read without a Docker engine: topology, pins, install script."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from robolake.binaries import Versions
from robolake.cli import stack as cli_stack
from robolake.cli.stack import stack as stack_group
from robolake.config import Settings
from robolake.errors import ConfigError, ToolchainError
from robolake.stack import bootstrap, health
from robolake.stack.compose import (
    compose_command,
    compose_exports,
    compose_topology,
    docker_engine_available,
    interpolate,
    load_compose,
    native_topology,
)
from robolake.stack.monitoring import Targets, render, scrape_config
from robolake.stack.native import NOTIFIED_BUCKETS, WEBHOOK_ID, NativeStack
from robolake.state import Credentials

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "docker-compose.local.yml"
CLOUD = ROOT / "docker-compose.cloud.yml"
# What docker-compose.cloud.yml refuses to start without.
CLOUD_SECRETS = (
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "LAKEFS_AUTH_ENCRYPT_SECRET_KEY",
    "ROBOLAKE_LAKEFS_ACCESS_KEY_ID",
    "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY",
    "ROBOLAKE_POSTGRES_PASSWORD",
    "ROBOLAKE_WEBHOOK_TOKEN",
)
INSTALL = ROOT / "install-docker.sh"
MINIO_NODES = ("minio1", "minio2", "minio3")
ALL_SERVERS = (*MINIO_NODES, "accelerator", "lakefs")
WEBHOOK = f"MINIO_NOTIFY_WEBHOOK_{{}}_{WEBHOOK_ID}"


@pytest.fixture(scope="module")
def local() -> dict[str, Any]:
    return load_compose(LOCAL)


@pytest.fixture(scope="module")
def cloud() -> dict[str, Any]:
    return load_compose(CLOUD)


@pytest.fixture
def native(tmp_path: Path) -> NativeStack:
    settings = Settings.load(environ={}, env_file=Path("/nonexistent"), state_dir=tmp_path, cache_dir=tmp_path)
    return NativeStack(settings)


@pytest.fixture(scope="module")
def versions() -> Versions:
    return Versions.load(ROOT / "tools" / "versions.env")


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service["environment"]
    assert isinstance(env, dict), "environment is written as a mapping in our compose files"
    return {str(k): str(v) for k, v in env.items()}


# ---- topology: the Compose files publish the cluster the native runtime runs --------------------


@pytest.mark.parametrize("path", [LOCAL, CLOUD], ids=["local", "cloud"])
def test_compose_topology_equals_native_topology(path: Path, native: NativeStack) -> None:
    topology = compose_topology(load_compose(path))
    assert topology == native_topology(native)
    assert topology.minio_nodes == MINIO_NODES
    assert (topology.s3_ports, topology.console_ports) == ((9001, 9002, 9003), (9091, 9092, 9093))
    assert (topology.drives_per_node, topology.parity, topology.lakefs_port) == (2, 2, 8000)
    assert (topology.accelerator_port, topology.accelerator_admin_port) == (9000, 9010)
    assert topology.accelerator_healthcheck
    assert topology.accelerator_upstreams == topology.webhooks == (True, True, True)
    assert topology.lakefs_blockstore == "accelerator"


def test_topology_notices_drift(local: dict[str, Any], native: NativeStack) -> None:
    expected = native_topology(native)

    moved = copy.deepcopy(local)
    moved["services"]["minio2"]["ports"] = ["127.0.0.1:9005:9000", "127.0.0.1:9092:9090"]
    assert compose_topology(moved).s3_ports == (9001, 9005, 9003)
    assert compose_topology(moved) != expected

    unchecked = copy.deepcopy(local)
    del unchecked["services"]["minio3"]["healthcheck"]
    assert compose_topology(unchecked).healthchecks == (True, True, False)

    ephemeral = copy.deepcopy(local)
    ephemeral["services"]["minio1"]["volumes"] = ["minio1-data1:/data1"]  # /data2 would die with the container
    assert compose_topology(ephemeral).drive_volumes == (False, True, True)

    long_syntax = copy.deepcopy(local)
    long_syntax["services"]["lakefs"]["ports"] = [{"target": 8000, "published": 8100, "host_ip": "127.0.0.1"}]
    assert compose_topology(long_syntax).lakefs_port == 8100

    uneven = copy.deepcopy(local)
    uneven["services"]["minio2"]["environment"] = {
        **env_of(local["services"]["minio2"]),
        "MINIO_STORAGE_CLASS_STANDARD": "EC:3",
    }
    with pytest.raises(ConfigError, match="disagree"):
        compose_topology(uneven)

    no_console = copy.deepcopy(local)
    no_console["services"]["minio1"]["command"] = "server --address :9000 http://minio{1...3}:9000/data{1...2}"
    with pytest.raises(ConfigError, match="--console-address"):
        compose_topology(no_console)

    unpublished = copy.deepcopy(local)
    unpublished["services"]["lakefs"]["ports"] = []
    with pytest.raises(ConfigError, match="does not publish its container port 8000"):
        compose_topology(unpublished)


def _mutated(doc: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    """A deep copy of a parsed compose file with `change` applied to its services."""
    copied = copy.deepcopy(doc)
    change(copied["services"])
    return copied


def _set_env(service: dict[str, Any], **values: str) -> None:
    service["environment"] = {**env_of(service), **values}


def test_topology_notices_accelerator_drift(local: dict[str, Any], native: NativeStack) -> None:
    expected = native_topology(native)
    direct = _mutated(local, lambda s: _set_env(s["lakefs"], LAKEFS_BLOCKSTORE_S3_ENDPOINT="http://minio1:9000"))
    assert compose_topology(direct).lakefs_blockstore == "minio"
    assert compose_topology(direct) != expected
    elsewhere = _mutated(
        local, lambda s: _set_env(s["lakefs"], LAKEFS_BLOCKSTORE_S3_ENDPOINT="http://accelerator:9010")
    )
    assert compose_topology(elsewhere).lakefs_blockstore == "http://accelerator:9010"  # the admin port is no S3

    moved = _mutated(local, lambda s: s["accelerator"].update(ports=["127.0.0.1:9100:9000", "127.0.0.1:9010:9010"]))
    assert compose_topology(moved).accelerator_port == 9100
    unchecked = _mutated(local, lambda s: s["accelerator"].pop("healthcheck"))
    assert compose_topology(unchecked).accelerator_healthcheck is False
    two_upstreams = _mutated(local, lambda s: s["accelerator"].update(command=s["accelerator"]["command"][:-2]))
    assert compose_topology(two_upstreams).accelerator_upstreams == (True, True, False)

    other_token = _mutated(local, lambda s: _set_env(s["minio2"], **{WEBHOOK.format("AUTH_TOKEN"): "other"}))
    assert compose_topology(other_token).webhooks == (True, False, True)
    no_queue_volume = _mutated(local, lambda s: s["minio3"].update(volumes=s["minio3"]["volumes"][:2]))
    assert compose_topology(no_queue_volume).webhooks == (True, True, False)
    wrong_port = _mutated(
        local, lambda s: _set_env(s["minio1"], **{WEBHOOK.format("ENDPOINT"): "http://accelerator:9000/minio/events"})
    )
    assert compose_topology(wrong_port).webhooks == (False, True, True)
    for mutated in (moved, unchecked, two_upstreams, other_token, no_queue_volume, wrong_port):
        assert compose_topology(mutated) != expected

    unfixed = _mutated(local, lambda s: s["accelerator"].update(command=["accelerator", "serve", "--port", "9000"]))
    with pytest.raises(ConfigError, match="--admin-port"):
        compose_topology(unfixed)
    missing = _mutated(local, lambda s: s.pop("accelerator"))
    with pytest.raises(ConfigError, match="accelerator"):
        compose_topology(missing)


@pytest.mark.parametrize("path", [LOCAL, CLOUD], ids=["local", "cloud"])
def test_compose_itself_accepts_the_file(path: Path, tmp_path: Path) -> None:
    """Compose's own schema and interpolation check, where Compose (v2 or Debian's v1) is installed."""
    try:
        argv = compose_command(timeout_s=20)
    except ToolchainError:
        pytest.skip("Docker Compose is not installed")
    names = CLOUD_SECRETS
    env = {k: v for k, v in os.environ.items() if k not in names}
    env |= {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}
    # An empty project directory, so no .env of this checkout takes part.
    check = [*argv, "--project-directory", str(tmp_path), "-f", str(path), "config", "-q"]
    if path == CLOUD:
        env |= dict.fromkeys(names[:-1], "set-for-the-test")
        refused = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode != 0 and "set ROBOLAKE_WEBHOOK_TOKEN" in refused.stderr + refused.stdout
        env["ROBOLAKE_WEBHOOK_TOKEN"] = "set-for-the-test"
    result = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_load_compose_reports_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("services:\n  minio1: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yml"):
        load_compose(bad)
    with pytest.raises(ConfigError, match="cannot load"):
        load_compose(tmp_path / "missing.yml")
    empty = tmp_path / "empty.yml"
    empty.write_text("volumes: {}\n")
    with pytest.raises(ConfigError, match="no `services:`"):
        load_compose(empty)


# ---- docker-compose.local.yml ------------------------------------------------------------------------


def test_local_services_ports_and_volumes(local: dict[str, Any]) -> None:
    services = local["services"]
    assert set(services) == {*ALL_SERVERS, "hooks", "setup", "prometheus"}
    assert interpolate(services["accelerator"]["ports"], {}) == ["127.0.0.1:9000:9000", "127.0.0.1:9010:9010"]
    moved = {"ROBOLAKE_ACCELERATOR_PORT": "19000", "ROBOLAKE_ACCELERATOR_ADMIN_PORT": "19010"}
    assert interpolate(services["accelerator"]["ports"], moved) == ["127.0.0.1:19000:9000", "127.0.0.1:19010:9010"]
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond this machine"
    declared = set(local["volumes"])
    drive_volumes: list[str] = []
    for index, name in enumerate(MINIO_NODES, start=1):
        node = services[name]
        assert node["command"] == (
            "server --address :9000 --console-address :9090 http://minio{1...3}:9000/data{1...2}"
        )
        assert node["hostname"] == name
        assert interpolate(node["ports"], {}) == [f"127.0.0.1:900{index}:9000", f"127.0.0.1:909{index}:9090"]
        assert node["volumes"] == [f"{name}-data1:/data1", f"{name}-data2:/data2", f"{name}-queue:/queue"]
        drive_volumes += [v.split(":")[0] for v in node["volumes"][:2]]
        env = env_of(node)
        assert env["MINIO_STORAGE_CLASS_STANDARD"] == "EC:2"
        assert env["MINIO_PROMETHEUS_AUTH_TYPE"] == "public"
        assert env["MINIO_ROOT_USER"] == "${MINIO_ROOT_USER:-minioadmin}"
        assert env["MINIO_ROOT_PASSWORD"] == "${MINIO_ROOT_PASSWORD:-minioadmin123}"
        assert node["build"]["dockerfile"] == "deploy/docker/minio.Dockerfile"
    assert len(set(drive_volumes)) == 6, "every drive needs a volume of its own"
    queues = [f"{name}-queue" for name in MINIO_NODES]
    assert {*drive_volumes, *queues, "accelerator-cache", "lakefs-data", "prometheus-data"} == declared
    assert interpolate(services["lakefs"]["ports"], {}) == ["127.0.0.1:8000:8000"]
    assert services["lakefs"]["volumes"] == ["lakefs-data:/home/lakefs"]


def test_local_healthchecks_use_tools_the_images_have(local: dict[str, Any]) -> None:
    services = local["services"]
    minio_dockerfile = (ROOT / "deploy" / "docker" / "minio.Dockerfile").read_text()
    for name in MINIO_NODES:
        test = services[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "curl"] and test[-1] == "http://127.0.0.1:9000/minio/health/live"
    assert re.search(r"apk add [^\n]*\bcurl\b", minio_dockerfile), "the MinIO image must carry curl"
    # treeverse/lakefs is Alpine-based: busybox wget is there, curl is not.
    lakefs_test = services["lakefs"]["healthcheck"]["test"]
    assert lakefs_test[:2] == ["CMD", "wget"] and lakefs_test[-1] == "http://127.0.0.1:8000/_health"
    # python:3.11-slim has neither curl nor wget: the accelerator's probe is Python's urllib.
    robolake_dockerfile = (ROOT / "deploy" / "docker" / "robolake.Dockerfile").read_text()
    assert "curl" not in robolake_dockerfile and "wget" not in robolake_dockerfile
    accel_test = services["accelerator"]["healthcheck"]["test"]
    assert accel_test[:3] == ["CMD", "python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:9010/health'" in accel_test[3]
    compile(accel_test[3], "healthcheck", "exec")  # a syntax error would only show as "unhealthy"


def test_local_start_order(local: dict[str, Any]) -> None:
    services = local["services"]
    healthy = {"condition": "service_healthy"}
    assert services["accelerator"]["depends_on"] == dict.fromkeys(MINIO_NODES, healthy)
    # lakeFS's blockstore is the accelerator; MinIO may start first, its events wait in /queue.
    # ... and it calls the hooks server before commits to main.
    assert services["lakefs"]["depends_on"] == {"accelerator": healthy, "hooks": healthy}
    for name in MINIO_NODES:
        assert "depends_on" not in services[name]
    assert services["setup"]["depends_on"] == dict.fromkeys(ALL_SERVERS, healthy)
    assert services["setup"]["restart"] == "no"
    for name in (*ALL_SERVERS, "hooks"):
        assert "healthcheck" in services[name], f"{name} is waited on, so it needs a healthcheck"


def test_setup_runs_the_real_bootstrap_command(local: dict[str, Any], cloud: dict[str, Any]) -> None:
    bootstrap = stack_group.commands["bootstrap"]
    options = {opt for param in bootstrap.params for opt in getattr(param, "opts", [])}
    # The setup container passes the lakeFS keys as variables; bootstrap reads them through Settings.
    keys = {"ROBOLAKE_LAKEFS_ACCESS_KEY_ID": "AKIAJEXAMPLE", "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": "secret"}
    read = Settings.load(environ=keys, env_file=Path("/nonexistent"))
    assert (read.lakefs_access_key_id, read.lakefs_secret_access_key) == ("AKIAJEXAMPLE", "secret")
    for doc in (local, cloud):
        setup = doc["services"]["setup"]
        assert setup["build"]["dockerfile"] == "deploy/docker/robolake.Dockerfile"
        command = setup["command"]
        assert command[:2] == ["stack", "bootstrap"]
        assert {a for a in command if a.startswith("--")} <= options
        assert command[command.index("--minio-endpoint") + 1] == "http://minio1:9000"
        assert command[command.index("--lakefs-endpoint") + 1] == "http://lakefs:8000"
        assert "--no-notifications" not in command
        env = env_of(setup)
        assert {
            "ROBOLAKE_LAKEFS_ACCESS_KEY_ID",
            "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY",
            "MINIO_ROOT_USER",
            "MINIO_ROOT_PASSWORD",
        } <= set(env)


def _flatten(tree: dict[str, Any], prefix: str = "LAKEFS") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}_{key.upper()}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return flat


@pytest.mark.parametrize("path", [LOCAL, CLOUD], ids=["local", "cloud"])
def test_lakefs_configuration_matches_native(path: Path, native: NativeStack) -> None:
    native_env = _flatten(native.lakefs_config(Credentials("AKIAJEXAMPLE", "secret", "encrypt")))
    # Paths, addresses and secrets differ by runtime on purpose; everything else must agree.
    differ = {
        "LAKEFS_LISTEN_ADDRESS",
        "LAKEFS_DATABASE_LOCAL_PATH",
        "LAKEFS_COMMITTED_LOCAL_CACHE_DIR",
        "LAKEFS_AUTH_ENCRYPT_SECRET_KEY",
        "LAKEFS_BLOCKSTORE_S3_ENDPOINT",
        "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID",
        "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY",
    }
    assert differ <= set(native_env)
    compose_env = env_of(load_compose(path)["services"]["lakefs"])
    if path == CLOUD:  # the cloud file's lakeFS keeps its data in PostgreSQL, the postgres service
        differ |= {"LAKEFS_DATABASE_TYPE", "LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING"}
        assert compose_env["LAKEFS_DATABASE_TYPE"] == "postgres"
        dsn = compose_env["LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING"]
        assert dsn.startswith("postgres://lakefs:${ROBOLAKE_POSTGRES_PASSWORD") and "@postgres:5432/lakefs" in dsn
    assert {k: compose_env.get(k) for k in native_env if k not in differ} == {
        k: v for k, v in native_env.items() if k not in differ
    }
    database = {"LAKEFS_DATABASE_LOCAL_PATH", "LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING"}
    assert differ - database <= set(compose_env) and database & set(compose_env)
    assert compose_env["LAKEFS_BLOCKSTORE_S3_ENDPOINT"] == "http://accelerator:9000"
    assert "${MINIO_ROOT_USER" in compose_env["LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID"]
    for switch in ("STATS_ENABLED", "SECURITY_CHECK_LATEST_VERSION", "EMAIL_SUBSCRIPTION_ENABLED"):
        assert compose_env[f"LAKEFS_{switch}"] == "false"


# ---- the accelerator and MinIO's bucket notifications to it ------------------------------------------


def check_webhooks(doc: dict[str, Any]) -> None:
    """Every MinIO node sends its events to the accelerator, with the one token, queued on its own volume."""
    services = doc["services"]
    accel_token = env_of(services["accelerator"])["ROBOLAKE_WEBHOOK_TOKEN"]
    tokens, queue_volumes = set(), set()
    for name in MINIO_NODES:
        env = env_of(services[name])
        assert env[WEBHOOK.format("ENABLE")] == "on", name
        assert env[WEBHOOK.format("ENDPOINT")] == "http://accelerator:9010/minio/events", name
        tokens.add(env[WEBHOOK.format("AUTH_TOKEN")])
        queue = env[WEBHOOK.format("QUEUE_DIR")]
        assert queue == "/queue", f"{name}: MinIO wants the same absolute queue path on every node"
        volume = next((v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == queue), None)
        assert volume in doc["volumes"], f"{name}: the event queue {queue} must be on a named volume"
        queue_volumes.add(volume)
    assert tokens == {accel_token}, "MinIO refuses differing MINIO_* values across nodes; the accelerator checks it"
    assert "${ROBOLAKE_WEBHOOK_TOKEN" in accel_token
    assert len(queue_volumes) == len(MINIO_NODES), "every node needs an event queue of its own"


def check_accelerator(doc: dict[str, Any]) -> None:
    """The accelerator service: command, credentials, start order and health probe."""
    accel = doc["services"]["accelerator"]
    assert accel["build"]["dockerfile"] == "deploy/docker/robolake.Dockerfile"
    command = accel["command"]
    assert command[:2] == ["accelerator", "serve"]
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert {k: v for k, v in flags.items() if k != "--upstream"} == {
        "--host": "0.0.0.0",
        "--port": "9000",
        "--admin-port": "9010",
        "--cache-dir": "/home/robolake/cache",
    }
    upstreams = [v for k, v in zip(command[2::2], command[3::2], strict=True) if k == "--upstream"]
    assert upstreams == [f"http://{n}:9000" for n in MINIO_NODES]
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "ROBOLAKE_WEBHOOK_TOKEN"} <= set(env_of(accel))
    assert accel["depends_on"] == {name: {"condition": "service_healthy"} for name in MINIO_NODES}
    assert accel["healthcheck"]["test"][:2] == ["CMD", "python"]
    assert "/health'" in accel["healthcheck"]["test"][-1]


@pytest.mark.parametrize("path", [LOCAL, CLOUD], ids=["local", "cloud"])
def test_accelerator_and_webhooks(path: Path) -> None:
    doc = load_compose(path)
    check_accelerator(doc)
    check_webhooks(doc)
    assert doc["services"]["lakefs"]["depends_on"]["accelerator"] == {"condition": "service_healthy"}


def test_accelerator_checks_can_fail(local: dict[str, Any]) -> None:
    token = WEBHOOK.format("AUTH_TOKEN")
    broken_webhooks = [
        _mutated(local, lambda s: _set_env(s["minio3"], **{token: "${ROBOLAKE_WEBHOOK_TOKEN:-else}"})),
        _mutated(local, lambda s: _set_env(s["minio1"], **{WEBHOOK.format("ENABLE"): "off"})),
        _mutated(local, lambda s: _set_env(s["minio2"], **{WEBHOOK.format("QUEUE_DIR"): "/data1/queue"})),
        _mutated(local, lambda s: s["minio2"].update(volumes=[*s["minio2"]["volumes"][:2], "minio1-queue:/queue"])),
        _mutated(local, lambda s: _set_env(s["accelerator"], ROBOLAKE_WEBHOOK_TOKEN="literal")),
    ]
    for doc in broken_webhooks:
        with pytest.raises(AssertionError):
            check_webhooks(doc)
    broken_accelerator = [
        _mutated(local, lambda s: s["accelerator"].update(depends_on=["minio1"])),
        _mutated(local, lambda s: s["accelerator"]["healthcheck"].update(test=["CMD", "curl", "-f", "x/health'"])),
        _mutated(local, lambda s: s["accelerator"].update(command=s["accelerator"]["command"][:-2])),
        _mutated(local, lambda s: s["accelerator"].update(environment={"MINIO_ROOT_USER": "x"})),
    ]
    for doc in broken_accelerator:
        with pytest.raises(AssertionError):
            check_accelerator(doc)


@pytest.mark.parametrize("path", [LOCAL, CLOUD], ids=["local", "cloud"])
def test_accelerator_cache_is_a_volume_its_user_can_write(path: Path) -> None:
    doc = load_compose(path)
    accel = doc["services"]["accelerator"]
    cache_dir = PurePosixPath(accel["command"][accel["command"].index("--cache-dir") + 1])
    mounts = [v.split(":")[:2] for v in accel["volumes"]]
    volume, target = next((m for m in mounts if cache_dir.is_relative_to(m[1])), (None, ""))
    assert volume in doc["volumes"], f"the disk tier {cache_dir} must be on a named volume"
    # A new named volume takes the owner of the image directory it is mounted on (root when the
    # image has no such directory), and the image runs as a user who cannot write root's.
    dockerfile = (ROOT / "deploy" / "docker" / "robolake.Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)[-1]
    owned = {f"/home/{user}"} if re.search(rf"useradd --create-home {user}\b", dockerfile) else set()
    owned |= {p for p in re.findall(rf"chown [^\n]*{user}\S* +(/\S+)", dockerfile)}
    assert target in owned, f"{target} is not owned by the image's user {user!r}"


def test_bootstrap_subscribes_the_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(health, "minio_cluster_ok", lambda endpoint: True)
    monkeypatch.setattr(cli_stack, "ensure_buckets", lambda *args: calls.append(("buckets", *args)) or [])
    monkeypatch.setattr(bootstrap, "ensure_notifications", lambda *args: calls.append(("notify", *args)))
    env = {"ROBOLAKE_ENV_FILE": "/dev/null", "MINIO_ROOT_USER": "root-user", "MINIO_ROOT_PASSWORD": "root-password"}
    runner = CliRunner()
    result = runner.invoke(stack_group, ["bootstrap", "--minio-endpoint", "http://minio1:9000"], env=env)
    assert result.exit_code == 0, result.output
    assert calls == [
        ("buckets", "http://minio1:9000", "root-user", "root-password"),
        (
            "notify",
            "http://minio1:9000",
            "root-user",
            "root-password",
            f"arn:minio:sqs::{WEBHOOK_ID}:webhook",
            NOTIFIED_BUCKETS,
        ),
    ]
    calls.clear()
    args = ["bootstrap", "--minio-endpoint", "http://minio1:9000", "--no-notifications"]
    result = runner.invoke(stack_group, args, env=env)
    assert result.exit_code == 0, result.output
    assert [c[0] for c in calls] == ["buckets"]


# ---- pinned versions and images -------------------------------------------------------------------


def _dockerfile(name: str) -> str:
    return (ROOT / "deploy" / "docker" / f"{name}.Dockerfile").read_text()


def _copies_exist(text: str) -> None:
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for part in source.split():
            assert (ROOT / part).exists(), f"the Dockerfile copies {part}, which is not in the repository"


@pytest.mark.parametrize("path", [LOCAL, CLOUD], ids=["local", "cloud"])
def test_lakefs_image_is_built_from_the_pinned_wrapper_module(path: Path, versions: Versions) -> None:
    service = load_compose(path)["services"]["lakefs"]
    assert service["image"] == "robolake/lakefs:local"
    assert service["build"]["dockerfile"] == "deploy/docker/lakefs.Dockerfile"
    text = _dockerfile("lakefs")
    assert "COPY tools/lakefs-build/ /src/" in text and "github.com/treeverse/lakefs/cmd/lakefs" in text
    assert f"github.com/treeverse/lakefs {versions.lakefs}" in (ROOT / "tools/lakefs-build/go.mod").read_text()
    _copies_exist(text)


@pytest.mark.parametrize("path", [LOCAL, CLOUD], ids=["local", "cloud"])
def test_prometheus_image_is_the_pinned_version_with_the_generated_config(path: Path, versions: Versions) -> None:
    service = load_compose(path)["services"]["prometheus"]
    assert service["image"] == "robolake/prometheus:local"
    assert service["build"]["dockerfile"] == "deploy/docker/prometheus.Dockerfile"
    match = re.search(r"^ARG PROMETHEUS_VERSION=(\S+)$", _dockerfile("prometheus"), re.MULTILINE)
    assert match and match[1] == versions.prometheus, "keep the ARG default equal to tools/versions.env"
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in service["volumes"]
    assert "./deploy/prometheus-rules.yml:/etc/prometheus/rules.yml:ro" in service["volumes"]


@pytest.mark.parametrize("name", ["minio", "lakefs", "prometheus"])
def test_go_server_dockerfiles_take_their_bases_and_a_prebuilt_binary(name: str, versions: Versions) -> None:
    text = _dockerfile(name)
    assert re.search(r"^ARG BUILD_IMAGE=golang:\S+$", text, re.MULTILINE)
    assert re.search(r"^ARG BASE_IMAGE=alpine:\S+$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{BUILD_IMAGE\} AS build$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
    assert f"if [ -x /prebuilt/{name} ]" in text and "CGO_ENABLED=0" in text
    assert f"COPY --from=build /out/{name} /usr/bin/{name}" in text
    _copies_exist(text)
    if name == "minio":
        match = re.search(r"^ARG MINIO_VERSION=(\S+)$", text, re.MULTILINE)
        assert match and match[1] == versions.minio, "keep the ARG default equal to tools/versions.env"
        assert 'go install -trimpath "github.com/minio/minio@${MINIO_VERSION}"' in text


def test_robolake_dockerfile_and_context() -> None:
    text = _dockerfile("robolake")
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and text.count("FROM ") == 1 and "FROM ${BASE_IMAGE}" in text
    _copies_exist(text)
    assert "pip install --no-cache-dir ." in text and "python3 -m venv /opt/robolake" in text
    assert 'ENTRYPOINT ["robolake"]' in text
    # The context is an allow-list: everything out but what the images copy.
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in "#"]
    assert lines[0] == "*" and {"!src/", "!tools/", "!pyproject.toml", "!README.md", "!deploy/"} <= set(lines)


def test_interpolate_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET}-${UNSET}-${UNSET:-d}-${EMPTY:-d}-${EMPTY-d}-$$HOME", env) == "v--d-d--$HOME"
    assert interpolate({"a": ["${SET:?needed}", 3]}, env) == {"a": ["v", 3]}
    with pytest.raises(ConfigError, match="UNSET is not set: set UNSET"):
        interpolate("${UNSET:?set UNSET}", env)


def test_compose_exports_reach_the_moved_stack() -> None:
    moved = {"ROBOLAKE_MINIO2_PORT": "19002", "ROBOLAKE_LAKEFS_PORT": "18000", "MINIO_ROOT_USER": "team"}
    values = compose_exports(load_compose(LOCAL, moved))
    assert values["ROBOLAKE_MINIO_PORTS"] == "9001,19002,9003" and values["ROBOLAKE_LAKEFS_PORT"] == "18000"
    assert values["LAKECTL_SERVER_ENDPOINT_URL"] == "http://127.0.0.1:18000"
    assert values["MINIO_ROOT_USER"] == values["AWS_ACCESS_KEY_ID"] == "team"
    assert values["ROBOLAKE_LAKEFS_ACCESS_KEY_ID"] == values["LAKECTL_CREDENTIALS_ACCESS_KEY_ID"] != ""
    settings = Settings.load(environ=values, env_file=Path("/nonexistent"))
    assert settings.minio_endpoints[1] == "http://127.0.0.1:19002"
    assert settings.resolve_hooks_token() == values["ROBOLAKE_HOOKS_TOKEN"] != ""


# ---- docker-compose.cloud.yml ---------------------------------------------------------------------


def test_cloud_requires_credentials_and_restarts(cloud: dict[str, Any]) -> None:
    raw = CLOUD.read_text()
    assert ":-" not in raw, "the cloud file must not fall back to default credentials"
    services = cloud["services"]
    secrets = set(CLOUD_SECRETS)
    for name in ("setup", *ALL_SERVERS):
        for key, value in env_of(services[name]).items():
            for secret in secrets:
                if f"${{{secret}" in value:
                    assert f"${{{secret}:?set {secret}}}" in value, f"{name}.{key} must require {secret}"
    for name in (*ALL_SERVERS, "postgres", "prometheus"):
        assert services[name]["restart"] == "unless-stopped"
    assert services["setup"]["restart"] == "no"
    for name in MINIO_NODES:
        s3, console = services[name]["ports"]
        assert s3.startswith("0.0.0.0:") and console.startswith("127.0.0.1:")
    assert services["lakefs"]["ports"] == ["0.0.0.0:8000:8000"]
    assert services["accelerator"]["ports"] == ["0.0.0.0:9000:9000", "127.0.0.1:9010:9010"]
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    required = "${ROBOLAKE_WEBHOOK_TOKEN:?set ROBOLAKE_WEBHOOK_TOKEN}"
    assert env_of(services["accelerator"])["ROBOLAKE_WEBHOOK_TOKEN"] == required
    for name in MINIO_NODES:
        assert env_of(services[name])[WEBHOOK.format("AUTH_TOKEN")] == required
    assert services["prometheus"]["profiles"] == ["monitoring"]
    # lakeFS's database: on the Compose network only, its data in a volume, lakeFS waits for it.
    assert "ports" not in services["postgres"] and services["postgres"]["volumes"] == [
        "postgres-data:/var/lib/postgresql/data"
    ]
    assert services["lakefs"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_prometheus_scrapes_minio_and_lakefs(cloud: dict[str, Any]) -> None:
    mount = cloud["services"]["prometheus"]["volumes"][0]
    assert mount.startswith("./deploy/prometheus.yml:")
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    # The file is the native stack's configuration with Compose service names: one generator for both.
    assert text == render(scrape_config(Targets.compose()), compose=True)
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    cluster = jobs["minio-cluster"]
    assert cluster["metrics_path"] == "/minio/v2/metrics/cluster"
    assert cluster["static_configs"][0]["targets"] == [f"{n}:9000" for n in MINIO_NODES]
    assert jobs["lakefs"]["metrics_path"] == "/metrics"
    assert jobs["lakefs"]["static_configs"][0]["targets"] == ["lakefs:8000"]
    assert jobs["accelerator"]["static_configs"][0]["targets"] == ["accelerator:9010"]
    services = set(cloud["services"])
    for job in jobs.values():
        for target in job["static_configs"][0]["targets"]:
            host = target.split(":")[0]
            assert host == "localhost" or host in services, f"{job['job_name']} scrapes {target}, not a service"


# ---- engine and Compose detection (fake executables on PATH) ---------------------------------------


def _fake(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_compose_command_prefers_the_v2_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    _fake(bin_dir, "docker-compose", "exit 0")
    assert compose_command() == ["docker-compose"]
    _fake(bin_dir, "docker", '[ "$1 $2" = "compose version" ] && exit 0; exit 1')
    assert compose_command() == ["docker", "compose"]
    assert docker_engine_available() is False  # `docker info` fails: a CLI without a daemon


def test_compose_command_without_compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "docker", "exit 1")  # a CLI without the compose plugin
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ToolchainError, match=r"install-docker\.sh.*--runtime native"):
        compose_command()


def test_docker_engine_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    assert docker_engine_available() is False  # no docker at all
    _fake(bin_dir, "docker", '[ "$1" = info ] && exit 0; exit 1')
    assert docker_engine_available() is True
    _fake(bin_dir, "docker", "exec sleep 5")
    assert docker_engine_available(timeout_s=0.3) is False


# ---- install-docker.sh ----------------------------------------------------------------------------


def run_install(*args: str, path: Path | str, fs_root: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run install-docker.sh with exactly `path` as PATH, so only the fakes in it exist."""
    env = {"PATH": str(path), "HOME": "/nonexistent"}
    if fs_root is not None:
        env["INSTALL_DOCKER_FS_ROOT"] = str(fs_root)
    return subprocess.run(
        ["/bin/bash", str(INSTALL), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def fake_root(tmp_path: Path, *, container: bool, cap_eff: str) -> Path:
    root = tmp_path / "root"
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "status").write_text(f"Name:\tbash\nCapEff:\t{cap_eff}\n")
    if container:
        (root / ".dockerenv").touch()
    return root


def fake_apt(bin_dir: Path, known: tuple[str, ...]) -> None:
    _fake(bin_dir, "apt-get", "echo 'apt-get must not run in these tests' >&2; exit 99")
    policy = 'printf "%s:\\n  Installed: (none)\\n  Candidate: %s\\n" "$2"'
    _fake(bin_dir, "apt-cache", f'case "$2" in {"|".join(known)}) {policy} 2.0-1;; *) {policy} "(none)";; esac')
    _fake(bin_dir, "sudo", 'exec "$@"')


def test_install_script_syntax_and_help(tmp_path: Path) -> None:
    assert subprocess.run(["/bin/bash", "-n", str(INSTALL)], check=False).returncode == 0
    assert os.access(INSTALL, os.X_OK)
    result = run_install("--help", path=os.defpath)
    assert result.returncode == 0 and "--check" in result.stdout and "deploy-local.sh" in result.stdout
    result = run_install("--bogus", path=tmp_path)
    assert result.returncode == 2 and "--bogus" in result.stderr


@pytest.mark.parametrize("args", [(), ("--check",)], ids=["install", "check"])
def test_install_script_without_apt_get_says_why(args: tuple[str, ...], tmp_path: Path) -> None:
    result = run_install(*args, path=tmp_path / "empty-bin")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no apt-get" in lines[0] and "./deploy-local.sh" in lines[0]
    assert result.stdout == ""


def test_install_script_refuses_an_unprivileged_container(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_apt(bin_dir, ("docker-compose",))
    root = fake_root(tmp_path, container=True, cap_eff="00000000a80425fb")  # Docker's default set
    result = run_install(path=bin_dir, fs_root=root)
    assert result.returncode == 1
    assert "inside a container without privileges" in result.stderr and "./deploy-local.sh" in result.stderr


def test_install_script_check_reports_the_packages(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_apt(bin_dir, ("docker-compose-v2", "docker-compose"))
    root = fake_root(tmp_path, container=True, cap_eff="000001ffffffffff")  # a privileged container
    result = run_install("--check", path=bin_dir, fs_root=root)
    assert result.returncode == 3, result.stderr
    assert "would install: docker.io docker-compose-v2" in result.stdout
    fake_apt(bin_dir, ("docker-compose",))  # Debian 12: only the v1 package exists
    result = run_install("--check", path=bin_dir, fs_root=root)
    assert result.returncode == 3 and "would install: docker.io docker-compose" in result.stdout


def test_install_script_accepts_a_working_docker(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "docker", "exit 0")  # `docker info` and `docker compose version` both answer
    for args in [(), ("--check",)]:
        result = run_install(*args, path=bin_dir)
        assert result.returncode == 0, result.stderr
        assert "Docker already works" in result.stdout
