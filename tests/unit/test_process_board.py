"""The job board's record: what a run writes, when, and what a failed write does (no lake here).

That the console shows the records a real job wrote is tests/e2e/test_console.py; that a killed
driver's record stops changing is tests/integration/test_process.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from robolake.errors import ServiceUnavailableError
from robolake.processing.board import JobBoard, is_stale, posted
from robolake.processing.jobs import DASHBOARD_SAYS, RUNNING_ON_SAYS, JobResult, TaskProgress

SOURCE = {"repo": "r", "ref": "main", "dataset": "d/", "to_branch": "out"}


class Lake:
    """Records written, by key; a clock the test moves."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.now = 1_000.0
        self.said: list[str] = []
        self.refuse = False

    def write(self, key: str, body: bytes) -> None:
        if self.refuse:
            raise ServiceUnavailableError("MinIO at 127.0.0.1:1 does not answer")
        self.writes.append((key, json.loads(body)))

    def board(self, **kw: Any) -> JobBoard:
        return JobBoard("replay-buffer", SOURCE, self.write, status=self.said.append, clock=lambda: self.now, **kw)


def result(**kw: Any) -> JobResult:
    base: dict[str, Any] = dict(
        job="replay-buffer", repo="r", ref="main", source_commit="c" * 64, source_path="d/", branch="out",
        output_path="d/processed/", commit_id="f" * 64, up_to_date=False, tasks_total=4, tasks_run=3,
        tasks_reused=1, frames=120, frames_processed=90, task_seconds=3.0, seconds=5.0,
        engine="an embedded Dask cluster", dashboard=None,
    )  # fmt: skip
    return JobResult(**{**base, **kw})


def test_a_run_is_recorded_from_start_to_its_commit() -> None:
    lake = Lake()
    board = lake.board(heartbeat_s=3600)
    board.start()
    assert lake.writes[0][0].startswith("jobs/") and lake.writes[0][0].endswith("-replay-buffer-" + board.key[-13:])
    assert lake.writes[0][1]["state"] == "running" and lake.writes[0][1]["source"] == SOURCE
    board.note(f"running 4{RUNNING_ON_SAYS}an embedded Dask cluster (2 worker processes)")
    board.note(f"{DASHBOARD_SAYS}http://127.0.0.1:8787/status")
    board.progress(TaskProgress(0, 4, 0, 0.0))  # the first report: the total is news, written at once
    assert len(lake.writes) == 2 and lake.writes[-1][1]["tasks_total"] == 4
    lake.now += 0.2
    board.progress(TaskProgress(1, 4, 30, 1.0))  # within a second of the last write: not written
    assert len(lake.writes) == 2
    lake.now += 1.0
    board.progress(TaskProgress(2, 4, 60, 2.0))
    assert lake.writes[-1][1]["tasks_done"] == 2
    assert lake.writes[-1][1]["dashboard"] == "http://127.0.0.1:8787/status"
    assert lake.writes[-1][1]["engine"] == "an embedded Dask cluster (2 worker processes)"
    board.progress(TaskProgress(4, 4, 120, 2.1))  # the last task is always written
    assert lake.writes[-1][1]["tasks_done"] == 4
    board.finish(result())
    last = lake.writes[-1][1]
    assert last["state"] == "done" and last["commit_id"] == "f" * 64 and last["frames_per_s"] == 30.0
    assert {key for key, _ in lake.writes} == {board.key}  # one record, rewritten


@pytest.mark.parametrize(
    ("raised", "state", "says"),
    [
        (KeyboardInterrupt(), "interrupted", "Ctrl-C"),
        (ValueError("ref 'nope' not found in 'r'"), "failed", "ref 'nope' not found"),
    ],
)
def test_a_job_that_raises_is_recorded_as_such(raised: BaseException, state: str, says: str) -> None:
    lake = Lake()
    with pytest.raises(type(raised)), posted("stats", SOURCE, lake.write, status=lake.said.append) as board:
        board.progress(TaskProgress(0, 3, 0, 0.0))
        raise raised
    assert lake.writes[-1][1]["state"] == state and says in lake.writes[-1][1]["error"]


def test_a_block_that_ends_without_a_result_is_not_left_running() -> None:
    lake = Lake()
    with posted("stats", SOURCE, lake.write, status=lake.said.append) as board:
        board.progress(TaskProgress(0, 3, 0, 0.0))
    assert lake.writes[-1][1]["state"] == "failed"


def test_a_run_refused_before_its_tasks_start_is_not_on_the_board() -> None:
    lake = Lake()
    with pytest.raises(ValueError), posted("stats", SOURCE, lake.write, status=lake.said.append):
        raise ValueError("ref 'nope' not found")
    assert lake.writes == []


def test_a_run_with_nothing_to_do_is_posted_when_it_finishes() -> None:
    lake = Lake()
    with posted("stats", SOURCE, lake.write, status=lake.said.append) as board:
        board.finish(result(up_to_date=True, tasks_run=0, tasks_reused=0))
    assert [w[1]["state"] for w in lake.writes] == ["running", "done"] and lake.writes[-1][1]["up_to_date"]


def test_a_lake_that_refuses_the_record_is_said_once_and_the_job_goes_on() -> None:
    lake = Lake()
    lake.refuse = True
    board = lake.board(heartbeat_s=3600)
    board.start()
    for done in range(1, 5):
        lake.now += 2
        board.progress(TaskProgress(done, 4, done, float(done)))
    board.finish(result())
    assert len(lake.said) == 1 and "not shown in the console" in lake.said[0] and "127.0.0.1:1" in lake.said[0]


def test_the_heartbeat_writes_while_no_task_finishes() -> None:
    import time

    lake = Lake()
    board = JobBoard("stats", SOURCE, lake.write, status=lake.said.append, heartbeat_s=0.05)
    board.start()
    time.sleep(0.5)
    board.finish(result())
    assert len(lake.writes) >= 4  # start, beats, the end


def test_a_running_record_is_stale_after_three_missed_heartbeats() -> None:
    record = {"state": "running", "updated_at": 100.0, "heartbeat_s": 5.0}
    assert not is_stale(record, 114.0) and is_stale(record, 116.0)
    assert not is_stale({**record, "state": "done"}, 10_000.0)
