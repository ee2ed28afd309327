"""`robolake export lerobot`: a UMI replay buffer at a lakeFS ref, as a LeRobot v3.0 dataset."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robolake.cli.common import err_console, load_settings, out_console, with_options
from robolake.errors import ConfigError


@click.group()
def export() -> None:
    """Export datasets from the lake into other tools' formats."""


F = TypeVar("F", bound=Callable[..., Any])
_LEROBOT_OPTIONS = [
    click.option("--ref", required=True, help="Branch, tag or commit to read; resolved once to a commit id."),
    click.option(
        "--dataset",
        "dataset_path",
        required=True,
        metavar="PATH",
        help="The replay buffer in the repository: a *.zarr.zip, or a folder holding exactly one.",
    ),
    click.option(
        "--out",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Folder to write (new or empty). Optional with --into-branch.",
    ),
    click.option(
        "--fps", type=click.IntRange(1, 1000), default=60, show_default=True, help="Output frame rate, a whole number."
    ),
    click.option(
        "--action",
        type=click.Choice(["same", "next"]),
        default="same",
        show_default=True,
        help="same: action[t] = state[t] (UMI's sampler); next: the next frame's state (teleoperation style).",
    ),
    click.option(
        "--codec",
        type=click.Choice(["h264", "av1"]),
        default="h264",
        show_default=True,
        help="Video codec (yuv420p, a keyframe every 2 frames); h264 is byte-reproducible, av1 is lerobot's default.",
    ),
    click.option("--crf", type=click.IntRange(0, 63), default=None, help="Video quality [default: h264 23, av1 30]."),
    click.option("--task", default=None, help="The task text of every episode [default: the buffer's file name]."),
    click.option("--into-branch", default=None, metavar="BRANCH", help="Also commit the export to this lakeFS branch."),
    click.option("--lake-path", default=None, metavar="PATH", help="Where in the repository (with --into-branch)."),
    click.option(
        "--repo", default=None, metavar="NAME", help="lakeFS repository [default: the stack's, robotics-data]."
    ),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
]


_with_options = with_options(_LEROBOT_OPTIONS)


@export.command("lerobot")
@_with_options
def lerobot(**args: Any) -> None:
    """Export a UMI replay buffer at REF as a LeRobot v3.0 dataset (lerobot >= 0.4 loads it).

    \b
    What you get, per frame:
      observation.state           robotN eef_pos xyz (m), eef_rot_axis_angle xyz (rad), gripper_width (m)
      action                      the same 7 numbers per robot (see --action)
      observation.images.cameraN  an MP4 per camera, many episodes per file
      timestamp, frame_index, episode_index, index, task_index, and meta/stats.json

    \b
    Time: UMI steps are 59.94 Hz GoPro frames, LeRobot's fps is a whole number. Frame i of an
    episode stands at i/fps and takes the UMI step nearest in time, so its time is off by at most
    half a UMI step, 8.34 ms, at any episode length (it never drifts). --fps 60 keeps the steps
    one for one, showing one in 1000 twice; --fps 20 takes every 3rd, as UMI trains.
    The result reports the largest error made.

    \b
    Examples:
      robolake export lerobot --ref main --dataset replay_buffer/ --out ./cup_lerobot --fps 20
      robolake export lerobot --ref v1.0 --dataset replay_buffer/ --into-branch exports --lake-path lerobot/cup
    Then, with lerobot: LeRobotDataset("umi/cup", root="./cup_lerobot").
    """
    _run(**args)


def _run(
    *,
    ref: str,
    dataset_path: str,
    out: Path | None,
    fps: int,
    action: str,
    codec: str,
    crf: int | None,
    task: str | None,
    into_branch: str | None,
    lake_path: str | None,
    repo: str | None,
    as_json: bool,
) -> None:
    from robolake.ml.lerobot_export import ExportOptions, export_lerobot, export_lerobot_to_lake

    if out is None and into_branch is None:
        raise ConfigError("give --out DIR, --into-branch BRANCH with --lake-path PATH, or both")
    if (into_branch is None) != (lake_path is None):
        raise ConfigError("--into-branch and --lake-path go together: the branch and the folder to commit to")
    options = ExportOptions(fps=fps, action=action, codec=codec, crf=crf, task=task)
    options.check()
    settings = load_settings()
    status = lambda m: err_console.print(f"  {m}")  # noqa: E731
    with _frame_bar(enabled=not as_json) as progress:
        if into_branch is not None and lake_path is not None:
            result = export_lerobot_to_lake(
                settings,
                ref,
                dataset_path,
                branch=into_branch,
                lake_path=lake_path,
                out=out,
                options=options,
                repo=repo,
                progress=progress,
                status=status,
            )
        elif out is not None:
            result = export_lerobot(
                settings, ref, dataset_path, out, options, repo=repo, progress=progress, status=status
            )
        else:
            raise ConfigError("give --out DIR, --into-branch BRANCH with --lake-path PATH, or both")
    _show(result, as_json)


@contextlib.contextmanager
def _frame_bar(*, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich bar of frames exported, shown from the first frame on (an early error leaves no empty bar)."""
    bar = Progress(
        TextColumn("[bold]exporting frames"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    task = bar.add_task("export", total=None)

    def update(done: int, total: int) -> None:
        if enabled and not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()


def _show(result: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    where = f" in {result.out}" if result.out else ""
    out_console.print(
        f"exported {result.path} at {result.commit_id[:12]} (ref {result.ref!r}): {result.episodes} episodes, "
        f"{result.frames} frames at {result.fps} fps from {result.source_steps} steps{where}; "
        f"time error at most {result.max_time_error_ms:.2f} ms (bound {result.time_error_bound_ms:.2f} ms), "
        f"{result.repeated_steps} steps shown twice, {result.skipped_steps} skipped"
    )
    if result.lake:
        out_console.print(f"committed {result.lake['commit_id']} to {result.lake['path']} on {result.lake['branch']!r}")
