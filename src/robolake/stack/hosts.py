"""A cluster across hosts: one file names them, each host runs its share (`robolake stack up --cluster F --host-id N`).

    # cluster.yml: every host gets the same file
    tls: {dir: certs}                  # certs/ca.crt and certs/<host>/{public.crt,private.key}
    minio: {port: 9000, console_port: 9090, drives: 2}
    accelerator: {port: 9100, admin_port: 9110}
    hosts:
      - {name: lab1, address: 10.0.0.11, data: /srv/robolake, accelerator: true}
      - {name: lab2, address: 10.0.0.12, data: /srv/robolake}
      - {name: lab3, address: 10.0.0.13, data: /srv/robolake}

Each host runs one MinIO node (its drives `<data>/drive1..N`, its logs and pid files under
`<data>/state/`) and, where `accelerator: true`, the accelerator in front of every node. All
traffic is TLS: MinIO serves the host's certificate and verifies its peers with the CA; the
accelerator serves the same certificate and verifies the nodes with it. `robolake certs` makes a
CA and per-host certificates for trials; real ones go in the same places. Secrets come from the
environment only, never from the file, and have no defaults: MINIO_ROOT_USER, MINIO_ROOT_PASSWORD,
ROBOLAKE_WEBHOOK_TOKEN and ROBOLAKE_ADMIN_TOKEN. Relative paths are relative to the file.
Erasure coding: parity is the drives of one host, so a cluster of three or more hosts keeps
reading and writing with one host gone.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from robolake.errors import ConfigError
from robolake.stack.process import ProcessSpec
from robolake.stack.specs import WEBHOOK_ID

SECRETS = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "ROBOLAKE_WEBHOOK_TOKEN", "ROBOLAKE_ADMIN_TOKEN")


@dataclasses.dataclass(frozen=True)
class Host:
    name: str
    address: str
    data: Path
    accelerator: bool = False

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
    minio, accel, tls = (doc.get(k) or {} for k in ("minio", "accelerator", "tls"))
    hosts = []
    for i, item in enumerate(doc["hosts"], start=1):
        where = f"{path}: host {i}"
        if not isinstance(item, dict) or not {"name", "address", "data"} <= set(item):
            raise ConfigError(f"{where} needs name, address and data (its drives' directory)")
        try:
            ipaddress.ip_address(str(item["address"]))
        except ValueError:
            raise ConfigError(f"{where}: address {item['address']!r} is not an IP address") from None
        hosts.append(
            Host(str(item["name"]), str(item["address"]), base / str(item["data"]), bool(item.get("accelerator")))
        )
    names = [h.name for h in hosts]
    if len(set(names)) != len(names) or len({h.address for h in hosts}) != len(hosts):
        raise ConfigError(f"{path}: host names and addresses must be unique (names: {', '.join(names)})")
    if len(hosts) < 3:
        raise ConfigError(f"{path}: {len(hosts)} hosts; erasure coding that survives a lost host needs at least 3")
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
        allow_root_disk=bool(doc.get("allow_root_disk", False)),
    )


def required_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """The cluster's secrets from the environment; a missing one is a ConfigError (no defaults)."""
    missing = [name for name in SECRETS if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"a cluster across hosts has no default secrets: set {', '.join(missing)} (the same on every host; "
            "e.g. export ROBOLAKE_ADMIN_TOKEN=$(openssl rand -hex 24))"
        )
    return {name: environ[name] for name in SECRETS}


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


def host_specs(cluster: Cluster, host: Host, minio_binary: Path, secrets: Mapping[str, str]) -> list[ProcessSpec]:
    """The processes `host` runs: its MinIO node, then the accelerator where configured."""
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
    argv = [str(minio_binary), "server", "--address", f"{host.url_host}:{cluster.minio_port}"]
    argv += ["--console-address", f"{host.url_host}:{cluster.console_port}"]
    argv += ["--certs-dir", str(minio_certs_dir(cluster, host)), *cluster.drive_urls()]
    ports = {
        cluster.minio_port: f"{cluster.path}: minio.port",
        cluster.console_port: f"{cluster.path}: minio.console_port",
    }
    specs = [_spec(host, "minio", argv, env, ports, state / "node")]
    if host.accelerator:
        specs.append(_accelerator_spec(cluster, host, secrets))
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


def _https_ok(url: str, ca: Path) -> bool:
    import requests

    try:
        return requests.get(url, timeout=3, verify=str(ca)).status_code == 200
    except requests.RequestException:
        return False


def _probes(cluster: Cluster, host: Host) -> dict[str, str]:
    """Per process of `host`, the URL that answers 200 once it serves."""
    probes = {"minio": f"{cluster.node_url(host)}/minio/health/live"}
    if host.accelerator:
        probes["accelerator"] = f"https://{host.url_host}:{cluster.accelerator_admin_port}/health"
    return probes


def host_up(
    cluster: Cluster, host_id: int, minio_binary: Path, secrets: Mapping[str, str], *, wait_s: float = 120
) -> list[str]:
    """Start what host `host_id` runs and is not running yet; returns what was started.

    Each process is waited on until it serves on its own address (a node answers its health
    check before the other hosts are up; the cluster forms once enough of them are).
    """
    from robolake.stack.process import ManagedProcess, check_ports_free

    host = cluster.host(host_id)
    processes = [ManagedProcess(spec) for spec in host_specs(cluster, host, minio_binary, secrets)]
    wanted = [p for p in processes if not p.is_running()]
    check_ports_free([p.spec for p in wanted])
    probes = _probes(cluster, host)
    for process in wanted:
        process.start()
        process.wait_healthy(functools.partial(_https_ok, probes[process.name], cluster.ca), wait_s)
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
    return {name: _https_ok(url, cluster.ca) for name, url in _probes(cluster, host).items()}
