"""The Docker Compose runtime: is an engine there, which Compose runs, what a compose file declares."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from robolake.errors import ConfigError, ToolchainError
from robolake.stack.specs import WEBHOOK_ID, NativeSpecs
from robolake.state import Credentials

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
    accelerator_port: int  # the accelerator's S3 endpoint, as published on the host
    accelerator_admin_port: int  # its /metrics, /stats, /health and /minio/events
    accelerator_healthcheck: bool
    accelerator_upstreams: tuple[bool, ...]  # per node: does the accelerator send requests to it?
    # per node: bucket events go to the accelerator's /minio/events with its token, queued on disk
    # that outlives the process or container while the accelerator is down
    webhooks: tuple[bool, ...]
    lakefs_blockstore: str  # the component lakeFS's S3 endpoint names: "accelerator", "minio", else the URL


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


_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?message}` in every string of `value`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match[1], match[2] or "", match[3] or ""
        have = env.get(name)
        if have is None or (op.startswith(":") and not have):
            if op.endswith("?"):
                raise ConfigError(f"{name} is not set: {arg or 'the compose file needs it'}")
            return arg if op.endswith("-") else ""
        return have

    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def load_compose(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parse a compose file; a missing file, bad YAML or no `services:` is a ConfigError.

    With `env`, variables are substituted as Compose does (`${NAME:-default}`) from it.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load the compose file {str(path)!r}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ConfigError(f"the compose file {str(path)!r} has no `services:` mapping")
    return doc if env is None else interpolate(doc, env)


def compose_exports(doc: dict[str, Any]) -> dict[str, str]:
    """What a client on the host needs for the stack a (substituted) compose file runs.

    The robolake settings (ports, MinIO root user, lakeFS keys, hook token) and the variables
    aws-cli, mc, boto3 and lakectl read, all taken from the file's published ports and the
    environments it gives its services.
    """
    topology = compose_topology(doc)
    services = doc["services"]
    minio, setup = _environment(services["minio1"]), _environment(services.get("setup") or {})
    hooks = _environment(services.get("hooks") or {})
    user, password = minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]
    endpoint = f"http://127.0.0.1:{topology.accelerator_port}"
    lakefs = f"http://127.0.0.1:{topology.lakefs_port}"
    key, secret = setup.get("ROBOLAKE_LAKEFS_ACCESS_KEY_ID", ""), setup.get("ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY", "")
    values = {
        "ROBOLAKE_MINIO_PORTS": ",".join(map(str, topology.s3_ports)),
        "ROBOLAKE_MINIO_CONSOLE_PORTS": ",".join(map(str, topology.console_ports)),
        "ROBOLAKE_ACCELERATOR_PORT": str(topology.accelerator_port),
        "ROBOLAKE_ACCELERATOR_ADMIN_PORT": str(topology.accelerator_admin_port),
        "ROBOLAKE_LAKEFS_PORT": str(topology.lakefs_port),
        "MINIO_ROOT_USER": user,
        "MINIO_ROOT_PASSWORD": password,
        "ROBOLAKE_LAKEFS_ACCESS_KEY_ID": key,
        "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": secret,
        "ROBOLAKE_HOOKS_TOKEN": hooks.get("ROBOLAKE_HOOKS_TOKEN", ""),
        "AWS_ACCESS_KEY_ID": user,
        "AWS_SECRET_ACCESS_KEY": password,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "MC_HOST_robolake": f"http://{user}:{password}@{endpoint.split('://', 1)[1]}",
        "LAKECTL_SERVER_ENDPOINT_URL": lakefs,
        "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": key,
        "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": secret,
    }
    if "prometheus" in services:
        values["ROBOLAKE_PROMETHEUS_PORT"] = str(_host_port("prometheus", services["prometheus"], 9090))
    return values


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
    for entry in interpolate(svc.get("ports") or [], {}):  # a port variable's default, in a file not substituted
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


def _argv(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]


def _flag_values(argv: list[str], flag: str) -> list[str]:
    """Every value of `flag`, written as `--flag value` or `--flag=value`."""
    spaced = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]
    return spaced + [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{flag}=")]


def _flag_port(service: str, argv: list[str], flag: str, default: str = "") -> int:
    value = (_flag_values(argv, flag) or [default])[-1]
    if not value:
        raise ConfigError(f"service {service!r} sets no {flag}, so that port is not fixed; add `{flag} <port>`")
    return _port(service, value.rsplit(":", 1)[-1])


def _sends_events(env: Mapping[str, str], events_url: str, token: str) -> bool:
    """Does a MinIO node with this environment post its bucket events to `events_url` with `token`?"""
    keys = ("ENABLE", "ENDPOINT", "AUTH_TOKEN", "QUEUE_DIR")
    hook = {k: env.get(f"MINIO_NOTIFY_WEBHOOK_{k}_{WEBHOOK_ID}", "") for k in keys}
    return (
        hook["ENABLE"] == "on"
        and hook["ENDPOINT"] == events_url
        and bool(token)
        and hook["AUTH_TOKEN"] == token
        # MinIO keeps undelivered events only with a queue directory, and wants it absolute.
        and hook["QUEUE_DIR"].startswith("/")
    )


def _component(url: str, components: dict[str, str]) -> str:
    return components.get(url.rstrip("/"), url)


def compose_topology(doc: dict[str, Any]) -> Topology:
    """Extract the cluster's shape from a parsed compose file (see `load_compose`)."""
    services: dict[str, Any] = doc["services"]
    names = sorted((n for n in services if re.fullmatch(r"minio\d+", n)), key=lambda n: int(n[5:]))
    if not names or "lakefs" not in services or "accelerator" not in services:
        raise ConfigError(f"expected services minio1, minio2, ..., accelerator and lakefs; found {sorted(services)}")
    accel = services["accelerator"]
    accel_argv = _argv(accel)
    accel_port = _flag_port("accelerator", accel_argv, "--port")
    accel_admin_port = _flag_port("accelerator", accel_argv, "--admin-port")
    upstreams = {u.rstrip("/") for u in _flag_values(accel_argv, "--upstream")}
    events_url = f"http://accelerator:{accel_admin_port}/minio/events"  # service names resolve in the network
    token = _environment(accel).get("ROBOLAKE_WEBHOOK_TOKEN", "")
    components = {f"http://accelerator:{accel_port}": "accelerator"}
    s3, console, drives, parity, health, persisted, balanced, webhooks = [], [], set(), set(), [], [], [], []
    for name in names:
        svc = services[name]
        argv = _argv(svc)
        address = _flag_port(name, argv, "--address", ":9000")
        components[f"http://{name}:{address}"] = "minio"
        balanced.append(f"http://{name}:{address}" in upstreams)
        s3.append(_host_port(name, svc, address))
        console.append(_host_port(name, svc, _flag_port(name, argv, "--console-address")))
        urls = [urlsplit(u) for a in argv if a.startswith(("http://", "https://")) for u in _expand(a)]
        paths = {u.path for u in urls if u.hostname == svc.get("hostname", name)}
        drives.add(len(paths))
        env = _environment(svc)
        storage_class = env.get("MINIO_STORAGE_CLASS_STANDARD", "")
        if not re.fullmatch(r"EC:\d+", storage_class):
            raise ConfigError(f"service {name!r}: MINIO_STORAGE_CLASS_STANDARD={storage_class!r}, expected EC:<n>")
        parity.add(int(storage_class[3:]))
        health.append(bool((svc.get("healthcheck") or {}).get("test")))  # `disable: true` comes without a test
        mounts = {v["target"] if isinstance(v, dict) else str(v).split(":")[:2][-1] for v in svc.get("volumes") or []}
        persisted.append(bool(paths) and paths <= mounts)
        queue = env.get(f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{WEBHOOK_ID}")
        webhooks.append(_sends_events(env, events_url, token) and queue in mounts)
    if len(drives) != 1 or len(parity) != 1:
        raise ConfigError(f"the MinIO nodes disagree: drives per node {sorted(drives)}, parity {sorted(parity)}")
    lakefs_env = _environment(services["lakefs"])
    listen = lakefs_env.get("LAKEFS_LISTEN_ADDRESS", ":8000")
    return Topology(
        minio_nodes=tuple(names),
        s3_ports=tuple(s3),
        console_ports=tuple(console),
        drives_per_node=drives.pop(),
        parity=parity.pop(),
        healthchecks=tuple(health),
        drive_volumes=tuple(persisted),
        lakefs_port=_host_port("lakefs", services["lakefs"], _port("lakefs", listen.rsplit(":", 1)[-1])),
        accelerator_port=_host_port("accelerator", accel, accel_port),
        accelerator_admin_port=_host_port("accelerator", accel, accel_admin_port),
        accelerator_healthcheck=bool((accel.get("healthcheck") or {}).get("test")),
        accelerator_upstreams=tuple(balanced),
        webhooks=tuple(webhooks),
        lakefs_blockstore=_component(lakefs_env.get("LAKEFS_BLOCKSTORE_S3_ENDPOINT", ""), components),
    )


def native_topology(stack: NativeSpecs) -> Topology:
    """Read from the native stack's own process specs and lakeFS config, without starting anything.

    It waits on each node's and the accelerator's health, keeps every drive and event queue in
    its state directory, and passes every node to the accelerator as an upstream.
    """
    s, nodes = stack.settings, tuple(stack.minio_names())
    placeholder = Credentials("-", "-", "-", webhook_token="token")  # secrets do not shape the topology
    envs = [stack.minio_spec(i, Path("minio"), placeholder).env for i in range(len(nodes))]
    events_url = f"{s.accelerator_admin_endpoint}/minio/events"
    components = {s.accelerator_endpoint: "accelerator", **dict.fromkeys(s.minio_endpoints, "minio")}
    blockstore = str(stack.lakefs_config(placeholder)["blockstore"]["s3"]["endpoint"])
    return Topology(
        minio_nodes=nodes,
        s3_ports=s.minio_ports,
        console_ports=s.minio_console_ports,
        drives_per_node=s.drives_per_node,
        parity=stack.parity,
        lakefs_port=s.lakefs_port,
        healthchecks=(True,) * len(nodes),
        drive_volumes=(True,) * len(nodes),
        accelerator_port=s.accelerator_port,
        accelerator_admin_port=s.accelerator_admin_port,
        accelerator_healthcheck=True,
        accelerator_upstreams=(True,) * len(nodes),
        webhooks=tuple(_sends_events(env, events_url, placeholder.webhook_token) for env in envs),
        lakefs_blockstore=_component(blockstore, components),
    )
