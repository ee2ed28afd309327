#!/usr/bin/env python3
"""Generate, upload and benchmark UMI data: the seed's command line, kept as a thin layer over robolake.

Examples:
    .venv/bin/python download_umi_data.py --generate --upload
    .venv/bin/python download_umi_data.py --generate --upload --profile tiny --episodes 4 --experiments
    .venv/bin/python download_umi_data.py --upload --out umi_data --minio-endpoint 127.0.0.1:9001
    .venv/bin/python download_umi_data.py --benchmark small_file_performance
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

try:
    import robolake  # noqa: F401  (checked before anything else, for a useful message)
except ImportError:
    sys.stderr.write(
        f"error: this Python ({sys.executable}) cannot import robolake.\n"
        "Run ./deploy-local.sh once (it creates .venv with robolake installed and starts the stack), then:\n"
        "    .venv/bin/python download_umi_data.py --generate --upload\n"
    )
    sys.exit(1)

from robolake.errors import ConfigError, RobolakeError

BENCHMARKS = ("small_file_performance", "large_file_streaming", "mixed_workload", "dataloader", "warp_check")
PROFILES = ("tiny", "small", "medium", "large")
EPILOG = """\
what happens:
  --generate                writes a synthetic UMI dataset to --out (pose/ gripper/ video/ replay_buffer/
                            manifest.json); the same --seed/--profile/--episodes give the same bytes.
                            By default each dataset has its own folder, ./umi_data/<name>; a folder that
                            holds anything but an earlier generated dataset is never written to.
  --upload                  checks --out against its manifest.json, then uploads it into the lake layout
                            (umi-raw/pose/<name>/, gripper/, video/, original/, manifests/<name>.json;
                            configs to umi-experiments/configs/<name>/). Every object is verified
                            (Content-MD5, ETag, sha256 metadata); a second run rewrites nothing.
  --benchmark NAME          runs one workload of `robolake bench` with its default sizes (--smoke: quick):
      small_file_performance  GET of small pose/gripper objects direct, via the accelerator cold, warm and
                              as batch GETs, then PUT/HEAD/LIST, at concurrency 1, 8, 32
      large_file_streaming    video objects 8 MiB..1 GiB: multipart upload, streaming GET, ranged reads, warp
      mixed_workload          loaders, video streams, uploads and listings at once, direct vs accelerator
      dataloader              episodes/s and samples/s of a training loader through each path
      warp_check              robolake's load driver vs warp on the same GET workload
                            Reports (Markdown, JSON, PNG plots) go to ./benchmarks/<run-id>/ and
                            s3://umi-experiments/benchmarks/<run-id>/.

examples:
  .venv/bin/python download_umi_data.py --generate --upload
  .venv/bin/python download_umi_data.py --generate --profile tiny --episodes 4 --experiments --out /tmp/umi
  .venv/bin/python download_umi_data.py --upload --out /tmp/umi --minio-endpoint 127.0.0.1:9001
  .venv/bin/python download_umi_data.py --benchmark small_file_performance --smoke
  .venv/bin/python download_umi_data.py --benchmark large_file_streaming

Credentials come from MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (environment or .env), as for the stack.
"""


def _endpoint(value: str) -> str:
    from robolake.storage.s3 import normalise_endpoint

    try:
        return normalise_endpoint(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def _non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 or more")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="download_umi_data.py",
        description=__doc__.split("\n", 1)[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_what_to_do(parser)
    _add_dataset_options(parser)
    return parser


def _add_what_to_do(parser: argparse.ArgumentParser) -> None:
    """--generate, --upload, --experiments, --benchmark and the endpoint they use."""
    parser.add_argument(
        "--generate",
        action="store_true",
        help="generate a synthetic UMI dataset into --out (e.g. --generate --profile tiny)",
    )
    parser.add_argument(
        "--upload",
        action="store_true",
        help="upload --out into the lake, verified and resumable (e.g. --generate --upload)",
    )
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="with --generate: also write experiment configs (configs/experiment_XXX.yaml)",
    )
    parser.add_argument(
        "--benchmark",
        choices=BENCHMARKS,
        metavar="NAME",
        help="run a benchmark: " + ", ".join(BENCHMARKS) + " (e.g. --benchmark dataloader --smoke)",
    )
    parser.add_argument(
        "--minio-endpoint",
        type=_endpoint,
        default=None,
        metavar="HOST:PORT",
        help="S3 endpoint for --upload (default: the accelerator, 127.0.0.1:9000; e.g. "
        "127.0.0.1:9001 for MinIO node 1); with --benchmark small_file_performance, the MinIO "
        "endpoint of the direct path (default: node 1)",
    )


def _add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """Which dataset (--out, --profile, --episodes, --seed, --name) and how (--concurrency, --smoke, --json)."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="dataset directory for --generate / --upload (default: ./umi_data/<name>, e.g. "
        "umi_data/synthetic_small_s0_e8; every dataset gets its own folder)",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="small",
        help="dataset size for --generate (default: small; tiny takes seconds, large ~1 h)",
    )
    parser.add_argument(
        "--episodes",
        type=_positive,
        default=None,
        help="episodes for --generate (default: the profile's count, e.g. 8 for small)",
    )
    parser.add_argument("--seed", type=_non_negative, default=0, help="random seed for --generate (default: 0)")
    parser.add_argument(
        "--name",
        default=None,
        help="dataset name in the lake for --upload, and the folder under ./umi_data "
        "(default: synthetic_<profile>_s<seed>_e<episodes>)",
    )
    parser.add_argument("--concurrency", type=_positive, default=32, help="uploads in flight (default: 32)")
    parser.add_argument("--smoke", action="store_true", help="with --benchmark: a quick run (under a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON document with the results")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.generate or args.upload or args.benchmark):
        parser.error(
            "nothing to do: give --generate, --upload and/or --benchmark small_file_performance "
            "(e.g. --generate --upload)"
        )
    if args.benchmark not in (None, "small_file_performance") and args.minio_endpoint and not args.upload:
        parser.error(
            f"--minio-endpoint does not apply to --benchmark {args.benchmark} (it reads MinIO node 1 and the "
            "accelerator of the stack); use it with --upload or --benchmark small_file_performance"
        )
    if args.experiments and not args.generate:
        parser.error("--experiments needs --generate (configs are written while generating)")
    try:
        if args.out is None:
            from robolake.umi import default_dataset_dir

            args.out = default_dataset_dir(args.profile, args.seed, args.episodes, args.name)
        report = run(args)
    except RobolakeError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; rerun the same command to resume the upload\n")
        return 130
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console

    from robolake.config import Settings

    console = Console(stderr=True, highlight=False)
    settings = Settings.load()
    report: dict[str, Any] = {}
    if args.generate:
        report["generate"] = _generate(args, console)
    if args.upload:
        report["upload"] = _upload(args, settings, console)
    if args.benchmark:
        report["benchmark"] = _benchmark(args, settings, console)
    return report


def _generate(args: argparse.Namespace, console: Any) -> dict[str, Any]:
    from robolake.storage.progress import counter_progress
    from robolake.umi import generate_dataset

    started = time.monotonic()
    with counter_progress(f"generating {args.profile} dataset", console=console) as progress:
        manifest = generate_dataset(
            args.out,
            episodes=args.episodes,
            seed=args.seed,
            profile=args.profile,
            experiments=args.experiments,
            progress=progress,
        )
    seconds = time.monotonic() - started
    console.print(
        f"generated {manifest.episodes} episodes, {len(manifest.files)} files, "
        f"{manifest.total_bytes / 1e6:,.1f} MB in {args.out} ({seconds:.1f} s)"
    )
    return {
        "out": str(args.out),
        "episodes": manifest.episodes,
        "files": len(manifest.files),
        "bytes": manifest.total_bytes,
        "seconds": round(seconds, 2),
    }


def _upload(args: argparse.Namespace, settings: Any, console: Any) -> dict[str, Any]:
    from robolake.ingest.pipeline import ingest
    from robolake.storage.progress import object_progress

    with object_progress("uploading", console=console) as progress:
        result = ingest(
            args.out,
            settings,
            dataset_name=args.name,
            endpoint=args.minio_endpoint,
            concurrency=args.concurrency,
            progress=progress,
            status=lambda m: console.print(f"  {m}"),
        )
    up = result.upload
    console.print(
        f"dataset {result.dataset!r}: {up.objects} objects uploaded and verified, {up.skipped} already "
        f"stored unchanged, {up.bytes / 1e6:,.1f} MB in {up.seconds:.1f} s at {up.endpoint}; "
        f"manifest {result.manifest}"
    )
    return result.as_dict()


MODULES = {
    "small_file_performance": "small_files",
    "large_file_streaming": "streaming",
    "mixed_workload": "mixed",
    "dataloader": "dataloader",
    "warp_check": "warpcheck",
}
PARAMS = {
    "small_file_performance": "SmallFileBenchParams",
    "large_file_streaming": "StreamingParams",
    "mixed_workload": "MixedParams",
    "dataloader": "LoaderParams",
    "warp_check": "WarpCheckParams",
}


def _benchmark(args: argparse.Namespace, settings: Any, console: Any) -> dict[str, Any]:
    import importlib

    from robolake.bench import report

    def say(message: str) -> None:
        console.print(f"  {message}", markup=False)

    module: Any = importlib.import_module(f"robolake.bench.{MODULES[args.benchmark]}")
    smoke_params = getattr(module, "SMOKE_PARAMS", None) or getattr(module, "SMOKE", None)
    params = smoke_params if args.smoke else getattr(module, PARAMS[args.benchmark])()
    if args.benchmark == "small_file_performance":
        doc: dict[str, Any] = module.run(settings, params, say, direct_endpoint=args.minio_endpoint)
    elif args.benchmark == "warp_check":
        doc = module.run(settings, params, say)
    else:
        doc = module.run(settings, module.SMOKE_SPEC if args.smoke else module.DEFAULT_SPEC, params, say)
    md = module.markdown(doc)
    report.save(settings, doc, md, module.TITLE, Path("benchmarks"))
    if not args.json:
        print(md)
    console.print(f"results: {', '.join(doc['written_to'])}")
    return doc


if __name__ == "__main__":
    sys.exit(main())
