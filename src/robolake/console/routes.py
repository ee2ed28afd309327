"""The console's routes: pages, their JSON twins under /api/, and media read at a commit.

    GET /                      stack page              GET /api/stack
    GET /versions              versions (+ diff)       GET /api/versions?repo&ref   /api/diff?repo&left&right
    GET /metrics               charts, bench runs      GET /api/metrics?minutes     /api/bench
    GET /jobs                  processing jobs         GET /api/jobs
    GET /episodes              ref, dataset picker     GET /api/datasets?ref        /api/episodes?ref&dataset
    GET /episode?ref&dataset&n the episode player      GET /api/episode?ref&dataset&n
    GET /media/video/{commit}/{n}?dataset      the MP4, with Range (206, Content-Range, Accept-Ranges)
    GET /media/frame/{commit}/{n}/{i}?dataset  a replay-buffer frame as JPEG
    GET /bench/{run}/{name}                    a benchmark run's file (plots, report.md)
    GET /health                                liveness (no data; never asks for credentials)

A page resolves its ref to a commit id once; every link and media URL it renders carries that
commit id, so a page opened at a tag keeps showing those bytes after the branch moves on.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import imagecodecs
from aiohttp import web

from robolake.console import pages
from robolake.console.episodes import EpisodeReader, dataset_prefix
from robolake.console.ranges import RangeNotSatisfiable, parse_range
from robolake.console.views import (
    Lake,
    bench_file,
    bench_runs,
    diff_view,
    jobs_view,
    metric_panels,
    metrics_view,
    stack_view,
    versions_view,
)
from robolake.errors import ConfigError, RobolakeError

T = TypeVar("T")
LAKE: web.AppKey[Lake] = web.AppKey("lake", Lake)
READER: web.AppKey[EpisodeReader] = web.AppKey("reader", EpisodeReader)
CHUNK_BYTES = 1 << 20  # one ranged GET per MiB of video sent
COMMIT_RE = re.compile(r"[0-9a-f]{64}")
IMMUTABLE = "private, max-age=31536000, immutable"  # bytes at a commit never change


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking library call (requests, boto3, decoding) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


def _int(request: web.Request, name: str, *, source: str = "query") -> int:
    raw = (request.query if source == "query" else request.match_info).get(name, "")
    if not raw.isdigit() or len(raw) > 9:
        raise ConfigError(f"{name}={raw!r} is not a non-negative whole number")
    return int(raw)


def _text(request: web.Request, name: str, default: str | None = None) -> str:
    value = request.query.get(name, default)
    if value is None or (value == "" and default is None):
        raise ConfigError(f"the query parameter {name!r} is missing; e.g. ?{name}=main")
    return value


def _dataset(request: web.Request) -> str:
    value = request.query.get("dataset", "")
    dataset_prefix(value)  # ConfigError for "..", "//" and the like
    return value.strip("/")


def _commit(request: web.Request) -> str:
    commit = request.match_info["commit"]
    if not COMMIT_RE.fullmatch(commit):
        raise ConfigError(
            f"commit {commit!r} is not a lakeFS commit id (64 hex digits); open the episode from its page"
        )
    return commit


# ---------------------------------------------------------------- pages and their JSON


async def stack(request: web.Request) -> web.Response:
    view = await blocking(stack_view, request.app[LAKE])
    return web.json_response(view) if request.path.startswith("/api/") else _html(pages.stack_page(view))


async def versions(request: web.Request) -> web.Response:
    lake = request.app[LAKE]
    repo = request.query.get("repo") or lake.settings.lakefs_repo
    ref = request.query.get("ref") or "main"
    view = await blocking(versions_view, lake, repo, ref)
    if request.path.startswith("/api/"):
        return web.json_response(view)
    left, right = request.query.get("left"), request.query.get("right")
    if not left and view["commits"] and view["commits"][0]["parents"]:
        left, right = view["commits"][0]["parents"][0], view["commit_id"]
    diff = await blocking(diff_view, lake, repo, left, right or ref) if left else None
    return _html(pages.versions_page(view, diff))


async def diff(request: web.Request) -> web.Response:
    lake = request.app[LAKE]
    repo = request.query.get("repo") or lake.settings.lakefs_repo
    view = await blocking(diff_view, lake, repo, _text(request, "left"), _text(request, "right"))
    return web.json_response(view)


async def jobs(request: web.Request) -> web.Response:
    view = await blocking(jobs_view, request.app[LAKE])
    return web.json_response(view) if request.path.startswith("/api/") else _html(pages.jobs_page(view))


async def metrics(request: web.Request) -> web.Response:
    if request.path.startswith("/api/"):
        minutes = _int(request, "minutes") if "minutes" in request.query else 60
        if not 1 <= minutes <= 7 * 24 * 60:
            raise ConfigError(f"minutes={minutes} must be between 1 and {7 * 24 * 60}")
        return web.json_response(await blocking(metrics_view, request.app[LAKE], minutes))
    panels = [{"row": p.row, "title": p.title, "unit": p.unit} for p in metric_panels()]
    try:
        runs, problem = await blocking(bench_runs, request.app[LAKE]), None
    except RobolakeError as exc:  # the page still shows the charts
        runs, problem = None, str(exc)
    return _html(pages.metrics_page(panels, runs, problem))


async def bench(request: web.Request) -> web.Response:
    return web.json_response(await blocking(bench_runs, request.app[LAKE]))


async def bench_artifact(request: web.Request) -> web.Response:
    run, name = request.match_info["run"], request.match_info["name"]
    body = await blocking(bench_file, request.app[LAKE], run, name)
    kind = {"png": "image/png", "json": "application/json", "md": "text/plain"}.get(name.rsplit(".", 1)[-1])
    return web.Response(body=body, content_type=kind or "application/octet-stream", charset=None)


async def datasets(request: web.Request) -> web.Response:
    reader = request.app[READER]
    ref = _text(request, "ref", "main")
    commit = await blocking(reader.resolve, ref)
    found = await blocking(reader.datasets, commit)
    return web.json_response({"ref": ref, "commit": commit, "datasets": found})


async def episodes(request: web.Request) -> web.Response:
    reader = request.app[READER]
    ref = _text(request, "ref", "main")
    commit = await blocking(reader.resolve, ref)
    chosen = _dataset(request) if "dataset" in request.query else None
    rows = await blocking(reader.episodes, commit, chosen) if chosen is not None else []
    if request.path.startswith("/api/"):
        return web.json_response({"ref": ref, "commit": commit, "dataset": chosen, "episodes": rows})
    found = await blocking(reader.datasets, commit)
    return _html(pages.episodes_page(ref, commit, found, chosen, rows))


async def episode(request: web.Request) -> web.Response:
    reader = request.app[READER]
    ref, dataset, n = _text(request, "ref"), _dataset(request), _int(request, "n")
    commit = await blocking(reader.resolve, ref)
    ep = await blocking(reader.episode, commit, dataset, n)
    if request.path.startswith("/api/"):
        return web.json_response({"ref": ref, "commit": commit, "dataset": dataset, **ep})
    return _html(pages.episode_page(ref, commit, dataset, ep))


# ---------------------------------------------------------------- media at a commit


async def video(request: web.Request) -> web.StreamResponse:
    """The MP4 with byte ranges (RFC 9110): 206 + Content-Range for a range, 200 for all, 416 past the end."""
    commit, n, dataset = _commit(request), _int(request, "n", source="path"), _dataset(request)
    stat, source = await blocking(request.app[READER].video, commit, dataset, n)
    total = stat.size_bytes
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4", "Cache-Control": IMMUTABLE}
    if stat.checksum:
        headers["ETag"] = f'"{stat.checksum}"'
    try:
        wanted = parse_range(request.headers.get("Range"), total)
    except RangeNotSatisfiable:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{total}"})
    first, last = (wanted.first, wanted.last) if wanted else (0, total - 1)
    if wanted:
        headers["Content-Range"] = wanted.content_range(total)
    headers["Content-Length"] = str(last - first + 1)
    status = 206 if wanted else 200
    if request.method == "HEAD":
        return web.Response(status=status, headers=headers)
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    for offset in range(first, last + 1, CHUNK_BYTES):
        piece = await blocking(source.read, offset, min(CHUNK_BYTES, last + 1 - offset))
        await response.write(piece)
    await response.write_eof()
    return response


async def frame(request: web.Request) -> web.Response:
    """One replay-buffer frame, JPEG XL decoded and re-encoded as JPEG (browsers show no JPEG XL)."""
    commit, dataset = _commit(request), _dataset(request)
    n, i = _int(request, "n", source="path"), _int(request, "i", source="path")
    image = await blocking(request.app[READER].frame, commit, dataset, n, i)
    body = await blocking(functools.partial(imagecodecs.jpeg8_encode, level=90), image)
    return web.Response(body=bytes(body), content_type="image/jpeg", headers={"Cache-Control": IMMUTABLE})


async def health(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    for path, handler in (
        ("/", stack),
        ("/api/stack", stack),
        ("/versions", versions),
        ("/api/versions", versions),
        ("/api/diff", diff),
        ("/metrics", metrics),
        ("/api/metrics", metrics),
        ("/api/bench", bench),
        ("/jobs", jobs),
        ("/api/jobs", jobs),
        ("/bench/{run}/{name}", bench_artifact),
        ("/episodes", episodes),
        ("/api/episodes", episodes),
        ("/api/datasets", datasets),
        ("/episode", episode),
        ("/api/episode", episode),
        ("/media/video/{commit}/{n}", video),
        ("/media/frame/{commit}/{n}/{i}", frame),
        ("/health", health),
    ):
        r.add_get(path, handler)
