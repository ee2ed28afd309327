"""The Docker Compose runtime: is an engine there, which Compose runs, what a compose file declares."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from robolake.errors import ConfigError, ToolchainError
from robolake.stack.native import NativeStack

_ELLIPSIS = re.compile(r"\{(\d+)\.\.\.(\d+)\}")  # MinIO's endpoint expansion: data{1...2}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Topology:
    """What both runtimes must agree on (`compose_topology` == `native_topology`); names are not compared."""

    minio_nodes: tuple[str, ...] = dataclasses.field(compare=False)
    s3_ports: tuple[int, ...]
    console_ports: tuple[int, ...]
    drives_per_node: int
    parity: int
    lakefs_port: int
    healthchecks: tuple[bool, ...]  # per node: does the runtime probe its health?
    drive_volumes: tuple[bool, ...]  # per node: does every drive outlive the process or container?


def _runs(argv: list[str], timeout_s: float) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def docker_engine_available(timeout_s: float = 10.0) -> bool:
    """True when `docker info` answers: a CLI alone, without a running daemon, is not enough."""
    return _runs(["docker", "info"], timeout_s)


def compose_command(timeout_s: float = 10.0) -> list[str]:
    """The argv prefix that runs Compose: the v2 plugin `docker compose`, else `docker-compose`."""
    if _runs(["docker", "compose", "version"], timeout_s):  # False when `docker` is missing, too
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise ToolchainError(
        "Docker Compose is not installed: neither `docker compose` nor `docker-compose` runs; install it "
        "(./install-docker.sh on Debian/Ubuntu), or run the stack without Docker: ./deploy-local.sh --runtime native"
    )


def load_compose(path: Path) -> dict[str, Any]:
    """Parse a compose file; a missing file, bad YAML or no `services:` is a ConfigError."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load the compose file {str(path)!r}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ConfigError(f"the compose file {str(path)!r} has no `services:` mapping")
    return doc


def _expand(pattern: str) -> list[str]:
    if (match := _ELLIPSIS.search(pattern)) is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [s for i in range(int(match[1]), int(match[2]) + 1) for s in _expand(f"{head}{i}{tail}")]


def _port(service: str, text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"service {service!r}: {text!r} is not a port number")
    return int(text)


def _host_port(service: str, svc: dict[str, Any], container_port: int) -> int:
    """The host port published for `container_port`, from short ("127.0.0.1:9001:9000") or long syntax."""
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            target, published = str(entry.get("target")), str(entry.get("published"))
        else:  # "[HOST_IP:][HOST:]CONTAINER[/PROTOCOL]"
            *rest, target = str(entry).split("/")[0].split(":")
            published = (rest or [target])[-1]
        if _port(service, target) == container_port:
            return _port(service, published)
    raise ConfigError(f"service {service!r} does not publish its container port {container_port}")


def _environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    pairs = (str(item).partition("=")[::2] for item in env) if isinstance(env, list) else env.items()
    return {str(k): str(v) for k, v in pairs}


def _flag_port(service: str, argv: list[str], flag: str, default: str = "") -> int:
    value = argv[argv.index(flag) + 1] if flag in argv[:-1] else default
    if not value:
        raise ConfigError(f"service {service!r} sets no {flag}, so MinIO would pick that port at random")
    return _port(service, value.rsplit(":", 1)[-1])


def compose_topology(doc: dict[str, Any]) -> Topology:
    """Extract the cluster's shape from a parsed compose file (see `load_compose`)."""
    services: dict[str, Any] = doc["services"]
    names = sorted((n for n in services if re.fullmatch(r"minio\d+", n)), key=lambda n: int(n[5:]))
    if not names or "lakefs" not in services:
        raise ConfigError(f"expected services minio1, minio2, ... and lakefs; found {sorted(services)}")
    s3, console, drives, parity, health, persisted = [], [], set(), set(), [], []
    for name in names:
        svc = services[name]
        argv = shlex.split(cmd) if isinstance(cmd := svc.get("command") or [], str) else [str(a) for a in cmd]
        s3.append(_host_port(name, svc, _flag_port(name, argv, "--address", ":9000")))
        console.append(_host_port(name, svc, _flag_port(name, argv, "--console-address")))
        urls = [urlsplit(u) for a in argv if a.startswith(("http://", "https://")) for u in _expand(a)]
        paths = {u.path for u in urls if u.hostname == svc.get("hostname", name)}
        drives.add(len(paths))
        storage_class = _environment(svc).get("MINIO_STORAGE_CLASS_STANDARD", "")
        if not re.fullmatch(r"EC:\d+", storage_class):
            raise ConfigError(f"service {name!r}: MINIO_STORAGE_CLASS_STANDARD={storage_class!r}, expected EC:<n>")
        parity.add(int(storage_class[3:]))
        health.append(bool((svc.get("healthcheck") or {}).get("test")))  # `disable: true` comes without a test
        mounts = {v["target"] if isinstance(v, dict) else str(v).split(":")[:2][-1] for v in svc.get("volumes") or []}
        persisted.append(bool(paths) and paths <= mounts)
    if len(drives) != 1 or len(parity) != 1:
        raise ConfigError(f"the MinIO nodes disagree: drives per node {sorted(drives)}, parity {sorted(parity)}")
    listen = _environment(services["lakefs"]).get("LAKEFS_LISTEN_ADDRESS", ":8000")
    return Topology(
        minio_nodes=tuple(names), s3_ports=tuple(s3), console_ports=tuple(console),
        drives_per_node=drives.pop(), parity=parity.pop(), healthchecks=tuple(health), drive_volumes=tuple(persisted),
        lakefs_port=_host_port("lakefs", services["lakefs"], _port("lakefs", listen.rsplit(":", 1)[-1])),
    )


def native_topology(stack: NativeStack) -> Topology:
    """The native runtime waits on each node's health and keeps every drive in its state directory."""
    s, nodes = stack.settings, tuple(stack.minio_names())
    return Topology(
        minio_nodes=nodes, s3_ports=s.minio_ports, console_ports=s.minio_console_ports,
        drives_per_node=s.drives_per_node, parity=stack.parity, lakefs_port=s.lakefs_port,
        healthchecks=(True,) * len(nodes), drive_volumes=(True,) * len(nodes),
    )
