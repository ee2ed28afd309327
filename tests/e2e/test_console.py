"""The web console in a real browser (Debian's chromium, driven by playwright), on the session stack.

The stack's own console (started by `stack up`, on loopback) serves a tiny generated UMI dataset
put into lakeFS on a branch, committed and tagged; then the branch moves on (episode 0's video
and pose replaced by another seed's). Every page must render with no console error and show
what it names; the episode page's video must play and seek with HTTP 206 answers, the curves'
cursor follow it, the frame strip show decoded frames; at the tag, the tagged bytes. A second
console bound off loopback asks for the lakeFS key pair. Screenshots land in
$ROBOLAKE_CONSOLE_SCREENSHOTS (default: the test's temp dir).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import subprocess
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import requests

from robolake.stack.native import NativeStack
from robolake.stack.process import free_port
from robolake.umi import generate_dataset
from robolake.versioning import LakeFSClient, put_dataset
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e
CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
REPO = "robotics-data"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed (/usr/bin/chromium); run-tests.sh installs it as root, "
        "or: apt-get install chromium",
        allow_module_level=True,
    )
BENCH = [str(ROOT / ".venv/bin/robolake"), "bench", "small-files", "--objects", "20", "--concurrency", "1"]
BENCH += ["--duration", "0.5", "--warmup", "0", "--ops", "get", "--paths", "direct"]
VIDEO = "document.getElementById('video')"
playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra's playwright is not installed")


class Lake:
    """What the fixture put into lakeFS: where, at which commits, from which local files; the keys to ask with."""

    def __init__(self, base: str, dataset: str, branch: str, tag: str, tagged: str, moved: str, v1: Path, v2: Path):
        self.base, self.dataset, self.branch, self.tag = base, dataset, branch, tag
        self.tagged, self.moved, self.v1, self.v2 = tagged, moved, v1, v2
        self.keys: tuple[str, str] = ("", "")

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET from the console with the lakeFS key pair, as a browser that was given them does."""
        return requests.get(url, auth=self.keys, **kwargs)

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(":".join(self.keys).encode()).decode()

    def episode_url(self, ref: str, n: int = 0) -> str:
        return f"{self.base}/episode?ref={ref}&dataset={self.dataset}&n={n}"


@pytest.fixture(scope="module")
def lake(stack: NativeStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    v1, v2 = tmp_path_factory.mktemp("console-v1"), tmp_path_factory.mktemp("console-v2")
    generate_dataset(v1, profile="tiny", seed=21)
    generate_dataset(v2, profile="tiny", seed=22)
    label = uuid.uuid4().hex[:8]
    branch, tag, dataset = f"t-console-{label}", f"console-{label}", f"console/{label}"
    with LakeFSClient.from_settings(stack.settings) as client:
        client.create_branch(REPO, branch, "main")
        tagged = put_dataset(client, REPO, branch, v1, dataset, {"seed": 21, "profile": "tiny"}).commit.id
        client.create_tag(REPO, tag, tagged)
        for kind, ext in (("video", "mp4"), ("pose", "json")):  # the branch moves on: episode 0 changes
            body = (v2 / kind / f"episode_00000.{ext}").read_bytes()
            client.upload_object(REPO, branch, f"{dataset}/{kind}/episode_00000.{ext}", body)
        moved = client.commit(REPO, branch, "replace episode 0", {"reason": "re-recorded"}).id
        # A real (tiny) benchmark run, for the metrics page's run list and its plots.
        bench = subprocess.run(
            [*BENCH, "--out", str(v2.parent)],
            env=settings_env(stack.settings),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert bench.returncode == 0, bench.stdout + bench.stderr
        made = Lake(stack.settings.console_endpoint, dataset, branch, tag, tagged, moved, v1, v2)
        made.keys = stack.settings.resolve_lakefs_keys()
        yield made
        client.delete_tag(REPO, tag)
        client.delete_branch(REPO, branch)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("ROBOLAKE_CONSOLE_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=ARGS, headless=True, viewport={"width": 1300, "height": 900}
        )
        yield context
        context.close()


class Watched:
    """A page with every console error, page error and media answer recorded."""

    def __init__(self, context: Any, basic: str | None = None) -> None:
        self.page = context.new_page()
        if basic is not None:  # the console asks for the lakeFS key pair on every request
            self.page.set_extra_http_headers({"Authorization": basic})
        self.errors: list[str] = []
        self.media: list[Any] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("response", lambda r: "/media/video/" in r.url and self.media.append(r))

    def open(self, url: str) -> Any:
        answer = self.page.goto(url)
        self.page.wait_for_load_state("networkidle")
        assert answer is not None and answer.status == 200, url
        return self.page


@pytest.fixture
def watched(browser: Any, lake: Lake) -> Iterator[Watched]:
    w = Watched(browser, lake.basic)
    yield w
    w.page.close()


def test_every_page_renders_without_console_errors(lake: Lake, watched: Watched, shots: Path) -> None:
    page = watched.open(f"{lake.base}/")
    assert page.text_content("#nodes-online") == "3"
    assert page.locator("table.components td:text-is('console')").count() == 1
    assert page.locator("table.components .badge.bad").count() == 0
    assert page.locator("table.drives .badge.ok").count() >= 6
    assert page.locator("table.buckets td:has-text('umi-experiments')").count() == 1
    page.screenshot(path=str(shots / "stack.png"), full_page=True)

    page = watched.open(f"{lake.base}/versions?ref={lake.branch}")
    commits = page.text_content("table.commits") or ""
    assert lake.moved[:12] in commits and lake.tagged[:12] in commits and "re-recorded" in commits
    assert "seed" in commits and "21" in commits  # the tagged commit's metadata
    assert lake.tag in (page.text_content("table.tags") or "")
    diff = page.text_content("#diff") or ""  # the head commit against its parent
    assert "episode_00000" in diff and "0 added, 0 removed, 2 changed" in diff
    page.screenshot(path=str(shots / "versions.png"), full_page=True)

    page = watched.open(f"{lake.base}/metrics")
    page.wait_for_selector("body[data-charts=ready]", timeout=20_000)
    assert page.locator(".plot[data-series]:not([data-series='0']) svg path.series").count() > 0
    assert page.locator("#bench img.plot-image").count() >= 2
    assert page.evaluate("[...document.querySelectorAll('#bench img')].every(i => i.naturalWidth > 100)")
    page.screenshot(path=str(shots / "metrics.png"), full_page=True)

    page = watched.open(f"{lake.base}/episodes?ref={lake.tag}&dataset={lake.dataset}")
    assert page.locator("table.episodes tbody tr").count() == 2
    assert lake.dataset in (page.text_content("main") or "")
    page.screenshot(path=str(shots / "episodes.png"), full_page=True)
    assert watched.errors == []


def _video_state(page: Any) -> dict[str, float]:
    return dict(
        page.evaluate(
            "(() => { const v = document.getElementById('video'); return {t: v.currentTime, d: v.duration}; })()"
        )
    )


def test_the_video_plays_and_seeks_by_range_and_the_cursor_follows(lake: Lake, watched: Watched, shots: Path) -> None:
    page = watched.open(lake.episode_url(lake.tag))
    page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=20_000)
    start_x = float(page.get_attribute("#pose-cursor", "x1") or "nan")
    page.evaluate("document.getElementById('video').play()")
    page.wait_for_function("document.getElementById('video').currentTime > 0.3", timeout=20_000)
    page.evaluate("document.getElementById('video').pause()")
    page.wait_for_timeout(100)
    playing_x = float(page.get_attribute("#pose-cursor", "x1") or "nan")
    assert playing_x > start_x
    page.evaluate("(() => { const v = document.getElementById('video'); v.currentTime = 0.1; })()")
    page.wait_for_function(f"Math.abs({VIDEO}.currentTime - 0.1) < 0.01 && !{VIDEO}.seeking")
    page.wait_for_timeout(100)
    assert abs(_video_state(page)["t"] - 0.1) < 0.01
    back_x = float(page.get_attribute("#pose-cursor", "x1") or "nan")
    assert start_x < back_x < playing_x  # the cursor went back with the video
    assert float(page.get_attribute("#gripper-cursor", "data-time") or "nan") == pytest.approx(0.1, abs=0.01)
    page.screenshot(path=str(shots / "episode.png"), full_page=True)

    size = (lake.v1 / "video" / "episode_00000.mp4").stat().st_size
    ranged = [r for r in watched.media if r.status == 206]
    assert ranged, [(r.status, r.url) for r in watched.media]
    for answer in ranged:
        headers = answer.headers
        first, last, total = map(int, re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"]).groups())  # type: ignore[union-attr]
        assert total == size and 0 <= first <= last < size and headers["accept-ranges"] == "bytes"
        assert int(headers["content-length"]) == last - first + 1
    assert watched.errors == []


def test_ranges_answer_exactly_the_bytes_at_the_commit(lake: Lake) -> None:
    local = (lake.v1 / "video" / "episode_00000.mp4").read_bytes()
    url = f"{lake.base}/media/video/{lake.tagged}/0?dataset={lake.dataset}"
    part = lake.get(url, headers={"Range": "bytes=100-1099"}, timeout=30)
    assert part.status_code == 206 and part.content == local[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(local)}"
    tail = lake.get(url, headers={"Range": "bytes=-500"}, timeout=30)
    assert tail.status_code == 206 and tail.content == local[-500:]
    whole = lake.get(url, timeout=30)
    assert whole.status_code == 200 and whole.content == local and whole.headers["Accept-Ranges"] == "bytes"
    past = lake.get(url, headers={"Range": f"bytes={len(local)}-"}, timeout=30)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(local)}"


def test_the_frame_strip_shows_the_replay_buffers_frames(lake: Lake, watched: Watched) -> None:
    page = watched.open(lake.episode_url(lake.tag, 1))
    widths = page.evaluate("[...document.querySelectorAll('.strip img.frame')].map(i => i.naturalWidth)")
    assert len(widths) >= 2 and all(w == 224 for w in widths)
    # Frame 5 of episode 1 as served (JPEG) against the same frame decoded from the local zip.
    served = lake.get(f"{lake.base}/media/frame/{lake.tagged}/1/5?dataset={lake.dataset}", timeout=30)
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg"
    with zipfile.ZipFile(lake.v1 / "replay_buffer" / "dataset.zarr.zip") as zf:
        ends = np.frombuffer(zf.read("meta/episode_ends/0"), dtype="<i8")
        local = imagecodecs.jpegxl_decode(zf.read(f"data/camera0_rgb/{int(ends[0]) + 5}.0.0.0"))
    shown = imagecodecs.jpeg8_decode(served.content)
    assert shown.shape == local.shape[-3:]
    assert np.abs(shown.astype(int) - local.reshape(shown.shape).astype(int)).mean() < 4  # JPEG at level 90
    assert watched.errors == []


def test_at_the_tag_the_page_shows_the_tagged_bytes_after_the_branch_moved_on(lake: Lake, watched: Watched) -> None:
    old = (lake.v1 / "video" / "episode_00000.mp4").read_bytes()
    new = (lake.v2 / "video" / "episode_00000.mp4").read_bytes()
    assert old != new
    for ref, commit, body in ((lake.tag, lake.tagged, old), (lake.branch, lake.moved, new)):
        page = watched.open(lake.episode_url(ref))
        assert page.text_content("#commit") == commit
        src = page.get_attribute("#video", "src") or ""
        assert f"/media/video/{commit}/0" in src
        assert lake.get(lake.base + src, timeout=30).content == body
    assert watched.errors == []


@pytest.fixture(scope="module")
def off_loopback(stack: NativeStack) -> Iterator[str]:
    """A second console bound to all addresses (reached here through loopback only)."""
    port = free_port()
    env = {**settings_env(stack.settings), "ROBOLAKE_CONSOLE_PORT": str(port)}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/robolake"), "console", "--host", "0.0.0.0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_off_loopback_every_request_needs_the_lakefs_keys(
    stack: NativeStack, lake: Lake, off_loopback: str, browser: Any, shots: Path
) -> None:
    creds = stack.state.load_credentials()
    assert creds is not None
    keys = (creds.lakefs_access_key_id, creds.lakefs_secret_access_key)
    paths = [
        "/",
        "/versions",
        "/api/stack",
        f"/media/video/{lake.tagged}/0?dataset={lake.dataset}",
        "/static/console.js",
    ]
    for path in paths:
        bare = requests.get(off_loopback + path, timeout=30)
        assert bare.status_code == 401 and bare.headers["WWW-Authenticate"].startswith("Basic"), path
        wrong = requests.get(off_loopback + path, auth=(keys[0], "not-the-secret"), timeout=30)
        assert wrong.status_code == 401, path
        assert requests.get(off_loopback + path, auth=keys, timeout=60).status_code == 200, path
    assert requests.get(f"{off_loopback}/health", timeout=10).status_code == 200
    assert requests.get(f"{lake.base}/api/stack", timeout=60).status_code == 401  # on loopback too

    # In the browser: refused without the keys; with them (basic auth on every request the page
    # makes: script, style, video ranges, frames) the episode page works as on loopback.
    off = Watched(browser)
    with pytest.raises(playwright.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):  # headless: no prompt, refused
        off.page.goto(lake.episode_url(lake.tag).replace(lake.base, off_loopback))
    token = base64.b64encode(f"{keys[0]}:{keys[1]}".encode()).decode()
    off.page.set_extra_http_headers({"Authorization": f"Basic {token}"})
    page = off.open(lake.episode_url(lake.tag).replace(lake.base, off_loopback))
    page.wait_for_function("document.getElementById('video').readyState >= 2", timeout=20_000)
    assert page.evaluate("[...document.querySelectorAll('.strip img.frame')].every(i => i.naturalWidth == 224)")
    page.screenshot(path=str(shots / "episode-off-loopback.png"), full_page=True)
    off.errors = [e for e in off.errors if "401" not in e and "AUTH_CREDENTIALS" not in e]  # the refused load
    assert off.errors == []
    off.page.close()


BAD = [
    ("/episode?ref=no-such-ref&dataset={d}&n=0", 404, "ref 'no-such-ref' is not a branch, tag or commit"),
    ("/api/episodes?ref={tag}&dataset=no/such/dataset", 404, "holds no episodes"),
    ("/api/episode?ref={tag}&dataset={d}&n=99", 404, "episode 99 is not in dataset"),
    ("/api/episode?ref={tag}&dataset={d}&n=minus-one", 400, "n='minus-one' is not a non-negative whole number"),
    ("/api/episodes?ref={tag}&dataset=../../etc", 400, "has a '..' segment"),
    ("/episode?ref={tag}&dataset={d}/../x&n=0", 400, "has a '..' segment"),
    ("/media/video/not-a-commit/0?dataset={d}", 400, "is not a lakeFS commit id"),
    ("/media/video/{commit}/7?dataset={d}", 404, "episode 7 has no video"),
    ("/media/frame/{commit}/0/9999?dataset={d}", 404, "frame 9999 is out of range"),
    ("/api/diff?left=main&right=no-such-ref", 404, "no-such-ref"),
    ("/versions?repo=no-such-repo", 400, "repository 'no-such-repo' does not exist"),
    ("/bench/../x", 404, "no page"),
    ("/no-such-page", 404, "no page '/no-such-page'"),
]


@pytest.mark.parametrize(("path", "status", "says"), BAD)
def test_bad_input_gets_a_clear_answer_never_a_traceback(lake: Lake, path: str, status: int, says: str) -> None:
    url = lake.base + path.format(d=lake.dataset, tag=lake.tag, commit=lake.tagged)
    answer = lake.get(url, timeout=30)
    assert answer.status_code == status, answer.text[:500]
    text = answer.json()["error"] if "json" in answer.headers["Content-Type"] else answer.text
    assert says in html.unescape(text) and "Traceback" not in answer.text


def test_the_jobs_page_shows_a_finished_job_a_running_one_and_one_that_stopped_reporting(
    stack: NativeStack, lake: Lake, watched: Watched, shots: Path
) -> None:
    from robolake.processing.board import JobBoard, lake_writer
    from robolake.processing.jobs import TaskProgress

    # A real job, run as a user runs it: its record ends "done", with its commit.
    out = f"{lake.branch}-jobs"
    with LakeFSClient.from_settings(stack.settings) as client:
        client.create_branch(REPO, out, lake.branch)
    job = [str(ROOT / ".venv/bin/robolake"), "process", "transcode", "--ref", lake.branch, "--dataset", lake.dataset,
           "--to-branch", out, "--codec", "h264", "--size", "64x48", "--single-process", "--json"]  # fmt: skip
    done = subprocess.run(
        job, env=settings_env(stack.settings), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    commit = json.loads(done.stdout)["commit_id"]
    # A job still running here, and one whose driver stopped reporting a minute ago.
    writer = lake_writer(stack.settings)
    running = JobBoard(
        "stats", {"repo": REPO, "ref": lake.tag, "dataset": "rb/"}, writer, status=print, min_interval_s=0
    )
    running.start()
    running.progress(TaskProgress(1, 4, 30, 2.0))
    gone = JobBoard("lerobot", {"repo": REPO, "ref": "main", "dataset": "x/"}, writer, status=print,
                    clock=lambda: time.time() - 60)  # fmt: skip
    writer(gone.key, json.dumps(gone.record).encode())  # its last report, a minute old, says running
    try:
        page = watched.open(f"{lake.base}/jobs")
        rows = {row.split("\t")[0]: row for row in page.locator("table.jobs tbody tr").all_inner_texts()}
        finished = next(r for r in rows.values() if commit[:12] in r)
        assert "transcode" in finished and "done" in finished and "2 / 2" in finished
        assert page.locator(f"table.jobs a[href*='{commit}']").count() == 1  # to the versions page
        assert any("stats" in r and "1 / 4" in r and "running" in r for r in rows.values()), rows
        assert any("lerobot" in r and "no report for" in r and "driver stopped" in r for r in rows.values()), rows
        assert page.locator("#refreshing").count() == 1  # the page follows the running job
        page.screenshot(path=str(shots / "jobs.png"), full_page=True)
        doc = lake.get(f"{lake.base}/api/jobs", timeout=30).json()
        assert {j["id"] for j in doc["jobs"]} >= {running.record["id"], gone.record["id"]}
        assert watched.errors == []
    finally:
        running.fail("interrupted", "the test ended")
        with LakeFSClient.from_settings(stack.settings) as client:
            client.delete_branch(REPO, out)
