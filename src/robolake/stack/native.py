"""The native runtime: three MinIO processes forming one erasure-coded cluster, the accelerator,
the hooks server and lakeFS, supervised as local processes.

The stack is ONE ordered table of stages (`NativeStack.stages`), each a group of components
started together and then set up:

    minio-1..3    then the rejoin wait and the buckets
    accelerator   then the bucket notifications
    hooks
    lakefs        then lakeFS's admin, the repository and the UMI validation hook on main

`up` walks it forward: every port is checked before anything starts, and every step is
idempotent, so a second `up`, or an `up` after a half-finished one, only does what is missing.
`down` walks it backward, collecting every error on the way so one stuck process never hides
another (aiohttp's runner cleanup does the same). `status` and the log names read it too.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from robolake.binaries import BinaryBuilder
from robolake.config import Settings
from robolake.errors import AuthError, RobolakeError, StateError
from robolake.stack import health
from robolake.stack.bootstrap import LakeFSAdmin, ensure_buckets, ensure_notifications, install_main_hook
from robolake.stack.process import ManagedProcess, ProcessSpec, check_ports_free
from robolake.stack.specs import (
    LAKEFS_ADMIN_USER,
    LAKEFS_STORAGE_BUCKET,
    NOTIFIED_BUCKETS,
    WEBHOOK_ID,
    NativeSpecs,
)
from robolake.state import Credentials
from robolake.versioning.client import LakeFSClient

__all__ = [
    "LAKEFS_ADMIN_USER",
    "LAKEFS_STORAGE_BUCKET",
    "NOTIFIED_BUCKETS",
    "WEBHOOK_ID",
    "Component",
    "ComponentStatus",
    "NativeStack",
    "StackStatus",
    "Stage",
]

Reporter = Callable[[str], None]
Binaries = Mapping[str, Path]  # "minio" / "lakefs" -> the built binary
REJOIN_SETTLE_S = 3.0
BUILT = ("minio", "lakefs", "prometheus")  # what `up` builds (lakectl comes with lakefs; prometheus if enabled)


def _quiet(_: str) -> None:
    return None


def _bind_progress(progress: Callable[[str, str], None] | None, name: str) -> Callable[[str], None] | None:
    if progress is None:
        return None
    return functools.partial(progress, name)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Component:
    """One managed server: how to run it, how to tell it is healthy, what to announce."""

    name: str
    endpoint: str
    console: str | None
    spec: Callable[[Binaries, Credentials], ProcessSpec]
    healthy: Callable[[], bool]
    announce: str  # what `up` reports when it starts the component
    marker: str  # a word of its command line, to find it when its pid file is gone


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage:
    """Components started together, then `ready(creds, report, started_now)` once all are healthy."""

    components: tuple[Component, ...]
    ready: Callable[[Credentials, Reporter, list[ManagedProcess]], None] | None = None


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
        return all(c.healthy for c in self.components) and bool(self.repository and self.repository.get("exists"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "state_dir": self.state_dir,
            "components": [c.as_dict() for c in self.components],
            "cluster": self.cluster,
            "repository": self.repository,
        }


class NativeStack(NativeSpecs):
    """Start, stop and inspect the stack as local processes under one state directory."""

    def __init__(self, settings: Settings, builder: BinaryBuilder | None = None) -> None:
        super().__init__(settings)
        self._builder = builder

    @property
    def builder(self) -> BinaryBuilder:
        if self._builder is None:
            self._builder = BinaryBuilder(self.settings.cache_dir)
        return self._builder

    # ---- the table ------------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        """The stack in start order; `down` stops it in the reverse order."""
        s = self.settings
        minio = tuple(
            Component(
                name=name,
                endpoint=endpoint,
                console=f"http://{s.host}:{console}",
                spec=functools.partial(self._minio_node_spec, i),
                healthy=functools.partial(health.minio_cluster_ok, endpoint),
                announce=f"starting {name} on {s.host}:{port}",
                marker="minio",
            )
            for i, (name, endpoint, port, console) in enumerate(
                zip(self.minio_names(), s.minio_endpoints, s.minio_ports, s.minio_console_ports, strict=True)
            )
        )
        accelerator = Component(
            name="accelerator",
            endpoint=s.accelerator_endpoint,
            console=f"{s.accelerator_admin_endpoint}/metrics",
            spec=lambda _b, creds: self.accelerator_spec(creds),
            healthy=functools.partial(health.accelerator_healthy, s.accelerator_admin_endpoint),
            announce=f"starting accelerator on {s.accelerator_endpoint} (metrics {s.accelerator_admin_endpoint})",
            marker="robolake.cli.accelerator",
        )
        hooks = Component(
            name="hooks",
            endpoint=s.hooks_endpoint,
            console=None,
            spec=lambda _b, creds: self.hooks_spec(creds),
            healthy=functools.partial(health.http_ok, f"{s.hooks_endpoint}/health"),
            announce=f"starting hooks on {s.hooks_endpoint} (UMI validation for lakeFS)",
            marker="robolake.cli.hooks",
        )
        lakefs = Component(
            name="lakefs",
            endpoint=s.lakefs_endpoint,
            console=s.lakefs_endpoint,
            spec=lambda b, creds: self.lakefs_spec(b["lakefs"], creds),
            healthy=functools.partial(health.lakefs_healthy, s.lakefs_endpoint),
            announce=f"starting lakefs on {s.lakefs_endpoint}",
            marker="lakefs",
        )
        prometheus = Component(
            name="prometheus",
            endpoint=s.prometheus_endpoint,
            console=f"{s.prometheus_endpoint}/api/v1/targets",
            spec=lambda b, creds: self.prometheus_spec(b["prometheus"], creds),
            healthy=functools.partial(health.prometheus_ready, s),
            announce=f"starting prometheus on {s.prometheus_endpoint} (scraping every component)",
            marker="prometheus",
        )
        return [
            Stage(components=minio, ready=self._minio_ready),
            Stage(components=(accelerator,), ready=self._accelerator_ready),
            Stage(components=(hooks,)),
            Stage(components=(lakefs,), ready=self._lakefs_ready),
            *self._optional_stages(prometheus),
        ]

    def _optional_stages(self, prometheus: Component) -> list[Stage]:
        """Prometheus, then the console, each unless switched off (ROBOLAKE_PROMETHEUS, ROBOLAKE_CONSOLE)."""
        s = self.settings
        wanted = ((prometheus, s.prometheus), (self._console_component(), s.console))
        return [Stage(components=(component,)) for component, on in wanted if on]

    def _console_component(self) -> Component:
        s = self.settings
        return Component(
            name="console",
            endpoint=s.console_endpoint,
            console=s.console_endpoint,
            spec=lambda _b, creds: self.console_spec(creds),
            healthy=functools.partial(health.http_ok, f"{s.console_endpoint}/health"),
            announce=f"starting console on {s.console_endpoint} (stack, versions, metrics, episode browser)",
            marker="robolake.cli.console",
        )

    def _minio_node_spec(self, index: int, binaries: Binaries, creds: Credentials) -> ProcessSpec:
        return self.minio_spec(index, binaries["minio"], creds)

    def components(self) -> list[Component]:
        """Every component, in start order."""
        return [c for stage in self.stages() for c in stage.components]

    def component_names(self) -> list[str]:
        return [c.name for c in self.components()]

    def _process(self, name: str) -> ManagedProcess:
        """A handle for a component, enough to find or stop it (no binary build needed)."""
        spec = ProcessSpec(
            name=name,
            argv=["?"],
            env={},
            ports={},
            host=self.settings.host,
            log_path=self.state.log(name),
            pid_path=self.state.pid(name),
        )
        return ManagedProcess(spec)

    # ---- lifecycle ------------------------------------------------------------------------

    def up(self, report: Reporter = _quiet, progress: Callable[[str, str], None] | None = None) -> list[str]:
        """Bring every component up, stage by stage; return the names of the components started now."""
        self.state.create()
        creds = self.state.credentials()
        binaries = self._binaries(report, progress)
        stages = self.stages()
        procs = {c.name: ManagedProcess(c.spec(binaries, creds)) for stage in stages for c in stage.components}
        missing = {name for name, proc in procs.items() if not proc.is_running()}
        # Check every port before starting anything, so a clash leaves nothing half-started.
        check_ports_free([procs[name].spec for name in procs if name in missing])
        started: list[str] = []
        for stage in stages:
            now = [c for c in stage.components if c.name in missing]
            for component in now:
                report(component.announce)
                procs[component.name].start()
                started.append(component.name)
            for component in stage.components:
                procs[component.name].wait_healthy(component.healthy, self.settings.start_timeout_s)
            if stage.ready is not None:
                stage.ready(creds, report, [procs[c.name] for c in now])
        return started

    def _binaries(self, report: Reporter, progress: Callable[[str, str], None] | None) -> dict[str, Path]:
        binaries = {}
        for name in BUILT:
            if name == "prometheus" and not self.settings.prometheus:
                continue
            for each in self.builder.plan(name):
                report(f"building {each} {self.builder.version_of(each)} (first run only; takes minutes)")
            binaries[name] = self.builder.ensure(name, _bind_progress(progress, name))
        return binaries

    def down(self, *, volumes: bool = False, report: Reporter = _quiet) -> list[str]:
        """Stop every component in reverse start order; with `volumes`, delete the state directory."""
        stopped: list[str] = []
        errors: list[str] = []
        for component in reversed(self.components()):
            try:
                if self._process(component.name).stop():
                    stopped.append(component.name)
                    report(f"stopped {component.name}")
            except (RobolakeError, OSError) as exc:
                errors.append(f"{component.name}: {exc}")
        for pid in self._orphans():
            report(f"stopping leftover process {pid} that uses {self.state.root}")
            try:
                os.kill(pid, 9)
                stopped.append(f"pid {pid}")
            except ProcessLookupError:
                pass
            except OSError as exc:
                errors.append(f"pid {pid}: {exc}")
        if errors:
            raise StateError(f"stopping the stack left {len(errors)} problem(s): " + "; ".join(errors))
        if volumes:
            self.state.wipe()
            report(f"deleted {self.state.root}")
        return stopped

    def _orphans(self) -> list[int]:
        """Processes whose command line names this state directory but have no pid file."""
        marker = str(self.state.root)
        names = [c.marker for c in self.components()]
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker + "/" in cmd and any(name in cmd for name in names):
                found.append(int(entry.name))
        return found

    # ---- what each stage does once its components are healthy -----------------------------

    def _minio_ready(self, _creds: Credentials, report: Reporter, started_now: list[ManagedProcess]) -> None:
        s = self.settings
        endpoints = dict(zip(self.minio_names(), s.minio_endpoints, strict=True))
        rejoining = started_now if len(started_now) < len(endpoints) else []
        for proc in rejoining:
            # Write quorum is not enough for a node that rejoins: until it sees every drive,
            # a read through it of an object written while it was away can miss read quorum.
            proc.wait_healthy(functools.partial(self._sees_all_drives, endpoints[proc.name]), s.start_timeout_s)
        if rejoining:
            # Even then its connections to the peers' drives come up over about a second, during
            # which such a read can answer NoSuchKey; let them settle before reporting it healthy.
            time.sleep(REJOIN_SETTLE_S)
        report("MinIO cluster has write quorum; ensuring buckets")
        ensure_buckets(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)

    def _sees_all_drives(self, endpoint: str) -> bool:
        s = self.settings
        try:
            info = health.minio_cluster_info(endpoint, s.minio_root_user, s.minio_root_password)
        except RobolakeError:
            return False
        return info.drives_offline == 0 and info.drives_online == len(s.minio_ports) * s.drives_per_node

    def _accelerator_ready(self, _creds: Credentials, _report: Reporter, _started: list[ManagedProcess]) -> None:
        s = self.settings
        arn = f"arn:minio:sqs::{WEBHOOK_ID}:webhook"
        ensure_notifications(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password, arn, NOTIFIED_BUCKETS)

    def _lakefs_ready(self, creds: Credentials, report: Reporter, _started: list[ManagedProcess]) -> None:
        s = self.settings
        admin = LakeFSAdmin(s.lakefs_endpoint, creds.lakefs_access_key_id, creds.lakefs_secret_access_key)
        if not admin.is_set_up():
            report("setting up lakeFS (admin user)")
            admin.set_up(LAKEFS_ADMIN_USER)
        try:
            created = admin.ensure_repository(s.lakefs_repo, f"s3://{LAKEFS_STORAGE_BUCKET}/{s.lakefs_repo}")
        except AuthError as exc:
            raise StateError(
                f"lakeFS at {s.lakefs_endpoint} is set up but does not accept the keys in "
                f"{self.state.credentials_path}: {exc}. Restore that file, or start over with "
                "`robolake stack down --volumes` (deletes the stack's data)"
            ) from exc
        if created:
            report(f"created lakeFS repository {s.lakefs_repo!r} (branch main)")
        self._install_hook(creds, report)

    def _install_hook(self, creds: Credentials, report: Reporter) -> None:
        s = self.settings
        with LakeFSClient(s.lakefs_endpoint, creds.lakefs_access_key_id, creds.lakefs_secret_access_key) as client:
            install_main_hook(client, s.lakefs_repo, s.hooks_endpoint, report)

    # ---- inspection -----------------------------------------------------------------------

    def status(self) -> StackStatus:
        components = []
        for c in self.components():
            pid = self._process(c.name).pid()
            components.append(ComponentStatus(c.name, c.endpoint, c.healthy(), pid is not None, pid, c.console))
        lakefs_ok = next(c.healthy for c in components if c.name == "lakefs")
        return StackStatus(
            components=components,
            cluster=self._cluster(),
            repository=self._repository(lakefs_ok),
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
        repo = self.settings.lakefs_repo
        creds = self.state.load_credentials()
        if creds is None:
            return {"name": repo, "exists": False, "error": "no credentials"}
        admin = LakeFSAdmin(self.settings.lakefs_endpoint, creds.lakefs_access_key_id, creds.lakefs_secret_access_key)
        try:
            return {"name": repo, "exists": admin.repository_exists(repo)}
        except RobolakeError as exc:
            return {"name": repo, "exists": False, "error": str(exc)}

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
            # curl -u robolake:$ROBOLAKE_ADMIN_TOKEN http://127.0.0.1:9010/stats (also Prometheus)
            "ROBOLAKE_ADMIN_TOKEN": creds.admin_token,
        }
        lines = [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
        # Single-quoted directory, then the caller's own PATH, expanded by the shell that evals this.
        lines.append(f'export PATH={shlex.quote(str(self.builder.path_dir))}"${{PATH:+:$PATH}}"')
        return "\n".join(lines)
