"""A cluster across hosts: one file names them, each host runs its share (`robolake stack up --cluster F --host-id N`).

    # cluster.yml: every host gets the same file
    tls: {dir: certs}                  # certs/ca.crt and certs/<host>/{public.crt,private.key}
    minio: {port: 9000, console_port: 9090, drives: 2}
    accelerator: {port: 9100, admin_port: 9110}
    lakefs: {port: 8000, hooks_port: 8100}
    hosts:
      - {name: lab1, address: 10.0.0.11, data: /srv/robolake, accelerator: true, lakefs: true}
      - {name: lab2, address: 10.0.0.12, data: /srv/robolake}
      - {name: lab3, address: 10.0.0.13, data: /srv/robolake}

Each host runs one MinIO node (its drives `<data>/drive1..N`, its logs and pid files under
`<data>/state/`); where `accelerator: true`, the accelerator in front of every node; where
`lakefs: true`, lakeFS on PostgreSQL (robolake.stack.postgres: Debian's server, private to the
host, or a managed one by ROBOLAKE_LAKEFS_DATABASE_URL), its blockstore the accelerator (else the
host's own node), and the hooks server guarding main on 127.0.0.1 (only lakeFS calls it). That
host's `up` then sets the cluster up once it has formed: buckets, notifications, lakeFS's admin
and repository, the validation hook. All traffic between hosts is TLS: MinIO serves the host's
certificate and verifies its peers with the CA; the accelerator and lakeFS serve the same
certificate and verify what they call with it. `robolake certs` makes a CA and per-host
certificates for trials; real ones go in the same places. Secrets come from the environment
only, never from the file, and have no defaults: MINIO_ROOT_USER, MINIO_ROOT_PASSWORD,
ROBOLAKE_WEBHOOK_TOKEN and ROBOLAKE_ADMIN_TOKEN, and on the lakeFS host also
LAKEFS_AUTH_ENCRYPT_SECRET_KEY, ROBOLAKE_LAKEFS_ACCESS_KEY_ID, ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY
and ROBOLAKE_HOOKS_TOKEN. Relative paths are relative to the file.
Erasure coding: parity is the drives of one host, so a cluster of three or more hosts keeps
reading and writing with one host gone.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from robolake.errors import ConfigError, ServerStartError
from robolake.stack.postgres import Postgres, find_bindir
from robolake.stack.process import ProcessSpec
from robolake.stack.specs import LAKEFS_QUIET_ENV, WEBHOOK_ID, lakefs_config, write_private_yaml
from robolake.versioning.hooks import HOOK_TOKEN_ENV

SECRETS = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "ROBOLAKE_WEBHOOK_TOKEN", "ROBOLAKE_ADMIN_TOKEN")
LAKEFS_SECRETS = (
    "LAKEFS_AUTH_ENCRYPT_SECRET_KEY",
    "ROBOLAKE_LAKEFS_ACCESS_KEY_ID",
    "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY",
    "ROBOLAKE_HOOKS_TOKEN",
)
DATABASE_URL = "ROBOLAKE_LAKEFS_DATABASE_URL"  # a managed PostgreSQL instead of the host's own


@dataclasses.dataclass(frozen=True)
class Host:
    name: str
    address: str
    data: Path
    accelerator: bool = False
    lakefs: bool = False

    @property
    def url_host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address


@dataclasses.dataclass(frozen=True)
class Cluster:
    path: Path
    hosts: tuple[Host, ...]
    tls_dir: Path
    minio_port: int = 9000
    console_port: int = 9090
    drives: int = 2
    accelerator_port: int = 9100
    accelerator_admin_port: int = 9110
    lakefs_port: int = 8000
    hooks_port: int = 8100
    # MinIO refuses drives on the root disk unless told this is a trial (MINIO_CI_CD).
    allow_root_disk: bool = False

    @property
    def ca(self) -> Path:
        return self.tls_dir / "ca.crt"

    def cert(self, host: Host) -> Path:
        return self.tls_dir / host.name / "public.crt"

    def key(self, host: Host) -> Path:
        return self.tls_dir / host.name / "private.key"

    def host(self, host_id: int) -> Host:
        if not 1 <= host_id <= len(self.hosts):
            raise ConfigError(
                f"--host-id {host_id} is not a host of {self.path}: it names hosts 1 to {len(self.hosts)} "
                f"({', '.join(f'{i}={h.name}' for i, h in enumerate(self.hosts, start=1))})"
            )
        return self.hosts[host_id - 1]

    def node_url(self, host: Host) -> str:
        return f"https://{host.url_host}:{self.minio_port}"

    def accelerator_host(self) -> Host | None:
        return next((h for h in self.hosts if h.accelerator), None)

    def accelerator_url(self) -> str | None:
        host = self.accelerator_host()
        return None if host is None else f"https://{host.url_host}:{self.accelerator_port}"

    def lakefs_url(self, host: Host) -> str:
        return f"https://{host.url_host}:{self.lakefs_port}"

    def blockstore_url(self, host: Host) -> str:
        """Where lakeFS on `host` reads and writes objects: the accelerator, else the host's node."""
        return self.accelerator_url() or self.node_url(host)

    def drive_urls(self) -> list[str]:
        return [f"{self.node_url(h)}{h.data / f'drive{d}'}" for h in self.hosts for d in range(1, self.drives + 1)]


def _port(doc: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = doc.get(key, default)
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{where}: {key} {value!r} is not a port (1-65535)")
    return value


def load_cluster(path: Path) -> Cluster:
    """Read and check a cluster file; every problem is one ConfigError naming the file and the field."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the cluster file {str(path)!r}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("hosts"), list) or not doc["hosts"]:
        raise ConfigError(f"the cluster file {str(path)!r} names no hosts: it needs a `hosts:` list")
    base = path.resolve().parent
    minio, accel, tls, lakefs = (doc.get(k) or {} for k in ("minio", "accelerator", "tls", "lakefs"))
    hosts = []
    for i, item in enumerate(doc["hosts"], start=1):
        where = f"{path}: host {i}"
        if not isinstance(item, dict) or not {"name", "address", "data"} <= set(item):
            raise ConfigError(f"{where} needs name, address and data (its drives' directory)")
        try:
            ipaddress.ip_address(str(item["address"]))
        except ValueError:
            raise ConfigError(f"{where}: address {item['address']!r} is not an IP address") from None
        roles = {role: bool(item.get(role)) for role in ("accelerator", "lakefs")}
        hosts.append(Host(str(item["name"]), str(item["address"]), base / str(item["data"]), **roles))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names) or len({h.address for h in hosts}) != len(hosts):
        raise ConfigError(f"{path}: host names and addresses must be unique (names: {', '.join(names)})")
    if len(hosts) < 3:
        raise ConfigError(f"{path}: {len(hosts)} hosts; erasure coding that survives a lost host needs at least 3")
    for role in ("accelerator", "lakefs"):
        if len(with_role := [h.name for h in hosts if getattr(h, role)]) > 1:
            raise ConfigError(f"{path}: {role}: true on {', '.join(with_role)}; one host runs it")
    drives = minio.get("drives", 2)
    if not isinstance(drives, int) or not 1 <= drives <= 16:
        raise ConfigError(f"{path}: minio.drives {drives!r} must be 1 to 16 drives per host")
    return Cluster(
        path=path,
        hosts=tuple(hosts),
        tls_dir=base / str(tls.get("dir", "certs")),
        minio_port=_port(minio, "port", 9000, f"{path}: minio"),
        console_port=_port(minio, "console_port", 9090, f"{path}: minio"),
        drives=drives,
        accelerator_port=_port(accel, "port", 9100, f"{path}: accelerator"),
        accelerator_admin_port=_port(accel, "admin_port", 9110, f"{path}: accelerator"),
        lakefs_port=_port(lakefs, "port", 8000, f"{path}: lakefs"),
        hooks_port=_port(lakefs, "hooks_port", 8100, f"{path}: lakefs"),
        allow_root_disk=bool(doc.get("allow_root_disk", False)),
    )


def required_secrets(environ: Mapping[str, str], host: Host | None = None) -> dict[str, str]:
    """The secrets `host` needs from the environment; a missing one is a ConfigError (no defaults)."""
    names = SECRETS + (LAKEFS_SECRETS if host is not None and host.lakefs else ())
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"a cluster across hosts has no default secrets: set {', '.join(missing)} (the same on every host; "
            "e.g. export ROBOLAKE_ADMIN_TOKEN=$(openssl rand -hex 24))"
        )
    found = {name: environ[name] for name in names}
    if environ.get(DATABASE_URL):
        found[DATABASE_URL] = environ[DATABASE_URL]
    return found


def _state(host: Host) -> Path:
    return host.data / "state"


def _spec(host: Host, name: str, argv: list[str], env: dict[str, str], ports: dict[int, str], cwd: Path) -> ProcessSpec:
    state = _state(host)
    return ProcessSpec(
        name=name,
        argv=argv,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(state), **env},
        ports=ports,
        host=host.address,
        log_path=state / "logs" / f"{name}.log",
        pid_path=state / "run" / f"{name}.pid",
        cwd=cwd,
    )


def minio_certs_dir(cluster: Cluster, host: Host) -> Path:
    """MinIO's --certs-dir for `host`: public.crt, private.key and CAs/ca.crt, copied from the cluster's TLS dir."""
    for path in (cluster.ca, cluster.cert(host), cluster.key(host)):
        if not path.is_file():
            raise ConfigError(
                f"{path} is missing: make trial certificates with `robolake certs --cluster {cluster.path}`"
            )
    certs = _state(host) / "minio-certs"
    (certs / "CAs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cluster.cert(host), certs / "public.crt")
    shutil.copyfile(cluster.key(host), certs / "private.key")
    os.chmod(certs / "private.key", 0o600)
    shutil.copyfile(cluster.ca, certs / "CAs" / "ca.crt")
    return certs


def host_specs(
    cluster: Cluster, host: Host, binaries: Mapping[str, Path], secrets: Mapping[str, str]
) -> list[ProcessSpec]:
    """The processes `host` runs: its MinIO node, then the accelerator and lakeFS where configured.

    `binaries` maps minio (and lakefs, on the lakeFS host) to the built binaries.
    """
    state = _state(host)
    for d in range(1, cluster.drives + 1):
        (host.data / f"drive{d}").mkdir(parents=True, exist_ok=True)
    (state / "node").mkdir(parents=True, exist_ok=True)
    env = {
        "MINIO_ROOT_USER": secrets["MINIO_ROOT_USER"],
        "MINIO_ROOT_PASSWORD": secrets["MINIO_ROOT_PASSWORD"],
        "MINIO_STORAGE_CLASS_STANDARD": f"EC:{cluster.drives}",
        "MINIO_UPDATE": "off",
    }
    if cluster.allow_root_disk:
        env["MINIO_CI_CD"] = "1"
    accel_url = cluster.accelerator_url()
    if accel_url is not None:
        accel_host = cluster.accelerator_host()
        assert accel_host is not None
        admin = f"https://{accel_host.url_host}:{cluster.accelerator_admin_port}"
        env |= {
            f"MINIO_NOTIFY_WEBHOOK_ENABLE_{WEBHOOK_ID}": "on",
            f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{WEBHOOK_ID}": f"{admin}/minio/events",
            f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{WEBHOOK_ID}": secrets["ROBOLAKE_WEBHOOK_TOKEN"],
            # MinIO wants every MINIO_* value the same on all hosts, and the queue path absolute:
            # it resolves through the node's working directory (state/node), wherever data is.
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{WEBHOOK_ID}": "/proc/self/cwd/events",
        }
    argv = [str(binaries["minio"]), "server", "--address", f"{host.url_host}:{cluster.minio_port}"]
    argv += ["--console-address", f"{host.url_host}:{cluster.console_port}"]
    argv += ["--certs-dir", str(minio_certs_dir(cluster, host)), *cluster.drive_urls()]
    ports = {
        cluster.minio_port: f"{cluster.path}: minio.port",
        cluster.console_port: f"{cluster.path}: minio.console_port",
    }
    specs = [_spec(host, "minio", argv, env, ports, state / "node")]
    if host.accelerator:
        specs.append(_accelerator_spec(cluster, host, secrets))
    if host.lakefs:
        specs += _lakefs_specs(cluster, host, binaries["lakefs"], secrets)
    return specs


def _accelerator_spec(cluster: Cluster, host: Host, secrets: Mapping[str, str]) -> ProcessSpec:
    state = _state(host)
    env = {**{k: secrets[k] for k in SECRETS}, "ROBOLAKE_ENV_FILE": "/dev/null"}
    argv = [sys.executable, "-m", "robolake.cli.accelerator", "serve", "--host", host.address]
    argv += ["--port", str(cluster.accelerator_port), "--admin-port", str(cluster.accelerator_admin_port)]
    argv += [
        "--cache-dir",
        str(state / "accelerator-cache"),
        *(f"--upstream={cluster.node_url(h)}" for h in cluster.hosts),
    ]
    argv += ["--tls-cert", str(cluster.cert(host)), "--tls-key", str(cluster.key(host)), "--ca-file", str(cluster.ca)]
    argv += ["--notify-arn", f"arn:minio:sqs::{WEBHOOK_ID}:webhook"]
    ports = {
        cluster.accelerator_port: f"{cluster.path}: accelerator.port",
        cluster.accelerator_admin_port: f"{cluster.path}: accelerator.admin_port",
    }
    return _spec(host, "accelerator", argv, env, ports, state)


def _postgres(host: Host) -> Postgres:
    # The socket's directory has a short name: a Unix socket's path is at most 107 bytes.
    return Postgres(root=_state(host) / "postgres", socket_dir=_state(host) / "pg", bindir=find_bindir())


def _lakefs_specs(cluster: Cluster, host: Host, binary: Path, secrets: Mapping[str, str]) -> list[ProcessSpec]:
    """PostgreSQL (unless a managed database is given), lakeFS over TLS, and the hooks server."""
    state, ca = _state(host), str(cluster.ca)
    specs = []
    if DATABASE_URL in secrets:
        connection = secrets[DATABASE_URL]
    else:
        postgres = _postgres(host)
        postgres.init()
        spec = _spec(host, "postgres", postgres.argv(), {}, {}, postgres.root)
        specs.append(dataclasses.replace(spec, user=postgres.run_as()))
        connection = postgres.connection_string()
    config = lakefs_config(
        listen=f"{host.url_host}:{cluster.lakefs_port}",
        database={"type": "postgres", "postgres": {"connection_string": connection}},
        encrypt_secret=secrets["LAKEFS_AUTH_ENCRYPT_SECRET_KEY"],
        cache_dir=state / "lakefs" / "cache",
        s3_endpoint=cluster.blockstore_url(host),
        s3_keys=(secrets["MINIO_ROOT_USER"], secrets["MINIO_ROOT_PASSWORD"]),
        tls={"enabled": True, "cert_file": str(cluster.cert(host)), "key_file": str(cluster.key(host))},
    )
    config_path = write_private_yaml(state / "lakefs" / "config.yaml", config)
    # lakeFS (Go) verifies the accelerator's or node's certificate with the CA in SSL_CERT_FILE.
    env = {**LAKEFS_QUIET_ENV, HOOK_TOKEN_ENV: secrets["ROBOLAKE_HOOKS_TOKEN"], "SSL_CERT_FILE": ca}
    ports = {cluster.lakefs_port: f"{cluster.path}: lakefs.port"}
    specs.append(_spec(host, "lakefs", [str(binary), "run", "--config", str(config_path)], env, ports, state))
    hooks_env = {k: secrets[k] for k in ("ROBOLAKE_HOOKS_TOKEN", "ROBOLAKE_ADMIN_TOKEN", *LAKEFS_SECRETS[1:3])}
    hooks_env |= {"ROBOLAKE_ENV_FILE": "/dev/null", "ROBOLAKE_STATE_DIR": str(state), "REQUESTS_CA_BUNDLE": ca}
    argv = [sys.executable, "-m", "robolake.cli.hooks", "serve", "--host", "127.0.0.1"]
    argv += ["--port", str(cluster.hooks_port), "--lakefs-endpoint", cluster.lakefs_url(host)]
    argv += ["--work-dir", str(state / "hooks")]
    # Only lakeFS, on this host, calls the hooks server: it listens on loopback.
    hooks = _spec(host, "hooks", argv, hooks_env, {cluster.hooks_port: f"{cluster.path}: lakefs.hooks_port"}, state)
    specs.append(dataclasses.replace(hooks, host="127.0.0.1"))
    return specs


def set_up_cluster(cluster: Cluster, host_id: int, secrets: Mapping[str, str], wait_s: float) -> None:
    """From the lakeFS host, once the cluster has formed: buckets, notifications, lakeFS's admin
    and repository, the validation hook on main (`robolake stack bootstrap`; idempotent)."""
    host = cluster.host(host_id)
    argv = [sys.executable, "-m", "robolake.cli.main", "stack", "bootstrap", "--wait", str(wait_s)]
    argv += ["--minio-endpoint", cluster.node_url(host), "--lakefs-endpoint", cluster.lakefs_url(host)]
    argv += ["--hooks-endpoint", f"http://127.0.0.1:{cluster.hooks_port}"]
    if cluster.accelerator_host() is None:
        argv.append("--no-notifications")
    ca = str(cluster.ca)
    env = {**os.environ, **secrets, "ROBOLAKE_ENV_FILE": "/dev/null", "REQUESTS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca}
    if subprocess.run(argv, env=env, check=False).returncode != 0:  # it reports on this terminal
        raise ServerStartError(
            f"setting the cluster up from host {host_id} failed (above); its servers are left running: once "
            f"every host is up, run `robolake stack up --cluster {cluster.path} --host-id {host_id}` again"
        )


def _http_ok(url: str, ca: Path | None) -> bool:
    """`url` answers 200 (an https one verified with the cluster's CA `ca`)."""
    import requests

    try:
        return requests.get(url, timeout=3, verify=True if ca is None else str(ca)).status_code == 200
    except requests.RequestException:
        return False


def _probes(cluster: Cluster, host: Host) -> dict[str, Callable[[], bool]]:
    """Per process of `host`, in the order `up` starts them, a check that it serves."""
    ok = functools.partial(_http_ok, ca=cluster.ca)
    probes: dict[str, Callable[[], bool]] = {
        "minio": functools.partial(ok, f"{cluster.node_url(host)}/minio/health/live")
    }
    if host.accelerator:
        probes["accelerator"] = functools.partial(
            ok, f"https://{host.url_host}:{cluster.accelerator_admin_port}/health"
        )
    if host.lakefs:
        if (_state(host) / "postgres" / "data").exists():  # not with a managed database
            probes["postgres"] = _postgres(host).ready
        probes["lakefs"] = functools.partial(ok, f"{cluster.lakefs_url(host)}/_health")
        probes["hooks"] = functools.partial(_http_ok, f"http://127.0.0.1:{cluster.hooks_port}/health", None)
    return probes


def host_up(
    cluster: Cluster,
    host_id: int,
    binaries: Mapping[str, Path],
    secrets: Mapping[str, str],
    *,
    wait_s: float = 120,
    setup_wait_s: float = 300,
) -> list[str]:
    """Start what host `host_id` runs and is not running yet; returns what was started.

    Each process is waited on until it serves on its own address (a node answers its health
    check before the other hosts are up; the cluster forms once enough of them are). The lakeFS
    host then waits up to `setup_wait_s` for the cluster and sets it up.
    """
    from robolake.stack.process import ManagedProcess, check_ports_free

    host = cluster.host(host_id)
    processes = [ManagedProcess(spec) for spec in host_specs(cluster, host, binaries, secrets)]
    wanted = [p for p in processes if not p.is_running()]
    check_ports_free([p.spec for p in wanted])
    probes = _probes(cluster, host)
    for process in wanted:
        process.start()
        process.wait_healthy(probes[process.name], wait_s)
    if host.lakefs:
        set_up_cluster(cluster, host_id, secrets, setup_wait_s)
    return [p.name for p in wanted]


def host_down(cluster: Cluster, host_id: int) -> list[str]:
    """Stop host `host_id`'s processes (the accelerator first); data stays in its drives."""
    from robolake.stack.process import ManagedProcess

    host = cluster.host(host_id)
    stopped = []
    for name in reversed(list(_probes(cluster, host))):  # what host_up started, the other way round
        spec = _spec(host, name, ["?"], {}, {}, _state(host))
        if ManagedProcess(spec).stop():
            stopped.append(name)
    return stopped


def host_status(cluster: Cluster, host_id: int) -> dict[str, bool]:
    host = cluster.host(host_id)
    return {name: probe() for name, probe in _probes(cluster, host).items()}
