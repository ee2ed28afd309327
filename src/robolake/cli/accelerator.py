"""`robolake accelerator serve | stats`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from robolake.cli.common import PORT, err_console, load_settings, out_console, run_cli
from robolake.errors import ConfigError

if TYPE_CHECKING:
    from robolake.accelerator.server import AcceleratorConfig


@click.group()
def accelerator() -> None:
    """The small-file accelerator: an S3 endpoint in front of the MinIO cluster.

    It answers GET/HEAD of objects below a size threshold from a memory and a disk cache
    (S3-FIFO eviction, scan-resistant), verifies SigV4 itself before answering from cache,
    forwards everything else to a healthy MinIO node, prefetches the rest of an episode, and
    serves a batch GET. The stack starts it on 127.0.0.1:9000 (metrics on :9010).
    """


_SERVE_OPTIONS = (  # `serve`'s flags, applied by _serve_options
    click.option("--host", default=None, help="Address to listen on [default: the stack's host]."),
    click.option("--port", type=PORT, default=None, help="S3 port [default: ROBOLAKE_ACCELERATOR_PORT or 9000]."),
    click.option("--admin-port", type=PORT, default=None, help="Metrics/stats port [default: 9010]."),
    click.option(
        "--upstream",
        "upstreams",
        multiple=True,
        help="MinIO endpoint URL; repeat for each node [default: the stack's nodes].",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(path_type=Path),
        default=Path("aistor/cache"),
        show_default=True,
        help="Disk tier directory.",
    ),
    click.option("--memory-mb", type=int, default=None, help="Memory tier budget [default: 256]."),
    click.option("--disk-mb", type=int, default=None, help="Disk tier budget; 0 disables it [default: 4096]."),
    click.option("--max-object-kb", type=int, default=None, help="Cache objects up to this size [default: 1024]."),
    click.option(
        "--revalidate-after-s",
        type=float,
        default=30.0,
        show_default=True,
        help="Re-check a cached object's ETag with MinIO after this many seconds (catches a lost notification).",
    ),
    click.option("--no-prefetch", is_flag=True, help="Switch off episode-aware prefetch."),
    click.option(
        "--users-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="A team's users (written by `robolake users add`); re-read when it changes [default: root only].",
    ),
    click.option(
        "--notify-arn",
        default=None,
        help="MinIO's webhook target for this accelerator (arn:minio:sqs::ID:webhook): subscribe every bucket "
        "to it and cache only buckets that are [default: none; cached copies are revalidated instead].",
    ),
    click.option(
        "--tls-cert",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Serve HTTPS on both ports with this certificate (PEM; with --tls-key) [default: plain HTTP].",
    ),
    click.option(
        "--tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Its private key (PEM)."
    ),
    click.option(
        "--ca-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="CA certificates (PEM) that https:// upstreams are verified with [default: the system's].",
    ),
)


def _serve_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_SERVE_OPTIONS):
        command = option(command)
    return command


@accelerator.command()
@_serve_options
def serve(**opts: Any) -> None:
    """Run the accelerator in the foreground (Ctrl-C stops it).

    Cache hits for MINIO_ROOT_USER (environment or .env) and, as MinIO allows, --users-file's users.
    MinIO's bucket notifications reach it at http://HOST:ADMIN_PORT/minio/events (bearer token ROBOLAKE_WEBHOOK_TOKEN).

    Example: robolake accelerator serve --upstream http://127.0.0.1:9001 --upstream http://127.0.0.1:9002
    """
    from robolake.accelerator.server import serve as run

    config = _serve_config(opts)
    err_console.print(
        f"accelerator on {config.scheme}://{config.host}:{config.port} -> {', '.join(config.upstreams)}; "
        f"metrics on {config.scheme}://{config.host}:{config.admin_port}/metrics"
    )
    try:
        import uvloop

        uvloop.run(run(config))
    except ImportError:
        asyncio.run(run(config))
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {config.host}:{config.port} or :{config.admin_port}: {exc.strerror}; "
            "choose other ports with --port / --admin-port"
        ) from exc


def _serve_config(opts: dict[str, Any]) -> AcceleratorConfig:
    """The accelerator's settings: `serve`'s flags over the stack's settings."""
    from robolake.accelerator.server import AcceleratorConfig

    s = load_settings()
    disk_mb = s.accelerator_disk_mb if opts["disk_mb"] is None else opts["disk_mb"]
    config = AcceleratorConfig(
        upstreams=tuple(opts["upstreams"]) or tuple(s.minio_endpoints),
        credentials={s.minio_root_user: s.minio_root_password},
        host=opts["host"] or s.host,
        port=opts["port"] or s.accelerator_port,
        admin_port=opts["admin_port"] or s.accelerator_admin_port,
        cache_dir=opts["cache_dir"],
        memory_bytes=(opts["memory_mb"] or s.accelerator_memory_mb) << 20,
        disk_bytes=disk_mb << 20,
        max_object_bytes=(opts["max_object_kb"] or s.accelerator_max_object_kb) << 10,
        revalidate_after_s=opts["revalidate_after_s"],
        webhook_token=s.webhook_token,
        admin_token=s.admin_token,
        prefetch=not opts["no_prefetch"],
        users_file=opts["users_file"],
        notify_arn=opts["notify_arn"],
        tls_cert=opts["tls_cert"],
        tls_key=opts["tls_key"],
        ca_file=opts["ca_file"],
    )
    if config.max_object_bytes > config.memory_bytes // 2:
        raise ConfigError(
            f"--max-object-kb {config.max_object_bytes >> 10} must be at most half the memory "
            f"tier ({config.memory_bytes >> 20} MB); raise --memory-mb or lower --max-object-kb"
        )
    return config


@accelerator.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.option("--admin-url", default=None, help="Admin endpoint [default: the stack's, http://127.0.0.1:9010].")
def stats(as_json: bool, admin_url: str | None) -> None:
    """Show hit ratios, tier usage, prefetch accuracy, node health and latencies."""
    from robolake.accelerator.admin import read_stats

    doc = read_stats(load_settings(), admin_url)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    ev = doc["events"]
    issued = ev.get("prefetch_issued", 0)
    used = ev.get("prefetch_used", 0)
    out_console.print(
        f"hit ratio {doc['hit_ratio']}, uptime {doc['uptime_s']} s, prefetch issued {issued}, used "
        f"{used} (accuracy {used / issued:.1%})"
        if issued
        else f"hit ratio {doc['hit_ratio']}, uptime {doc['uptime_s']} s, prefetch issued 0",
        markup=False,
    )
    table = Table("tier", "objects", "used MB", "max MB", "hits", "misses", "evictions", "corrupt")
    for tier in ("memory", "disk"):
        t, u = doc["tiers"].get(tier, {}), doc[tier]
        table.add_row(
            tier,
            str(u["objects"]),
            f"{u['used_bytes'] / 2**20:.1f}",
            f"{u['max_bytes'] / 2**20:.0f}",
            *(str(t.get(k, 0)) for k in ("hits", "misses", "evictions", "corrupt")),
        )
    out_console.print(table)
    nodes = Table("node", "healthy", "requests", "errors")
    for n in doc["nodes"]:
        nodes.add_row(n["endpoint"], "yes" if n["healthy"] else "NO", str(n["requests"]), str(n["errors"]))
    out_console.print(nodes)
    lat = Table("operation", "count", "mean ms", "p50 ms <=", "p99 ms <=")
    for op, v in sorted(doc["latency"].items()):
        lat.add_row(op, str(v["count"]), str(v["mean_ms"]), str(v["p50_ms_le"]), str(v["p99_ms_le"]))
    out_console.print(lat)


def main() -> None:
    run_cli(accelerator)


if __name__ == "__main__":  # `python -m robolake.cli.accelerator serve ...` is how the stack starts it
    main()
