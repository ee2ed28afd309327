"""`robolake stack ...` and `robolake buckets ...`."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from robolake.binaries import BinaryBuilder
from robolake.cli.common import err_console, load_settings, out_console
from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.stack.bootstrap import BUCKET_LAYOUT, LakeFSAdmin, ensure_buckets
from robolake.stack.native import NativeStack, StackStatus


@click.group()
def stack() -> None:
    """Run the local stack: 3 MinIO nodes (one erasure-coded cluster) and lakeFS.

    All state (drives, lakeFS metadata, logs, credentials) lives in one directory,
    ROBOLAKE_STATE_DIR (default ~/.local/state/robolake). Binaries are built once from the
    pinned Go modules and cached in ROBOLAKE_CACHE_DIR (default ~/.cache/robolake).
    """


_CLUSTER = click.option(
    "--cluster",
    "cluster_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A cluster across hosts (robolake.stack.hosts): act on this host's share of it; needs --host-id.",
)
_HOST_ID = click.option("--host-id", type=int, default=None, help="Which host of --cluster this is (1, 2, ...).")


def _cluster_host(cluster_file: Path | None, host_id: int | None) -> tuple[Any, int] | None:
    """(cluster, host id) when --cluster is given; None for the local stack."""
    if cluster_file is None:
        if host_id is not None:
            raise ConfigError("--host-id names a host of a --cluster file; give that file too")
        return None
    from robolake.stack.hosts import load_cluster

    if host_id is None:
        raise ConfigError(f"--cluster {cluster_file} needs --host-id N: which of its hosts this machine is")
    cluster = load_cluster(cluster_file)
    cluster.host(host_id)  # a host id the file does not name is refused before anything starts
    return cluster, host_id


@stack.command()
@_CLUSTER
@_HOST_ID
def up(cluster_file: Path | None, host_id: int | None) -> None:
    """Start whatever is not running yet; safe to run again (it loses nothing).

    The first run builds MinIO and lakeFS from source (several minutes, needs Go). With
    --cluster FILE --host-id N: this host's MinIO node (and the accelerator, and lakeFS on
    PostgreSQL with the validation hook, where the file says so), over TLS, with the secrets from
    the environment (see `robolake certs --help`). Start the lakeFS host last: its `up` waits for
    the cluster to form, then creates the buckets, lakeFS's repository and the hook.
    """
    if (chosen := _cluster_host(cluster_file, host_id)) is not None:
        import os

        from robolake.stack.hosts import host_up, required_secrets

        host = chosen[0].host(chosen[1])
        secrets = required_secrets(os.environ, host)
        builder = BinaryBuilder(load_settings().cache_dir)
        binaries = {name: builder.ensure(name) for name in (("minio", "lakefs") if host.lakefs else ("minio",))}
        started = host_up(*chosen, binaries, secrets)
        err_console.print(f"host {chosen[1]} ({host.name}, {host.address}): started {', '.join(started) or 'nothing'}")
        return
    native = NativeStack(load_settings())
    started_at = time.monotonic()
    with _progress() as bar:
        task = bar.add_task("starting", total=None)
        on_build_line = _build_reporter(bar, task)

        def report(message: str) -> None:
            bar.console.print(f"  {message}")
            bar.update(task, description=message)

        started = native.up(report=report, progress=on_build_line)
    elapsed = time.monotonic() - started_at
    summary = f"started {', '.join(started)}" if started else "everything was already running"
    err_console.print(f"stack up in {elapsed:.1f} s: {summary}")
    _print_status(native.status())


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _build_reporter(bar: Progress, task: TaskID) -> Callable[[str, str], None]:
    """Turn `go build -v` output into a one-line progress display (packages compiled so far)."""
    counts: dict[str, int] = {}

    def on_line(name: str, line: str) -> None:
        if line.startswith("go: downloading"):
            bar.update(task, description=f"building {name}: {line[4:80]}")
            return
        counts[name] = counts.get(name, 0) + 1
        bar.update(task, description=f"building {name}: {counts[name]} packages compiled ({line[:60]})")

    return on_line


@stack.command()
@click.option("--all", "build_all", is_flag=True, help="Also build warp (the benchmarks' load generator).")
def build(build_all: bool) -> None:
    """Build (or find cached) the pinned MinIO, lakeFS, lakectl and warp binaries.

    Versions are pinned in tools/versions.env; binaries are cached in
    ROBOLAKE_CACHE_DIR/bin as <name>-<version>, so only the first build takes minutes.
    lakectl is also linked as bin/current/lakectl, which `robolake stack env` puts on PATH.
    """
    builder = BinaryBuilder(load_settings().cache_dir)
    for name in builder.NAMES:
        if name == "warp" and not build_all:
            continue
        cached = builder.is_cached(name)
        started = time.monotonic()
        with _progress() as bar:
            task = bar.add_task(f"building {name} {builder.version_of(name)}", total=None)
            # One binary per line, so each line's time is its own build (no companions).
            path = builder.ensure(name, functools.partial(_build_reporter(bar, task), name), companions=False)
        how = "cached" if cached else f"built in {time.monotonic() - started:.0f} s"
        err_console.print(f"{name:<7} {builder.version_of(name):<40} {how}: {path}")


@stack.command()
@click.option(
    "--base",
    type=click.Choice(["auto", "public", "local"]),
    default="auto",
    show_default=True,
    help="public: the Dockerfiles' registry bases; local: a Debian base made here by debootstrap "
    "(no registry; needs root); auto: local when the registry does not answer.",
)
@click.option("--mirror", default=None, help="Debian archive for the local base [default: the one in apt's sources].")
@click.option(
    "--from-source", is_flag=True, help="Compile the Go servers inside the builds instead of copying this machine's."
)
def images(base: str, mirror: str | None, from_source: bool) -> None:
    """Build the Compose runtime's images: robolake/{minio,lakefs,prometheus,robolake}:local.

    docker-compose.local.yml and docker-compose.cloud.yml name these tags, so `up` uses them
    instead of building. The Go servers are the binaries `robolake stack build` caches (built
    first if missing), so a cached rebuild takes seconds. Example, on a machine no registry
    answers:  robolake stack images && docker-compose -f docker-compose.local.yml up -d
    """
    from robolake.stack.images import build_images

    started = time.monotonic()
    with _progress() as bar:
        task = bar.add_task("images", total=None)

        def report(message: str) -> None:
            bar.console.print(f"  {message}")
            bar.update(task, description=message)

        def progress(line: str) -> None:
            bar.update(task, description=line[:100])

        settings = load_settings()
        built = build_images(settings, base, mirror=mirror, from_source=from_source, report=report, progress=progress)
    for image in built:
        err_console.print(f"{image.tag:<28} {image.seconds:6.1f} s  ({image.base} base)")
    err_console.print(f"images ready in {time.monotonic() - started:.0f} s")


@stack.command()
@click.option("--volumes", is_flag=True, help="Also delete the state directory (all data, credentials).")
@_CLUSTER
@_HOST_ID
def down(volumes: bool, cluster_file: Path | None, host_id: int | None) -> None:
    """Stop every process the stack started; data is kept unless --volumes."""
    if (chosen := _cluster_host(cluster_file, host_id)) is not None:
        if volumes:
            raise ConfigError("--volumes deletes a local stack; a host's drives of a --cluster are deleted by hand")
        from robolake.stack.hosts import host_down

        err_console.print(f"stopped {', '.join(host_down(*chosen)) or 'nothing'}")
        return
    native = NativeStack(load_settings())
    stopped = native.down(volumes=volumes, report=lambda m: err_console.print(f"  {m}"))
    err_console.print(f"stopped {len(stopped)} process(es)" + (", state deleted" if volumes else ""))


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_CLUSTER
@_HOST_ID
def status(as_json: bool, cluster_file: Path | None, host_id: int | None) -> None:
    """Show each component's endpoint and health, the cluster and the repository.

    Exits 0 when everything is healthy, 1 otherwise.
    """
    if (chosen := _cluster_host(cluster_file, host_id)) is not None:
        from robolake.stack.hosts import host_status

        health_of = host_status(*chosen)
        if as_json:
            click.echo(json.dumps(health_of))
        for name, ok in health_of.items():
            err_console.print(f"{name:<12} {'healthy' if ok else 'NOT HEALTHY'}")
        raise SystemExit(0 if all(health_of.values()) else 1)
    result = NativeStack(load_settings()).status()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_status(result)
    raise SystemExit(0 if result.healthy else 1)


def _print_status(result: StackStatus) -> None:
    table = Table(title="robolake stack", title_justify="left")
    for column in ("component", "endpoint", "healthy", "pid", "console"):
        table.add_column(column)
    for c in result.components:
        table.add_row(
            c.name,
            c.endpoint,
            "[green]yes[/]" if c.healthy else "[red]no[/]",
            str(c.pid or "-"),
            c.console or "",
        )
    out_console.print(table)
    cluster = result.cluster or {}
    if "error" in cluster:
        out_console.print(f"cluster: {cluster['error']}", markup=False)
    elif cluster:
        out_console.print(
            f"cluster: {'one cluster' if cluster['one_cluster'] else 'SPLIT: ' + str(cluster['deployment_ids'])}, "
            f"{cluster['servers_online']}/{cluster['servers_total']} nodes online, "
            f"{cluster['drives_online']} drives online, {cluster['drives_offline']} offline, "
            f"parity EC:{cluster['parity']}",
            markup=False,
        )
    repo = result.repository
    if repo:
        state = "exists" if repo["exists"] else "MISSING"
        out_console.print(f"lakeFS repository {repo['name']}: {state}", markup=False)
    out_console.print(f"state: {result.state_dir}", markup=False)


@stack.command()
@click.argument("component", required=False)
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
def logs(component: str | None, lines: int, follow: bool) -> None:
    """Show the log of COMPONENT (minio-1, minio-2, minio-3, accelerator, hooks, lakefs), or of all of them."""
    native = NativeStack(load_settings())
    names = native.component_names()
    if component is not None and component not in names:
        raise ConfigError(f"unknown component {component!r}; choose one of {', '.join(names)}")
    paths = [native.state.log(n) for n in ([component] if component else names)]
    existing = [str(p) for p in paths if p.exists()]
    if not existing:
        raise ConfigError(f"no logs yet in {native.state.root / 'logs'}; has the stack been started?")
    cmd = ["tail", "-n", str(lines), *(["-F"] if follow else []), *existing]
    subprocess.run(cmd, check=False)


@stack.command()
@click.option(
    "--compose",
    "compose_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="For the stack this compose file runs (ports and credentials as Compose substitutes them "
    "from the environment and ./.env), with the robolake settings that reach it.",
)
def env(compose_file: Path | None) -> None:
    """Print `export` lines for aws-cli, mc, boto3 and lakectl.

    Use as: eval "$(robolake stack env)"   or, for Compose:
    eval "$(robolake stack env --compose docker-compose.local.yml)"
    """
    if compose_file is None:
        click.echo(NativeStack(load_settings()).env_exports())
        return
    import os
    import shlex

    from robolake.config import read_env_file
    from robolake.stack.compose import compose_exports, load_compose

    environ = {**read_env_file(compose_file.parent / ".env"), **os.environ}
    values = compose_exports(load_compose(compose_file, environ))
    click.echo("\n".join(f"export {k}={shlex.quote(v)}" for k, v in values.items()))


@stack.command()
@click.option("--minio-endpoint", required=True, help="S3 URL of any MinIO node, e.g. http://minio1:9000.")
@click.option("--lakefs-endpoint", default=None, help="lakeFS URL; omit to set up buckets only.")
@click.option("--lakefs-access-key-id", default=None)
@click.option("--lakefs-secret-access-key", default=None)
@click.option(
    "--hooks-endpoint",
    default=None,
    help="URL of the hooks server as lakeFS reaches it (e.g. http://hooks:9020): guard main with the "
    "UMI validation hook; lakeFS must have the token as LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN.",
)
@click.option("--wait", "wait_s", default=120.0, show_default=True, help="Seconds to wait for the servers.")
@click.option(
    "--no-notifications",
    is_flag=True,
    help="Do not subscribe the buckets to MinIO's webhook target for the accelerator.",
)
def bootstrap(
    minio_endpoint: str,
    lakefs_endpoint: str | None,
    lakefs_access_key_id: str | None,
    lakefs_secret_access_key: str | None,
    hooks_endpoint: str | None,
    wait_s: float,
    no_notifications: bool,
) -> None:
    """Set up an already running stack (used by the Compose runtime's setup container).

    Creates the buckets and subscribes them to bucket notifications for the accelerator (the
    MinIO nodes must have been started with the ROBOLAKE webhook target); with --lakefs-endpoint
    also the lakeFS admin and the repository, and with --hooks-endpoint the validation hook on main.
    """
    from robolake.stack import health
    from robolake.stack.bootstrap import ensure_notifications
    from robolake.stack.specs import NOTIFIED_BUCKETS, WEBHOOK_ID

    # Flags over ROBOLAKE_* over .env, as everywhere; but never the state directory's keys: the
    # admin user is created with exactly this pair, so it must be given.
    settings = load_settings().override(
        lakefs_access_key_id=lakefs_access_key_id, lakefs_secret_access_key=lakefs_secret_access_key
    )
    _wait_for(lambda: health.minio_cluster_ok(minio_endpoint), wait_s, f"MinIO at {minio_endpoint}")
    created = ensure_buckets(minio_endpoint, settings.minio_root_user, settings.minio_root_password)
    err_console.print(f"buckets ready ({', '.join(BUCKET_LAYOUT)}); created now: {created or 'none'}")
    if not no_notifications:
        arn = f"arn:minio:sqs::{WEBHOOK_ID}:webhook"
        ensure_notifications(
            minio_endpoint, settings.minio_root_user, settings.minio_root_password, arn, NOTIFIED_BUCKETS
        )
        err_console.print(f"bucket notifications to {arn}: {', '.join(NOTIFIED_BUCKETS)}")
    if lakefs_endpoint is None:
        return
    key, secret = settings.lakefs_access_key_id, settings.lakefs_secret_access_key
    if not (key and secret):
        raise ConfigError(
            "--lakefs-endpoint needs --lakefs-access-key-id and --lakefs-secret-access-key "
            "(or ROBOLAKE_LAKEFS_ACCESS_KEY_ID / ROBOLAKE_LAKEFS_SECRET_ACCESS_KEY)"
        )
    _bootstrap_lakefs(settings, lakefs_endpoint, hooks_endpoint, wait_s)


def _bootstrap_lakefs(settings: Settings, lakefs_endpoint: str, hooks_endpoint: str | None, wait_s: float) -> None:
    """The lakeFS part of `bootstrap`: admin, repository, and the validation hook when asked."""
    from robolake.stack import health
    from robolake.stack.bootstrap import install_main_hook
    from robolake.stack.specs import LAKEFS_ADMIN_USER, LAKEFS_STORAGE_BUCKET
    from robolake.versioning.client import LakeFSClient

    key, secret = settings.lakefs_access_key_id, settings.lakefs_secret_access_key
    _wait_for(lambda: health.lakefs_healthy(lakefs_endpoint), wait_s, f"lakeFS at {lakefs_endpoint}")
    admin = LakeFSAdmin(lakefs_endpoint, key, secret)
    if not admin.is_set_up():
        admin.set_up(LAKEFS_ADMIN_USER)
    admin.ensure_repository(settings.lakefs_repo, f"s3://{LAKEFS_STORAGE_BUCKET}/{settings.lakefs_repo}")
    err_console.print(f"lakeFS ready; repository {settings.lakefs_repo!r} exists")
    if hooks_endpoint is not None:
        _wait_for(lambda: health.http_ok(f"{hooks_endpoint}/health"), wait_s, f"the hooks server at {hooks_endpoint}")
        with LakeFSClient(lakefs_endpoint, key, secret) as client:
            install_main_hook(client, settings.lakefs_repo, hooks_endpoint, err_console.print)


def _wait_for(probe: Callable[[], bool], wait_s: float, what: str) -> None:
    from robolake.errors import ServiceUnavailableError

    end = time.monotonic() + wait_s
    while not probe():
        if time.monotonic() > end:
            raise ServiceUnavailableError(f"{what} did not become healthy within {wait_s:.0f} s")
        time.sleep(1)


@click.group()
def buckets() -> None:
    """Manage the robolake buckets on a running MinIO cluster."""


@buckets.command("setup")
@click.option("--endpoint", default=None, help="S3 URL of a MinIO node [default: the local stack's first node].")
def buckets_setup(endpoint: str | None) -> None:
    """Create umi-raw, umi-processed, umi-experiments and lakefs-storage (idempotent)."""
    settings = load_settings()
    url = endpoint or settings.minio_endpoints[0]
    created = ensure_buckets(url, settings.minio_root_user, settings.minio_root_password)
    for bucket, prefixes in BUCKET_LAYOUT.items():
        mark = "created" if bucket in created else "exists"
        click.echo(f"{bucket:<16} {mark:<8} {' '.join(prefixes)}")


@click.command()
@click.option(
    "--cluster",
    "cluster_file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The cluster file whose hosts get certificates.",
)
@click.option("--renew", is_flag=True, help="Make every host certificate again (the CA is kept).")
def certs(cluster_file: Path, renew: bool) -> None:
    """Make a trial CA and a TLS certificate per host of a cluster file.

    Writes <tls dir>/ca.crt (+ ca.key) and <tls dir>/<host>/public.crt + private.key (0600), each
    valid for the host's address, its name and 127.0.0.1; what exists is kept. Copy the folder to
    every host (each needs ca.crt and its own pair). For production, put your own CA's
    certificates in the same places instead.

    Example: robolake certs --cluster cluster.yml
    """
    from robolake.stack.certs import make_certs
    from robolake.stack.hosts import load_cluster

    cluster = load_cluster(cluster_file)
    written = make_certs(cluster, renew=renew)
    err_console.print(f"certificates in {cluster.tls_dir}: {len(written)} written, CA {cluster.ca}")
