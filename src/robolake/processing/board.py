"""The job board: each run of a processing job keeps one record in the lake, for the console.

    s3://umi-experiments/jobs/<YYYYmmddTHHMMSSZ>-<job>-<8 hex>.json
    {"id", "job", "state": running|done|failed|interrupted, "tasks_done", "tasks_total", "frames",
     "frames_per_s", "started_at", "updated_at", "heartbeat_s", "source": {ref, dataset},
     "branch", "commit_id", "engine", "dashboard", "error", "host", "pid"}

The record is in the lake, not in the state folder, because the driver and the console need not
run on one machine (a driver beside a Dask cluster, a console on a laptop). While the job runs,
the driver writes it on every task finished (at most every `min_interval_s`) and every
`heartbeat_s` without news, so a driver killed with SIGKILL shows as a record that stopped
reporting (`stale`). Writing it never stops the job: a failed write is said once and dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from robolake.config import Settings
from robolake.errors import RobolakeError
from robolake.processing.jobs import DASHBOARD_SAYS, RUNNING_ON_SAYS, JobResult, StatusFn, TaskProgress
from robolake.storage.boto import boto3_client, boto_errors
from robolake.storage.s3 import S3Target

JOBS_BUCKET, JOBS_PREFIX = "umi-experiments", "jobs/"
HEARTBEAT_S = 5.0
STALE_AFTER_HEARTBEATS = 3  # a running record older than this many heartbeats: its driver stopped
Writer = Callable[[str, bytes], None]


def jobs_target(settings: Settings) -> S3Target:
    """MinIO node 1 with the stack's root credentials (as benchmark results are written)."""
    return S3Target.from_settings(settings, settings.minio_endpoints[0])


def lake_writer(settings: Settings) -> Writer:
    target = jobs_target(settings)
    client = boto3_client(target, max_pool_connections=2, max_attempts=2, read_timeout_s=10.0)

    def write(key: str, body: bytes) -> None:
        with boto_errors("PUT", JOBS_BUCKET, key, target):
            client.put_object(Bucket=JOBS_BUCKET, Key=key, Body=body, ContentType="application/json")

    return write


def new_id(job: str, now: float | None = None) -> str:
    stamp = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{job}-{uuid.uuid4().hex[:8]}"


class JobBoard:
    """One job's record, written as the job goes (thread-safe; `clock` and `writer` may stand in)."""

    def __init__(
        self,
        job: str,
        source: Mapping[str, Any],
        writer: Writer,
        *,
        status: StatusFn,
        clock: Callable[[], float] = time.time,
        min_interval_s: float = 1.0,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.writer, self.status, self.clock = writer, status, clock
        self.min_interval_s, self.heartbeat_s = min_interval_s, heartbeat_s
        now = clock()
        self.record: dict[str, Any] = {
            "id": new_id(job, now),
            "job": job,
            "state": "running",
            "tasks_done": 0,
            "tasks_total": None,
            "frames": 0,
            "frames_per_s": 0.0,
            "started_at": now,
            "updated_at": now,
            "heartbeat_s": heartbeat_s,
            "source": dict(source),
            "branch": source.get("to_branch"),
            "commit_id": None,
            "engine": None,
            "dashboard": None,
            "error": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        self.key = f"{JOBS_PREFIX}{self.record['id']}.json"
        self._lock = threading.Lock()
        self._written_at = 0.0
        self._broken = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._beat is not None

    def start(self) -> None:
        """Post the record and keep it fresh (on the first report: a run refused before its tasks
        start, e.g. for an unknown ref, is not on the board)."""
        if self._beat is not None:
            return
        self._write(force=True)
        self._beat = threading.Thread(target=self._heartbeat, name="robolake-job-board", daemon=True)
        self._beat.start()

    def progress(self, report: TaskProgress) -> None:
        self.start()
        with self._lock:
            first = self.record["tasks_total"] != report.total  # the total is news: written at once
            self.record.update(
                tasks_done=report.done,
                tasks_total=report.total,
                frames=report.frames,
                frames_per_s=round(report.frames_per_s, 2),
            )
        self._write(force=first or report.done == report.total)

    def note(self, message: str) -> None:
        """A status line of the job (run_tasks'): the engine and its dashboard link go in the record
        (written with the next report)."""
        with self._lock:
            if message.startswith(DASHBOARD_SAYS):
                self.record["dashboard"] = message.removeprefix(DASHBOARD_SAYS)
            elif RUNNING_ON_SAYS in message:
                self.record["engine"] = message.split(RUNNING_ON_SAYS, 1)[1]

    def finish(self, result: JobResult) -> None:
        self.start()
        with self._lock:
            self.record.update(
                state="done",
                commit_id=result.commit_id or None,
                branch=result.branch or self.record["branch"],
                tasks_total=result.tasks_total,
                tasks_done=result.tasks_total,
                frames=result.frames,
                frames_per_s=round(result.frames_per_s, 2),
                engine=result.engine,
                dashboard=result.dashboard,
                up_to_date=result.up_to_date,
            )
        self._end()

    def fail(self, state: str, error: str) -> None:
        """End a posted record as `state` (failed, interrupted); one never posted stays off the board."""
        if not self.started:
            return
        with self._lock:
            self.record.update(state=state, error=error[:2000])
        self._end()

    def _end(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=self.heartbeat_s + 15)
        self._write(force=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if self.clock() - self._written_at >= self.heartbeat_s:
                self._write(force=True)

    def _write(self, *, force: bool) -> None:
        with self._lock:
            now = self.clock()
            if self._broken or (not force and now - self._written_at < self.min_interval_s):
                return
            self.record["updated_at"] = now
            self._written_at = now
            body = json.dumps(self.record, sort_keys=True).encode()
            try:
                self.writer(self.key, body)
            except (RobolakeError, OSError) as exc:
                self._broken = True
                self.status(f"the job's progress is not shown in the console: {exc}")


@contextlib.contextmanager
def posted(job: str, source: Mapping[str, Any], writer: Writer, *, status: StatusFn) -> Iterator[JobBoard]:
    """A board for one run of `job`, posted on its first report; closed as failed (or interrupted)
    when the block raises, or when it ends without `finish`."""
    board = JobBoard(job, source, writer, status=status)
    try:
        yield board
    except KeyboardInterrupt:
        board.fail("interrupted", "stopped by the user (Ctrl-C)")
        raise
    except BaseException as exc:
        board.fail("failed", str(exc) or type(exc).__name__)
        raise
    if board.record["state"] == "running":
        board.fail("failed", "the job ended without a result")


def is_stale(record: Mapping[str, Any], now: float) -> bool:
    """A running record whose driver stopped reporting (killed, or its machine gone)."""
    if record.get("state") != "running":
        return False
    beat = float(record.get("heartbeat_s") or HEARTBEAT_S)
    return now - float(record.get("updated_at") or 0) > STALE_AFTER_HEARTBEATS * beat


@dataclasses.dataclass(frozen=True)
class Posted:
    """What the console shows of a job record."""

    record: dict[str, Any]
    stale: bool


def read_board(settings: Settings, limit: int = 20) -> list[Posted]:
    """The newest `limit` job records (ids sort by start time), newest first."""
    target = jobs_target(settings)
    client = boto3_client(target, max_pool_connections=4, read_timeout_s=10.0)
    keys: list[str] = []
    with boto_errors("LIST", JOBS_BUCKET, JOBS_PREFIX, target):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=JOBS_BUCKET, Prefix=JOBS_PREFIX):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    now = time.time()
    out = []
    for key in sorted(keys, reverse=True)[:limit]:
        with boto_errors("GET", JOBS_BUCKET, key, target):
            body = client.get_object(Bucket=JOBS_BUCKET, Key=key)["Body"].read()
        try:
            record = json.loads(body)
        except ValueError:
            continue  # not one of ours
        if isinstance(record, dict):
            out.append(Posted(record, is_stale(record, now)))
    return out
