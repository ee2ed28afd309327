"""The native runtime: three MinIO processes forming one erasure-coded cluster, and lakeFS.

Start order is fixed (MinIO nodes, buckets, accelerator, hooks, lakeFS, lakeFS setup, repository,
the UMI validation hook on main) and every step is idempotent, so a second `up`, or an `up`
after a half-finished one, only does what is missing.
Stop order is the reverse, and errors are collected so one stuck process never hides another.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import AuthError, RobolakeError, StateError
from robolake.stack import health
from robolake.stack.bootstrap import LakeFSAdmin, ensure_buckets, ensure_notifications
from robolake.stack.process import ManagedProcess, ProcessSpec, check_ports_free
from robolake.state import Credentials, StateDir
from robolake.versioning.client import LakeFSClient
from robolake.versioning.errors import LakeFSError
from robolake.versioning.hooks import HookInstallError, install_validation_hook, validation_hook_url

Reporter = Callable[[str], None]

LAKEFS_ADMIN_USER = "admin"
WEBHOOK_ID = "ROBOLAKE"
REJOIN_SETTLE_S = 3.0
# Buckets whose changes MinIO reports to the accelerator (lakeFS never rewrites an address).
NOTIFIED_BUCKETS = ("umi-raw", "umi-processed", "umi-experiments")
LAKEFS_STORAGE_BUCKET = "lakefs-storage"


def _quiet(_: str) -> None:
    return None


def _bind_progress(progress: Callable[[str, str], None] | None, name: str) -> Callable[[str], None] | None:
    if progress is None:
        return None
    return functools.partial(progress, name)


@dataclasses.dataclass
class ComponentStatus:
    name: str
    endpoint: str
    healthy: bool
    running: bool
    pid: int | None
    console: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StackStatus:
    components: list[ComponentStatus]
    cluster: dict[str, Any] | None
    repository: dict[str, Any] | None
    state_dir: str

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components) and bool(
            self.repository and self.repository.get("exists")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "state_dir": self.state_dir,
            "components": [c.as_dict() for c in self.components],
            "cluster": self.cluster,
            "repository": self.repository,
        }


class NativeStack:
    """Start, stop and inspect the stack as local processes under one state directory."""

    def __init__(self, settings: Settings, builder: BinaryBuilder | None = None) -> None:
        self.settings = settings
        self.state = StateDir(settings.state_dir)
        self._builder = builder

    @property
    def builder(self) -> BinaryBuilder:
        if self._builder is None:
            self._builder = BinaryBuilder(self.settings.cache_dir)
        return self._builder

    # ---- topology -------------------------------------------------------------------------

    @property
    def parity(self) -> int:
        # One node holds `drives_per_node` of the 3*d drives. With parity d, data = 2d, and
        # MinIO's write quorum is `data` (parity != data), so the 2d drives of the two surviving
        # nodes still meet quorum for reads and writes.
        return self.settings.drives_per_node

    def minio_names(self) -> list[str]:
        return [f"minio-{i}" for i in range(1, len(self.settings.minio_ports) + 1)]

    def drive_urls(self) -> list[str]:
        s = self.settings
        return [
            f"http://{s.host}:{port}{self.state.drive(node, disk)}"
            for node, port in enumerate(s.minio_ports, start=1)
            for disk in range(1, s.drives_per_node + 1)
        ]

    def minio_spec(self, index: int, binary: Path, creds: Credentials) -> ProcessSpec:
        s = self.settings
        name = f"minio-{index + 1}"
        port, console = s.minio_ports[index], s.minio_console_ports[index]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.state.root),
            "MINIO_ROOT_USER": s.minio_root_user,
            "MINIO_ROOT_PASSWORD": s.minio_root_password,
            # Distributed mode refuses drives on the root disk unless this is set; a local
            # cluster on one machine is exactly that case.
            "MINIO_CI_CD": "1",
            "MINIO_STORAGE_CLASS_STANDARD": f"EC:{self.parity}",
            "MINIO_PROMETHEUS_AUTH_TYPE": "public",
            "MINIO_UPDATE": "off",
            # Inside a container (/.dockerenv present) MinIO waits forever for loopback endpoints
            # to "resolve to a valid IP"; this tells it which host:port of the list is itself.
            "_MINIO_SERVER_LOCAL": f"{s.host}:{port}",
            # Bucket notifications to the accelerator, which invalidates what changed behind
            # its back. The queue directory keeps events while the accelerator is down.
            f"MINIO_NOTIFY_WEBHOOK_ENABLE_{WEBHOOK_ID}": "on",
            f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{WEBHOOK_ID}": f"{s.accelerator_admin_endpoint}/minio/events",
            f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{WEBHOOK_ID}": creds.webhook_token,
            # MinIO insists that MINIO_* values are identical on all nodes and that the queue
            # path is absolute, yet three processes on one host must not share one queue: the
            # path resolves through each process's own working directory (its node directory).
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{WEBHOOK_ID}": "/proc/self/cwd/events",
        }
        argv = [
            str(binary), "server", "--anonymous",
            "--address", f"{s.host}:{port}", "--console-address", f"{s.host}:{console}",
            *self.drive_urls(),
        ]
        return ProcessSpec(
            name=name, argv=argv, env=env, host=s.host,
            ports={port: "ROBOLAKE_MINIO_PORTS", console: "ROBOLAKE_MINIO_CONSOLE_PORTS"},
            log_path=self.state.log(name), pid_path=self.state.pid(name), cwd=self.state.node_dir(index + 1),
        )

    def accelerator_spec(self, creds: Credentials) -> ProcessSpec:
        s = self.settings
        cache = self.state.accelerator_cache
        cache.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.state.root),
            "MINIO_ROOT_USER": s.minio_root_user,
            "MINIO_ROOT_PASSWORD": s.minio_root_password,
            "ROBOLAKE_WEBHOOK_TOKEN": creds.webhook_token,
            "ROBOLAKE_ENV_FILE": "/dev/null",
            "ROBOLAKE_ACCELERATOR_MEMORY_MB": str(s.accelerator_memory_mb),
            "ROBOLAKE_ACCELERATOR_DISK_MB": str(s.accelerator_disk_mb),
            "ROBOLAKE_ACCELERATOR_MAX_OBJECT_KB": str(s.accelerator_max_object_kb),
        }
        argv = [
            sys.executable, "-m", "robolake.cli.accelerator", "serve", "--host", s.host,
            "--port", str(s.accelerator_port), "--admin-port", str(s.accelerator_admin_port),
            "--cache-dir", str(cache), *(f"--upstream={e}" for e in s.minio_endpoints),
        ]
        return ProcessSpec(
            name="accelerator", argv=argv, env=env, host=s.host,
            ports={s.accelerator_port: "ROBOLAKE_ACCELERATOR_PORT",
                   s.accelerator_admin_port: "ROBOLAKE_ACCELERATOR_ADMIN_PORT"},
            log_path=self.state.log("accelerator"), pid_path=self.state.pid("accelerator"), cwd=self.state.root,
        )

    def hooks_spec(self, creds: Credentials) -> ProcessSpec:
        """The UMI validation hook server lakeFS calls on pre-commit and pre-merge."""
        s = self.settings
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.state.root),
            "ROBOLAKE_ENV_FILE": "/dev/null",
            "ROBOLAKE_STATE_DIR": str(self.state.root),
            "ROBOLAKE_HOOKS_TOKEN": creds.hooks_token,
            "ROBOLAKE_LAKEFS_ACCESS_KEY_ID": creds.lakefs_access_key_id,
            "ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY": creds.lakefs_secret_access_key,
        }
        argv = [
            sys.executable, "-m", "robolake.cli.hooks", "serve", "--host", s.host, "--port", str(s.hooks_port),
            "--lakefs-endpoint", s.lakefs_endpoint, "--work-dir", str(self.state.root / "hooks"),
        ]
        return ProcessSpec(
            name="hooks", argv=argv, env=env, host=s.host, ports={s.hooks_port: "ROBOLAKE_HOOKS_PORT"},
            log_path=self.state.log("hooks"), pid_path=self.state.pid("hooks"), cwd=self.state.root,
        )

    def lakefs_config(self, creds: Credentials) -> dict[str, Any]:
        s = self.settings
        return {
            "listen_address": f"{s.host}:{s.lakefs_port}",
            "logging": {"level": "INFO", "format": "text"},
            "database": {"type": "local", "local": {"path": str(self.state.lakefs_kv)}},
            "auth": {"encrypt": {"secret_key": creds.lakefs_encrypt_secret}},
            "committed": {"local_cache": {"dir": str(self.state.lakefs_cache)}},
            "blockstore": {
                "type": "s3",
                "s3": {
                    # Through the accelerator: it fails over between MinIO nodes, so lakeFS keeps
                    # working when any one node is down (lakeFS takes a single endpoint).
                    "endpoint": s.accelerator_endpoint,
                    "force_path_style": True,
                    "discover_bucket_region": False,
                    "region": "us-east-1",
                    "credentials": {
                        "access_key_id": s.minio_root_user,
                        "secret_access_key": s.minio_root_password,
                    },
                },
            },
            "stats": {"enabled": False},
            "security": {"check_latest_version": False},
            "email_subscription": {"enabled": False},
        }

    def lakefs_spec(self, binary: Path, creds: Credentials) -> ProcessSpec:
        config_path = self.state.root / "lakefs" / "config.yaml"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.lakefs_config(creds), fh, sort_keys=False)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.state.root),
            # Belt and braces: the call-home switches also as environment variables.
            "LAKEFS_STATS_ENABLED": "false",
            "LAKEFS_SECURITY_CHECK_LATEST_VERSION": "false",
            "LAKEFS_EMAIL_SUBSCRIPTION_ENABLED": "false",
        }
        return ProcessSpec(
            name="lakefs", argv=[str(binary), "run", "--config", str(config_path)], env=env,
            host=self.settings.host, ports={self.settings.lakefs_port: "ROBOLAKE_LAKEFS_PORT"},
            log_path=self.state.log("lakefs"), pid_path=self.state.pid("lakefs"), cwd=self.state.root,
        )

    def _process(self, name: str) -> ManagedProcess:
        """A handle for a component, enough to find or stop it (no binary build needed)."""
        spec = ProcessSpec(
            name=name, argv=["?"], env={}, ports={}, host=self.settings.host,
            log_path=self.state.log(name), pid_path=self.state.pid(name),
        )
        return ManagedProcess(spec)

    # ---- lifecycle ------------------------------------------------------------------------

    def up(self, report: Reporter = _quiet, progress: Callable[[str, str], None] | None = None) -> list[str]:
        """Bring every component up; return the names of the components started now."""
        s = self.settings
        self.state.create()
        creds = self.state.credentials()
        binaries = {}
        for name in ("minio", "lakefs"):
            for each in self.builder.plan(name):
                report(f"building {each} {self.builder.version_of(each)} (first run only; takes minutes)")
            binaries[name] = self.builder.ensure(name, _bind_progress(progress, name))

        for node in range(1, 4):
            self.state.node_dir(node).mkdir(parents=True, exist_ok=True)
        minio_procs = [ManagedProcess(self.minio_spec(i, binaries["minio"], creds)) for i in range(3)]
        accel_proc = ManagedProcess(self.accelerator_spec(creds))
        hooks_proc = ManagedProcess(self.hooks_spec(creds))
        lakefs_proc = ManagedProcess(self.lakefs_spec(binaries["lakefs"], creds))
        missing = [p for p in [*minio_procs, accel_proc, hooks_proc, lakefs_proc] if not p.is_running()]
        # Check every port before starting anything, so a clash leaves nothing half-started.
        check_ports_free([p.spec for p in missing])

        started: list[str] = []
        deadline = s.start_timeout_s
        for proc in minio_procs:
            if proc in missing:
                report(f"starting {proc.name} on {s.host}:{next(iter(proc.spec.ports))}")
                proc.start()
                started.append(proc.name)
        for proc, endpoint in zip(minio_procs, s.minio_endpoints, strict=True):
            proc.wait_healthy(functools.partial(health.minio_cluster_ok, endpoint), deadline)
        rejoining = [p for p in minio_procs if p.name in started] if len(started) < len(minio_procs) else []
        for proc, endpoint in zip(minio_procs, s.minio_endpoints, strict=True):
            if proc in rejoining:
                # Write quorum is not enough for a node that rejoins: until it sees every drive,
                # a read through it of an object written while it was away can miss read quorum.
                proc.wait_healthy(functools.partial(self._sees_all_drives, endpoint), deadline)
        if rejoining:
            # Even then its connections to the peers' drives come up over about a second, during
            # which such a read can answer NoSuchKey; let them settle before reporting it healthy.
            time.sleep(REJOIN_SETTLE_S)
        report("MinIO cluster has write quorum; ensuring buckets")
        ensure_buckets(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)

        if accel_proc in missing:
            report(f"starting accelerator on {s.accelerator_endpoint} (metrics {s.accelerator_admin_endpoint})")
            accel_proc.start()
            started.append("accelerator")
        accel_proc.wait_healthy(functools.partial(health.accelerator_healthy, s.accelerator_admin_endpoint), deadline)
        ensure_notifications(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password,
                             f"arn:minio:sqs::{WEBHOOK_ID}:webhook", NOTIFIED_BUCKETS)

        if hooks_proc in missing:
            report(f"starting hooks on {s.hooks_endpoint} (UMI validation for lakeFS)")
            hooks_proc.start()
            started.append("hooks")
        hooks_proc.wait_healthy(lambda: health.http_ok(f"{s.hooks_endpoint}/health"), deadline)

        if lakefs_proc in missing:
            report(f"starting lakefs on {s.lakefs_endpoint}")
            lakefs_proc.start()
            started.append("lakefs")
        lakefs_proc.wait_healthy(lambda: health.lakefs_healthy(s.lakefs_endpoint), deadline)
        self._setup_lakefs(creds, report)
        return started

    def _sees_all_drives(self, endpoint: str) -> bool:
        s = self.settings
        try:
            info = health.minio_cluster_info(endpoint, s.minio_root_user, s.minio_root_password)
        except RobolakeError:
            return False
        return info.drives_offline == 0 and info.drives_online == len(s.minio_ports) * s.drives_per_node

    def _setup_lakefs(self, creds: Credentials, report: Reporter) -> None:
        s = self.settings
        admin = LakeFSAdmin(s.lakefs_endpoint, creds.lakefs_access_key_id, creds.lakefs_secret_access_key)
        if not admin.is_set_up():
            report("setting up lakeFS (admin user)")
            admin.set_up(LAKEFS_ADMIN_USER)
        try:
            created = admin.ensure_repository(
                s.lakefs_repo, f"s3://{LAKEFS_STORAGE_BUCKET}/{s.lakefs_repo}"
            )
        except AuthError as exc:
            raise StateError(
                f"lakeFS at {s.lakefs_endpoint} is set up but does not accept the keys in "
                f"{self.state.credentials_path}: {exc}. Restore that file, or start over with "
                "`robolake stack down --volumes` (deletes the stack's data)"
            ) from exc
        if created:
            report(f"created lakeFS repository {s.lakefs_repo!r} (branch main)")
        self._install_hook(creds, report)

    def _install_hook(self, creds: Credentials, report: Reporter, attempts: int = 4) -> None:
        """Guard the repository's main with the UMI validation hook (idempotent)."""
        s = self.settings
        url = validation_hook_url(s.hooks_endpoint, creds.hooks_token)
        with LakeFSClient(s.lakefs_endpoint, creds.lakefs_access_key_id, creds.lakefs_secret_access_key) as client:
            for attempt in range(1, attempts + 1):
                try:
                    if install_validation_hook(client, s.lakefs_repo, "main", url) is not None:
                        report(f"installed the UMI validation hook on {s.lakefs_repo}/main")
                    return
                except HookInstallError as exc:
                    # Someone's staged work on main must not be committed by `up`; the stack still runs.
                    report(f"warning: {exc}")
                    return
                except LakeFSError as exc:
                    # Right after a fresh start a MinIO node can answer NoSuchKey for an object just
                    # written (its connections to the peers' drives are still coming up); lakeFS
                    # reports that as 410 when it loads the action file. It passes within seconds.
                    if exc.status != 410 or attempt == attempts:
                        raise
                    report(f"lakeFS could not read back the hook's action file yet (attempt {attempt}); retrying")
                    time.sleep(attempt)

    def down(self, *, volumes: bool = False, report: Reporter = _quiet) -> list[str]:
        """Stop every component (lakeFS first); with `volumes`, delete the state directory."""
        stopped: list[str] = []
        errors: list[str] = []
        for name in ["lakefs", "hooks", "accelerator", *reversed(self.minio_names())]:
            try:
                if self._process(name).stop():
                    stopped.append(name)
                    report(f"stopped {name}")
            except RobolakeError as exc:
                errors.append(str(exc))
        for pid in self._orphans():
            report(f"stopping leftover process {pid} that uses {self.state.root}")
            try:
                os.kill(pid, 9)
                stopped.append(f"pid {pid}")
            except ProcessLookupError:
                pass
        if errors:
            raise StateError("; ".join(errors))
        if volumes:
            self.state.wipe()
            report(f"deleted {self.state.root}")
        return stopped

    def _orphans(self) -> list[int]:
        """Processes whose command line names this state directory but have no pid file."""
        marker = str(self.state.root)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker + "/" in cmd and any(
                name in cmd for name in ("minio", "lakefs", "robolake.cli.accelerator", "robolake.cli.hooks")
            ):
                found.append(int(entry.name))
        return found

    # ---- inspection -----------------------------------------------------------------------

    def status(self) -> StackStatus:
        s = self.settings
        components = []
        for name, endpoint, console in zip(
            self.minio_names(), s.minio_endpoints, s.minio_console_ports, strict=True
        ):
            pid = self._process(name).pid()
            components.append(ComponentStatus(
                name=name, endpoint=endpoint, healthy=health.minio_cluster_ok(endpoint),
                running=pid is not None, pid=pid, console=f"http://{s.host}:{console}",
            ))
        pid = self._process("accelerator").pid()
        components.append(ComponentStatus(
            name="accelerator", endpoint=s.accelerator_endpoint,
            healthy=health.accelerator_healthy(s.accelerator_admin_endpoint), running=pid is not None, pid=pid,
            console=f"{s.accelerator_admin_endpoint}/metrics",
        ))
        pid = self._process("hooks").pid()
        components.append(ComponentStatus(
            name="hooks", endpoint=s.hooks_endpoint, healthy=health.http_ok(f"{s.hooks_endpoint}/health"),
            running=pid is not None, pid=pid,
        ))
        pid = self._process("lakefs").pid()
        lakefs_ok = health.lakefs_healthy(s.lakefs_endpoint)
        components.append(ComponentStatus(
            name="lakefs", endpoint=s.lakefs_endpoint, healthy=lakefs_ok, running=pid is not None,
            pid=pid, console=s.lakefs_endpoint,
        ))
        return StackStatus(
            components=components, cluster=self._cluster(), repository=self._repository(lakefs_ok),
            state_dir=str(self.state.root),
        )

    def _cluster(self) -> dict[str, Any] | None:
        s = self.settings
        infos: list[health.ClusterInfo] = []
        for endpoint in s.minio_endpoints:
            if health.minio_live(endpoint):
                try:
                    infos.append(health.minio_cluster_info(endpoint, s.minio_root_user, s.minio_root_password))
                except RobolakeError as exc:
                    return {"error": str(exc)}
        if not infos:
            return None
        ids = sorted({i.deployment_id for i in infos})
        first = infos[0]
        return {
            "deployment_ids": ids,
            "one_cluster": len(ids) == 1,
            "nodes_answering": len(infos),
            "servers_online": first.servers_online,
            "servers_total": first.servers_total,
            "drives_online": first.drives_online,
            "drives_offline": first.drives_offline,
            "parity": first.standard_parity,
        }

    def _repository(self, lakefs_ok: bool) -> dict[str, Any] | None:
        if not lakefs_ok:
            return None
        creds = self.state.load_credentials()
        if creds is None:
            return {"name": self.settings.lakefs_repo, "exists": False, "error": "no credentials"}
        admin = LakeFSAdmin(
            self.settings.lakefs_endpoint, creds.lakefs_access_key_id, creds.lakefs_secret_access_key
        )
        try:
            return {"name": self.settings.lakefs_repo, "exists": admin.repository_exists(self.settings.lakefs_repo)}
        except RobolakeError as exc:
            return {"name": self.settings.lakefs_repo, "exists": False, "error": str(exc)}

    def env_exports(self) -> str:
        """Shell `export` lines that point aws-cli, mc, boto3 and lakectl at this stack.

        PATH gains the builder's directory of version-free links, which holds `lakectl`.
        """
        s = self.settings
        creds = self.state.load_credentials()
        if creds is None:
            raise StateError(
                f"no stack credentials in {str(self.state.root)!r}; bring the stack up first "
                "(`robolake stack up` or ./deploy-local.sh)"
            )
        endpoint = s.accelerator_endpoint
        host = endpoint.split("://", 1)[1]
        values = {
            "AWS_ACCESS_KEY_ID": s.minio_root_user,
            "AWS_SECRET_ACCESS_KEY": s.minio_root_password,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "MC_HOST_robolake": f"http://{s.minio_root_user}:{s.minio_root_password}@{host}",
            "LAKECTL_SERVER_ENDPOINT_URL": s.lakefs_endpoint,
            "LAKECTL_CREDENTIALS_ACCESS_KEY_ID": creds.lakefs_access_key_id,
            "LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY": creds.lakefs_secret_access_key,
        }
        lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
        # Single-quoted directory, then the caller's own PATH, expanded by the shell that evals this.
        lines.append(f'export PATH={shlex.quote(str(self.builder.path_dir))}"${{PATH:+:$PATH}}"')
        return "\n".join(lines)
