"""The Compose runtime for real: a dockerd started here, the images built offline, the stack up.

`./deploy-local.sh --runtime docker` on moved ports builds robolake/*:local (`robolake stack
images`: a debootstrap base where no registry answers, this machine's Go builds copied in), brings
docker-compose.local.yml up, waits for its setup container and runs the main job. Then the same
checks as the native stack's: one cluster of three nodes, the repository guarded by the hook, a
commit read back byte-identical, a killed node survived, and `down --volumes` leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from robolake.config import Settings
from robolake.stack import health
from tests.stackutil import free_ports, sha256

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _engine_answers(env: dict[str, str]) -> bool:
    return run(["docker", "info"], env, timeout=20).returncode == 0


@pytest.fixture(scope="module")
def dockerd() -> Iterator[dict[str, str]]:
    """A Docker engine of this test's own (socket and run state in a temp dir), stopped after."""
    if os.geteuid() != 0:
        pytest.skip("starting a Docker engine needs root")
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("no Docker engine installed (run-tests.sh installs Debian's docker.io as root)")
    if (
        shutil.which("docker-compose") is None
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode
    ):
        pytest.skip("no Docker Compose installed (run-tests.sh installs Debian's docker-compose as root)")
    cache = Path(os.environ.get("ROBOLAKE_CACHE_DIR") or Path.home() / ".cache/robolake")
    # Images and build layers outlive the run (a cached run rebuilds in seconds); sockets need a short path.
    run_dir = Path(tempfile.mkdtemp(prefix="rl-dockerd-", dir="/tmp"))
    env = {**os.environ, "DOCKER_HOST": f"unix://{run_dir}/docker.sock"}
    argv = ["dockerd", "--data-root", str(cache / "docker"), "--exec-root", str(run_dir / "exec")]
    argv += ["--pidfile", str(run_dir / "docker.pid"), "-H", env["DOCKER_HOST"], "--storage-driver=overlay2"]
    log = (run_dir / "dockerd.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _engine_answers(env):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (run_dir / "dockerd.log").read_text(errors="replace")[-1500:]
                pytest.skip(f"dockerd does not start here (exit {proc.poll()}): {tail}")
            time.sleep(0.5)
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    assert proc.returncode is not None  # the engine this test started is gone


def _exports(text: str) -> dict[str, str]:
    return {m[1]: shlex.split(m[2])[0] if m[2] else "" for m in re.finditer(r"^export (\w+)=(.*)$", text, re.M)}


def _project_leftovers(project: str, env: dict[str, str]) -> dict[str, str]:
    label = f"label=com.docker.compose.project={project}"
    kinds = {"containers": ["ps", "-aq"], "networks": ["network", "ls", "-q"], "volumes": ["volume", "ls", "-q"]}
    return {kind: run(["docker", *args, "--filter", label], env).stdout.strip() for kind, args in kinds.items()}


@pytest.mark.timeout(2400)  # a first run makes the base image and installs robolake's dependencies in one
def test_compose_stack_runs_like_the_native_one(dockerd: dict[str, str], tmp_path: Path) -> None:
    p = free_ports(11)
    project = f"rltest{uuid.uuid4().hex[:6]}"
    env = {
        **dockerd,
        "COMPOSE_PROJECT_NAME": project,
        "ROBOLAKE_MINIO_PORTS": ",".join(map(str, p[0:3])),
        "ROBOLAKE_MINIO_CONSOLE_PORTS": ",".join(map(str, p[3:6])),
        "ROBOLAKE_ACCELERATOR_PORT": str(p[6]),
        "ROBOLAKE_ACCELERATOR_ADMIN_PORT": str(p[7]),
        "ROBOLAKE_LAKEFS_PORT": str(p[8]),
        "ROBOLAKE_PROMETHEUS_PORT": str(p[9]),
        "ROBOLAKE_STATE_DIR": str(tmp_path / "state"),
        "ROBOLAKE_ENV_FILE": "/nonexistent/.env",
        "ROBOLAKE_SAMPLE_DIR": str(tmp_path / "umi_data" / "sample"),
        "COLUMNS": "200",
    }
    try:
        started = time.monotonic()
        up = run(["./deploy-local.sh", "--runtime", "docker"], env, timeout=2400)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        print(f"deploy-local.sh --runtime docker: {time.monotonic() - started:.0f} s")
        # The main job ran against the containers: uploaded verified, committed, benchmarked.
        commit = re.search(r"committed ([0-9a-f]{64}) on 'main': 17 files", up.stdout)
        assert commit is not None, up.stdout[-4000:]
        assert "| accelerator warm | GET | 8 |" in up.stdout

        printed = run(["./deploy-local.sh", "env", "--runtime", "docker"], env)
        assert printed.returncode == 0, printed.stderr
        client_env = {**env, **_exports(printed.stdout)}
        assert client_env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{p[6]}"
        s = Settings.load(environ=client_env, env_file=Path("/nonexistent/.env"))

        # Three healthy nodes in one cluster, six drives.
        infos = [health.minio_cluster_info(e, s.minio_root_user, s.minio_root_password) for e in s.minio_endpoints]
        assert len({i.deployment_id for i in infos}) == 1
        assert (infos[0].servers_online, infos[0].drives_online, infos[0].standard_parity) == (3, 6, 2)
        status = run(["./deploy-local.sh", "status", "--runtime", "docker"], env)
        probed = re.findall(r"^(\w+) +http://\S+ +(healthy|NOT HEALTHY)$", status.stdout, re.M)
        assert status.returncode == 0, status.stdout + status.stderr
        assert probed == [(n, "healthy") for n in ("minio1", "minio2", "minio3", "accelerator", "lakefs")], probed

        # The commit reads back byte-identical to the files the main job generated.
        robolake = str(ROOT / ".venv/bin/robolake")
        out = tmp_path / "readback"
        read_at = [robolake, "version", "read", commit[1], "datasets/sample"]
        read = run([*read_at, str(out)], client_env)
        assert read.returncode == 0, read.stdout + read.stderr
        sample = Path(env["ROBOLAKE_SAMPLE_DIR"])
        local = {f.relative_to(sample): sha256(f.read_bytes()) for f in sample.rglob("*") if f.is_file()}
        back = {f.relative_to(out): sha256(f.read_bytes()) for f in out.rglob("*") if f.is_file()}
        assert len(back) == 17 and back == {name: local.get(name) for name in back}, sorted(back)

        # main is guarded by the validation hook, which runs in its own container.
        broken = tmp_path / "broken"
        (broken / "replay_buffer").mkdir(parents=True)
        (broken / "replay_buffer" / "dataset.zarr.zip").write_bytes(b"not a zip at all")
        refused = run([robolake, "version", "put", str(broken), "--branch", "main", "--prefix", "broken"], client_env)
        assert refused.returncode != 0 and "validation hook refused it" in refused.stderr, refused.stderr

        # A killed node: reads and writes through the accelerator go on, and the node rejoins.
        compose = ["docker-compose", "-f", "docker-compose.local.yml"] if shutil.which("docker-compose") else None
        compose = compose or ["docker", "compose", "-f", "docker-compose.local.yml"]
        killed = run([*compose, "kill", "minio2"], env)
        assert killed.returncode == 0, killed.stderr
        s3 = boto3.client(
            "s3",
            endpoint_url=client_env["AWS_ENDPOINT_URL"],
            aws_access_key_id=s.minio_root_user,
            aws_secret_access_key=s.minio_root_password,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60),
        )
        during = {f"compose-nodeloss/{i}.bin": os.urandom(3000 + i) for i in range(40)}
        for key, body in during.items():
            s3.put_object(Bucket="umi-raw", Key=key, Body=body)
        for key, body in during.items():
            assert s3.get_object(Bucket="umi-raw", Key=key)["Body"].read() == body
        again = run([*read_at, str(tmp_path / "readback-node-down")], client_env)
        assert again.returncode == 0, again.stderr
        restarted = run([*compose, "start", "minio2"], env)
        assert restarted.returncode == 0, restarted.stderr
        deadline = time.monotonic() + 120
        while not health.minio_cluster_ok(s.minio_endpoints[1]):
            assert time.monotonic() < deadline, "minio2 did not come back within 120 s"
            time.sleep(1)
    finally:
        down = run(["./deploy-local.sh", "down", "--runtime", "docker", "--volumes"], env, timeout=300)
    assert down.returncode == 0, down.stderr
    assert _project_leftovers(project, env) == {"containers": "", "networks": "", "volumes": ""}
    with contextlib.suppress(OSError):
        shutil.rmtree(tmp_path / "state")


@pytest.mark.timeout(2400)
def test_cloud_lakefs_keeps_its_state_in_the_postgres_service(dockerd: dict[str, str], tmp_path: Path) -> None:
    """docker-compose.cloud.yml's postgres and lakefs services, with the file's own environment.

    The admin lakeFS was set up with is still there for a new lakeFS container (no volume of its
    own): its data lives in PostgreSQL, whose volume outlives the database container too.
    """
    from robolake.stack.bootstrap import LakeFSAdmin
    from robolake.stack.compose import load_compose

    built = run([str(ROOT / ".venv/bin/robolake"), "stack", "images"], {**dockerd, "ROBOLAKE_ENV_FILE": "/dev/null"})
    assert built.returncode == 0, built.stdout + built.stderr
    secrets = {
        name: uuid.uuid4().hex
        for name in (
            "MINIO_ROOT_USER",
            "MINIO_ROOT_PASSWORD",
            "LAKEFS_AUTH_ENCRYPT_SECRET_KEY",
            "ROBOLAKE_WEBHOOK_TOKEN",
        )
    }
    secrets |= {
        "ROBOLAKE_POSTGRES_PASSWORD": uuid.uuid4().hex,
        "ROBOLAKE_LAKEFS_ACCESS_KEY_ID": "AKIAJCLOUDTEST0000001",
    }
    secrets["ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY"] = uuid.uuid4().hex
    keys = (secrets["ROBOLAKE_LAKEFS_ACCESS_KEY_ID"], secrets["ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY"])
    services = load_compose(ROOT / "docker-compose.cloud.yml", secrets)["services"]
    tag = f"rlcloud{uuid.uuid4().hex[:6]}"
    network, volume = f"{tag}-net", f"{tag}-pg"

    def start(service: str, *extra: str) -> str:
        spec = services[service]
        argv = ["docker", "run", "-d", "--name", f"{tag}-{service}", "--network", network, "--network-alias", service]
        for key, value in spec.get("environment", {}).items():
            argv += ["-e", f"{key}={value}"]
        done = run([*argv, *extra, spec["image"], *spec.get("command", [])], dockerd)
        assert done.returncode == 0, done.stderr
        return f"{tag}-{service}"

    def address(container: str) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return run(["docker", "inspect", "-f", fmt, container], dockerd).stdout.strip()

    def lakefs_up(container: str) -> LakeFSAdmin:
        admin = LakeFSAdmin(f"http://{address(container)}:8000", *keys)
        deadline = time.monotonic() + 90
        while not health.lakefs_healthy(admin.endpoint):
            logs = run(["docker", "logs", "--tail", "30", container], dockerd)
            assert time.monotonic() < deadline, f"lakeFS did not start: {logs.stdout}{logs.stderr}"
            time.sleep(1)
        return admin

    assert run(["docker", "network", "create", network], dockerd).returncode == 0
    try:
        postgres = start("postgres", "-v", f"{volume}:/var/lib/postgresql/data")
        deadline = time.monotonic() + 90
        probe = ["docker", "exec", postgres, "pg_isready", "-q", "-h", "127.0.0.1", "-U", "lakefs", "-d", "lakefs"]
        while run(probe, dockerd).returncode != 0:  # the file's own healthcheck
            assert time.monotonic() < deadline, run(["docker", "logs", postgres], dockerd).stderr[-2000:]
            time.sleep(1)
        # No accelerator here: lakeFS starts without its blockstore; its database is what is checked.
        first = start("lakefs")
        admin = lakefs_up(first)
        assert not admin.is_set_up() and admin.set_up("admin")
        # A new lakeFS container, and the database container restarted: the admin is still there.
        assert run(["docker", "rm", "-f", first], dockerd).returncode == 0
        assert run(["docker", "restart", postgres], dockerd).returncode == 0
        admin = lakefs_up(start("lakefs"))
        assert admin.is_set_up()
        assert requests.get(f"{admin.endpoint}/api/v1/user", auth=keys, timeout=10).json()["user"]["id"] == "admin"
        # Password authentication: a wrong password is refused from the network.
        wrong = ["docker", "exec", "-e", "PGPASSWORD=wrong", postgres, "psql", "-h", postgres, "-U", "lakefs"]
        refused = run([*wrong, "-d", "lakefs", "-c", "select 1"], dockerd)
        assert refused.returncode != 0 and "password authentication failed" in refused.stderr, refused.stderr
    finally:
        names = [f"{tag}-postgres", f"{tag}-lakefs"]
        run(["docker", "rm", "-f", *names], dockerd)
        run(["docker", "network", "rm", network], dockerd)
        run(["docker", "volume", "rm", "-f", volume], dockerd)
