"""`robolake generate`, `robolake upload`, `robolake ingest`: make, store and ingest UMI data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from robolake.cli.common import err_console, load_settings, out_console
from robolake.errors import ConfigError


def _emit_json(doc: dict[str, Any]) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def _upload_table(title: str, upload: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("endpoint", upload["endpoint"]),
        ("destination", upload["destination"]),
        ("uploaded and verified", f"{upload['objects']} objects, {upload['bytes'] / 1e6:,.2f} MB"),
        ("already stored (unchanged)", str(upload["skipped"])),
        ("failed", str(len(upload["failures"]))),
        (
            "time",
            f"{upload['seconds']:.2f} s ({upload['objects_per_s']:,.0f} objects/s, {upload['mb_per_s']:,.1f} MB/s)",
        ),
        ("retries", str(upload["retries"])),
    ):
        table.add_row(label, value)
    return table


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory to write (must be empty, or hold an earlier robolake dataset) "
    "[default: umi_data/synthetic_<profile>_s<seed>_e<episodes>].",
)
@click.option("--episodes", type=int, default=None, help="Episodes to generate (default: the profile's count).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--profile",
    type=click.Choice(["tiny", "small", "medium", "large"]),
    default="small",
    show_default=True,
    help="Dataset size: frames per episode and video resolution.",
)
@click.option("--experiments", is_flag=True, help="Also write experiment configs (configs/experiment_XXX.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
def generate(
    out_dir: Path | None, episodes: int | None, seed: int, profile: str, experiments: bool, as_json: bool
) -> None:
    """Generate a synthetic UMI dataset (pose/gripper JSON, H.264 videos, the replay buffer).

    Example: robolake generate --out umi_data/tiny4 --profile tiny --episodes 4 --experiments
    """
    from robolake.storage.progress import counter_progress
    from robolake.umi import default_dataset_dir, generate_dataset

    out_dir = out_dir or default_dataset_dir(profile, seed, episodes)
    started = time.monotonic()
    with counter_progress("generating episodes", console=err_console) as progress:
        manifest = generate_dataset(
            out_dir, episodes=episodes, seed=seed, profile=profile, experiments=experiments, progress=progress
        )
    seconds = time.monotonic() - started
    doc = {
        "out": str(out_dir),
        "profile": profile,
        "seed": seed,
        "episodes": manifest.episodes,
        "frames": manifest.frames_total,
        "files": len(manifest.files),
        "bytes": manifest.total_bytes,
        "experiments": manifest.experiments,
        "seconds": round(seconds, 2),
    }
    if as_json:
        _emit_json(doc)
        return
    out_console.print(
        f"generated {manifest.episodes} episodes ({manifest.frames_total} frames, "
        f"{len(manifest.files)} files, {manifest.total_bytes / 1e6:,.1f} MB) in {out_dir} "
        f"in {seconds:.1f} s; manifest: {out_dir / 'manifest.json'}"
    )


@click.command()
@click.argument("local_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--bucket", required=True, help="Target bucket, e.g. umi-raw.")
@click.option("--prefix", default="", help="Key prefix, e.g. pose/cup_in_the_wild.")
@click.option("--endpoint", default=None, help="S3 endpoint HOST:PORT (default: the accelerator).")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=32, show_default=True, help="Requests in flight.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def upload(local_dir: Path, bucket: str, prefix: str, endpoint: str | None, concurrency: int, as_json: bool) -> None:
    """Upload every file under LOCAL_DIR, verified (Content-MD5, ETag, sha256 metadata) and resumable.

    Objects already stored with the same sha256 are skipped, so a rerun rewrites nothing.
    Example: robolake upload umi_data --bucket umi-raw --prefix synthetic/run1
    """
    from robolake.storage.progress import object_progress
    from robolake.storage.uploader import upload_tree

    settings = load_settings()
    with object_progress("uploading", console=err_console) as progress:
        summary = upload_tree(
            settings, local_dir, bucket, prefix, endpoint=endpoint, concurrency=concurrency, progress=progress
        )
    if as_json:
        _emit_json(summary.as_dict())
    else:
        out_console.print(_upload_table("upload", summary.as_dict()))
    summary.raise_for_failures()


@click.command()
@click.argument("source")
@click.option(
    "--name",
    "dataset_name",
    default=None,
    help="Dataset name in the lake (default: from the file name, e.g. cup_in_the_wild).",
)
@click.option("--sha256", default=None, help="Expected SHA-256 of the file or URL; a mismatch uploads nothing.")
@click.option("--endpoint", default=None, help="S3 endpoint HOST:PORT (default: the accelerator).")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option(
    "--download-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where URL downloads are kept (default: ROBOLAKE_CACHE_DIR/downloads).",
)
@click.option("--branch", default=None, metavar="BRANCH", help="LeRobot folders: the lakeFS branch [default: main].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def ingest(source: str, as_json: bool, branch: str | None, **options: Any) -> None:
    """Ingest data into the lake: UMI data into umi-raw, a LeRobot v3.0 folder as a lakeFS commit.

    Everything is validated before the first byte is uploaded; a bad input writes nothing.
    UMI sources (a *.zarr.zip, a zip or folder of MP4s, a generated layout, or a URL of one):
    episodes land in pose/<name>/, gripper/<name>/, video/<name>/; the file itself in
    original/<name>/; the manifest in manifests/<name>.json. A LeRobot v3.0 folder (meta/info.json):
    info.json, tasks, episodes and every data and video file they name are checked (files exist,
    row and frame counts agree), then it is committed to lerobot/<name>/ on --branch.

    \b
    Examples:
      robolake ingest cup_in_the_wild.zarr.zip
      robolake ingest https://example.org/cup_in_the_wild_mp4s.zip --sha256 <hex> --name cup_in_the_wild
      robolake ingest ./my_lerobot_dataset --branch datasets
    """
    from robolake.ingest.pipeline import ingest as run_ingest
    from robolake.storage.progress import byte_progress, object_progress

    if options["dataset_name"] is not None and not options["dataset_name"].strip():
        raise ConfigError("--name must not be empty")
    is_url = source.startswith(("http://", "https://"))
    if _ingest_lerobot(source, is_url, branch, as_json, options):
        return
    settings = load_settings()
    with (
        byte_progress("downloading", console=err_console, enabled=is_url) as download,
        object_progress("uploading", console=err_console) as progress,
    ):
        result = run_ingest(
            source,
            settings,
            progress=progress,
            download_progress=download,
            status=lambda m: err_console.print(f"  {m}"),
            **options,
        )
    _show_ingest(result, as_json)


def _ingest_lerobot(source: str, is_url: bool, branch: str | None, as_json: bool, options: dict[str, Any]) -> bool:
    """A LeRobot v3.0 folder: checked in full, then one lakeFS commit (robolake.ml.lerobot_ingest); False if not one."""
    from robolake.ingest.lerobot import is_lerobot_folder
    from robolake.ml.lerobot_ingest import ingest_lerobot
    from robolake.storage.progress import object_progress

    folder = Path(source).expanduser()
    if is_url or not is_lerobot_folder(folder):
        if branch is not None:
            raise ConfigError(f"--branch applies to LeRobot v3.0 folders only; {source!r} has no meta/info.json")
        return False

    for flag, key in (("--sha256", "sha256"), ("--endpoint", "endpoint"), ("--download-dir", "download_dir")):
        if options[key] is not None:
            raise ConfigError(f"{flag} does not apply to a LeRobot folder (it is committed to lakeFS as it is)")
    settings = load_settings()
    with object_progress("uploading", console=err_console) as progress:
        result = ingest_lerobot(
            settings,
            folder,
            branch=branch or "main",
            name=options["dataset_name"],
            progress=progress,
            status=lambda m: err_console.print(f"  {m}"),
        )
    if as_json:
        _emit_json(result.as_dict())
        return True
    out_console.print(
        f"ingested LeRobot v3.0 dataset {result.dataset!r} ({result.episodes} episodes, {result.frames} frames, "
        f"{result.fps} fps): {result.files} files ({result.uploaded} sent) committed as {result.commit_id} "
        f"to {result.path} on {result.branch!r}"
    )
    return True


def _show_ingest(result: Any, as_json: bool) -> None:
    """The ingest result as JSON, or as the upload table and the manifest's address."""
    if as_json:
        _emit_json(result.as_dict())
        return
    title = (
        f"ingested {result.kind} as dataset {result.dataset!r} ({result.episodes} episodes, {result.objects} objects)"
    )
    out_console.print(_upload_table(title, result.upload.as_dict()))
    out_console.print(f"manifest: {result.manifest}")
