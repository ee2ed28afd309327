"""`robolake process replay-buffer | stats | lerobot | transcode`: jobs on Dask, each ending in one lakeFS commit."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from robolake.cli.common import err_console, load_settings, out_console, with_options

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@click.group()
def process() -> None:
    """Turn data in the lake into training-ready data, on Dask (a laptop or a cluster).

    \b
    Every job reads its inputs at one commit (the --ref, resolved once), runs one task per
    input on Dask workers, stages the tasks' results in s3://umi-processed/staging/, and ends
    in ONE commit on the target branch. A job that fails or is killed leaves the branch as it
    was; run it again, and the inputs already processed (same content, same parameters) are
    not processed again (`process clean-staging` deletes old staged results). Progress: a bar
    here, and the console's Jobs page (each run keeps a record in s3://umi-experiments/jobs/,
    so it shows wherever the driver runs).

    \b
    Where tasks run:
      (default)                 an embedded Dask cluster on 127.0.0.1, --workers processes
      --scheduler tcp://H:P     a running Dask cluster (or DASK_SCHEDULER_ADDRESS); its workers
                                need robolake installed and must reach the accelerator
      --single-process          in this process, without Dask
    Dask is an optional extra: pip install 'robolake[dask]'.
    """


_COMMON = [
    click.option("--ref", required=True, help="Branch, tag or commit to read; resolved once to a commit id."),
    click.option(
        "--to-branch",
        default=None,
        metavar="BRANCH",
        help="Branch to commit the output to [default: --ref, when it is a branch].",
    ),
    click.option(
        "--scheduler",
        default=None,
        envvar="DASK_SCHEDULER_ADDRESS",
        metavar="tcp://HOST:PORT",
        help="A running Dask scheduler [default: an embedded cluster; env DASK_SCHEDULER_ADDRESS].",
    ),
    click.option(
        "--workers",
        type=click.IntRange(1, 256),
        default=2,
        show_default=True,
        help="Worker processes of the embedded cluster (one thread each).",
    ),
    click.option("--single-process", "inline", is_flag=True, help="Run every task in this process, without Dask."),
    click.option("--repo", default=None, metavar="NAME", help="lakeFS repository [default: the stack's]."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
]


_common = with_options(_COMMON)


@process.command("replay-buffer")
@_common
@click.option(
    "--dataset",
    required=True,
    metavar="PATH",
    help="Folder in the repository holding the raw episodes: pose/, gripper/ and video/ episode_XXXXX files.",
)
@click.option(
    "--out-path",
    default=None,
    metavar="PATH",
    help="Where the buffer goes in the repository [default: PATH/processed/replay_buffer/dataset.zarr.zip].",
)
@click.option("--image-size", type=click.IntRange(16, 1024), default=224, show_default=True, help="Square side, px.")
@click.option("--no-mask", is_flag=True, help="Keep the gripper mount in the frames (UMI masks it black).")
@click.option("--no-reuse", is_flag=True, help="Process every episode again, even those staged by an earlier run.")
@click.option(
    "--read-from",
    type=click.Choice(["auto", "accelerator", "nodes"]),
    default="auto",
    show_default=True,
    help="Where tasks read the videos: auto = from a MinIO node when over 1 MiB (faster, measured), "
    "else through the accelerator (it caches them).",
)
def replay_buffer(**args: Any) -> None:
    """Raw episodes at REF -> UMI's replay buffer (dataset.zarr.zip), committed once.

    \b
    Per episode, one task: decode the video, take the centre square, resize it to 224 x 224,
    mask the gripper mount, encode JPEG XL as UMI does (level 99); low-dim arrays from the pose
    and gripper files. The driver then writes the buffer UMI's own loader opens.

    \b
    Examples:
      robolake process replay-buffer --ref main --dataset datasets/cup --to-branch cup-processed
      robolake process replay-buffer --ref v1.0 --dataset datasets/cup --to-branch processed \\
          --scheduler tcp://10.0.0.5:8786
    """
    from robolake.processing import ReplayBufferParams, run_replay_buffer

    params = ReplayBufferParams(image_size=args["image_size"], mask_gripper=not args["no_mask"])
    _run(
        args,
        run_replay_buffer,
        out_path=args["out_path"],
        params=params,
        reuse=not args["no_reuse"],
        read_from=args["read_from"],
    )


@process.command("stats")
@_common
@click.option(
    "--dataset",
    required=True,
    metavar="PATH",
    help="The replay buffer in the repository: a *.zarr.zip, or a folder holding exactly one.",
)
@click.option("--out-path", default=None, metavar="PATH", help="Where stats.json goes [default: beside the buffer].")
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Local copy.")
@click.option("--no-commit", is_flag=True, help="Only compute (and write --out); commit nothing.")
def stats(**args: Any) -> None:
    """Per-feature statistics of a replay buffer's low-dim arrays, as LeRobot's stats.json.

    \b
    For each array (robot0_eef_pos, robot0_gripper_width, ...): min, max, mean, std, count and
    the quantiles q01, q10, q50, q90, q99 over all steps, each a list of the feature's width.

    \b
    Examples:
      robolake process stats --ref cup-processed --dataset datasets/cup/processed/replay_buffer/
      robolake process stats --ref v1.0 --dataset replay_buffer/ --no-commit --out stats.json
    """
    from robolake.processing import run_stats

    _run(
        args,
        run_stats,
        out_path=args["out_path"],
        out_file=args["out_file"],
        commit=not args["no_commit"],
    )


@process.command("lerobot")
@_common
@click.option(
    "--dataset",
    required=True,
    metavar="PATH",
    help="The replay buffer in the repository: a *.zarr.zip, or a folder holding exactly one.",
)
@click.option(
    "--out-path",
    default=None,
    metavar="PATH",
    help="Folder for the LeRobot dataset [default: beside the buffer's folder, .../processed/lerobot/].",
)
@click.option("--fps", type=click.IntRange(1, 1000), default=60, show_default=True, help="Output frame rate.")
@click.option(
    "--action",
    type=click.Choice(["same", "next"]),
    default="same",
    show_default=True,
    help="same: action[t] = state[t] (UMI); next: the next frame's state.",
)
@click.option("--codec", type=click.Choice(["h264", "av1"]), default="h264", show_default=True, help="Video codec.")
@click.option("--task", default=None, help="Task text [default: the buffer's file name].")
@click.option("--no-reuse", is_flag=True, help="Encode every episode again, even those staged by an earlier run.")
def lerobot(**args: Any) -> None:
    """A replay buffer at REF -> a LeRobot v3.0 dataset in the lake, one task per episode, committed once.

    \b
    The same dataset `robolake export lerobot` writes (same parquet, meta/ and stats): per
    episode, one task decodes its frames and encodes its video segment; the driver writes the
    rows and meta/, appends the segments to lerobot's video files, and commits once.

    \b
    Examples:
      robolake process lerobot --ref cup-processed --dataset datasets/cup/processed/ --fps 20
      robolake process lerobot --ref v1.0 --dataset replay_buffer/ --to-branch lerobot --workers 4
    """
    from robolake.processing import LeRobotParams, run_lerobot

    params = LeRobotParams(fps=args["fps"], action=args["action"], codec=args["codec"], task=args["task"])
    params.check()
    _run(
        args,
        run_lerobot,
        out_path=args["out_path"],
        params=params,
        reuse=not args["no_reuse"],
    )


@process.command("transcode")
@_common
@click.option(
    "--dataset",
    required=True,
    metavar="PATH",
    help="Folder in the repository holding the raw videos: video/episode_XXXXX.mp4.",
)
@click.option("--codec", required=True, metavar="h264|av1", help="Target codec.")
@click.option("--size", required=True, metavar="WxH", help="Target frame size in pixels, both even, e.g. 320x240.")
def transcode(**args: Any) -> None:
    """Every episode video of a raw dataset -> another codec and size, beside the raw ones, committed once.

    \b
    One task per video: decode, scale to WxH, encode (h264: libx264; av1: libsvtav1 or
    libaom-av1, whichever this PyAV has). Written to PATH/transcoded/<codec>-<W>x<H>/video/;
    the raw videos stay as they are. Frame count and times are the source's.

    \b
    Examples:
      robolake process transcode --ref main --dataset datasets/cup --codec av1 --size 320x240
      robolake process transcode --ref v1.0 --dataset datasets/cup --codec h264 --size 224x224 --to-branch web
    """
    from robolake.processing.transcode import TranscodeParams, parse_size, run_transcode

    width, height = parse_size(args["size"])
    params = TranscodeParams(codec=args["codec"], width=width, height=height)
    params.check()
    _run(
        args,
        run_transcode,
        params=params,
    )


@process.command("clean-staging")
@click.option(
    "--older-than",
    default="7d",
    show_default=True,
    metavar="AGE",
    help="Delete what was staged longer ago than this: a number and s, m, h or d (0s: everything).",
)
@click.option(
    "--job", type=click.Choice(["replay-buffer", "lerobot", "transcode"]), default=None, help="Only this job's."
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def clean_staging(older_than: str, job: str | None, dry_run: bool, as_json: bool) -> None:
    """Delete old task results from s3://umi-processed/staging/ (never part of a commit).

    \b
    Staged results only make re-runs cheap: a job run after the cleaning processes again the
    inputs whose results it no longer finds, with the same output. Keep --older-than above the
    run time of any job still running: it needs what it staged until it commits.

    \b
    Examples:
      robolake process clean-staging --dry-run
      robolake process clean-staging --older-than 12h --job replay-buffer
    """
    from robolake.processing.staging import clean_staging as clean
    from robolake.processing.staging import parse_age

    done = clean(load_settings(), older_than_s=parse_age(older_than), job=job, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(done.as_dict(), indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    out_console.print(
        f"{verb} {done.deleted:,} staged objects ({done.deleted_bytes / 2**20:,.1f} MiB) older than {older_than} "
        f"in {done.prefix}; kept {done.kept:,}"
    )


def _run(args: dict[str, Any], run_job: Callable[..., Any], **options: Any) -> None:
    """Run a job on the engine the options name: its bar in the terminal, its record on the job
    board (the console's Jobs page), its result on stdout."""
    from robolake.processing import EngineOptions
    from robolake.processing.board import lake_writer, posted

    engine = EngineOptions(scheduler=args["scheduler"], workers=args["workers"], inline=args["inline"])
    engine.check()
    job = click.get_current_context().command.name or "process"
    settings = load_settings()
    say = _status(args["as_json"])
    source = {"repo": args["repo"], "ref": args["ref"], "dataset": args["dataset"], "to_branch": args["to_branch"]}
    with _task_bar(enabled=not args["as_json"]) as bar, posted(job, source, lake_writer(settings), status=say) as board:
        result = run_job(
            settings,
            args["ref"],
            args["dataset"],
            to_branch=args["to_branch"],
            engine=engine,
            repo=args["repo"],
            progress=_both(bar, board.progress),
            status=_both(say, board.note),
            **options,
        )
        board.finish(result)
    _show(result, args["as_json"])


def _both(first: Callable[[T], None], second: Callable[[T], None]) -> Callable[[T], None]:
    def call(value: T) -> None:
        first(value)
        second(value)

    return call


def _status(quiet: bool) -> Callable[[str], None]:
    return (lambda _m: None) if quiet else (lambda m: err_console.print(f"  {m}"))


@contextlib.contextmanager
def _task_bar(*, enabled: bool) -> Iterator[Callable[[Any], None]]:
    """A rich bar of tasks done / total with frames per second, shown from the first report on."""
    bar = Progress(
        TextColumn("[bold]tasks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err_console,
    )
    task = bar.add_task("process", total=None, rate="")

    def update(report: Any) -> None:
        if enabled and not bar.live.is_started:
            bar.start()
        rate = f"{report.frames} frames, {report.frames_per_s:.1f} frames/s" if report.frames else ""
        bar.update(task, completed=report.done, total=report.total, rate=rate)

    try:
        yield update
    finally:
        bar.stop()


def _show(result: Any, as_json: bool) -> None:
    if as_json:
        doc = result.as_dict()
        if result.job == "stats":
            doc["stats"] = doc.pop("details").get("stats")
        click.echo(json.dumps(doc, indent=2))
        return
    if result.job == "stats" and not result.commit_id and not result.output_path:
        click.echo(json.dumps(result.details["stats"], indent=2, sort_keys=True))
        return
    if result.up_to_date:
        out_console.print(f"{result.output_path} on {result.branch!r} is up to date (commit {result.commit_id[:12]})")
        return
    ran = f"{result.tasks_run} tasks run, {result.tasks_reused} reused"
    rate = f", {result.frames_per_s:.1f} frames/s" if result.frames_processed and result.job != "stats" else ""
    where = f"committed {result.commit_id} to {result.output_path} on {result.branch!r}" if result.commit_id else ""
    local = "" if result.commit_id else f"wrote {result.output_path}"
    out_console.print(
        f"{where or local}: {result.job} of {result.source_path!r} at {result.source_commit[:12]} "
        f"({result.frames} frames; {ran}{rate}; {result.seconds:.1f} s on {result.engine})"
    )


@click.command("process")
@click.option("--profile", default="tiny", show_default=True, help="Generator profile of the raw episodes.")
@click.option("--episodes", type=click.IntRange(1, 1000), default=4, show_default=True, help="Episodes to process.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Generator seed.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Dask worker processes.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks"), show_default=True)
@click.option(
    "--compare-read-from",
    is_flag=True,
    help="A third run on Dask with videos read straight from the MinIO nodes instead of the accelerator.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results document as JSON.")
def bench_process(
    profile: str, episodes: int, seed: int, workers: int, out: Path, compare_read_from: bool, as_json: bool
) -> None:
    """Replay-buffer throughput (frames/s) on Dask vs a single process: the same job, in the same run.

    \b
    Commits generated raw episodes to a throwaway branch, runs `process replay-buffer` on them
    once in this process and once on an embedded Dask cluster of --workers processes (nothing
    reused), checks both buffers are byte-identical, and reports frames/s of each and the ratio.
    Needs the running stack and the dask extra. Example: robolake bench process --episodes 8
    """
    from robolake.processing.bench import ProcessBenchParams, markdown, run, save

    params = ProcessBenchParams(
        profile=profile, episodes=episodes, seed=seed, workers=workers, compare_read_from=compare_read_from
    )
    params.check()
    doc = run(load_settings(), params, _status(as_json))
    where = save(doc, out)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        out_console.print(markdown(doc), markup=False)
    err_console.print(f"results (report.md, results.json): {where}")
