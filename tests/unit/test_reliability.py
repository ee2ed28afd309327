"""The reliability campaign's pure parts: the verdict rule, answer parsing, the plan, the table."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from robolake.reliability import faults
from robolake.reliability.generated import generated_cases
from robolake.reliability.hostile import Target, listed_cases
from robolake.reliability.load import _problems, close_wait_sockets
from robolake.reliability.security import check_process_lists
from robolake.reliability.table import (
    PROFILES,
    CaseOutcome,
    FaultOutcome,
    LoadFigures,
    MemoryFigures,
    Report,
    as_json,
    render_markdown,
    summary,
)
from robolake.reliability.wire import Answer, parse, verdict

OK = Answer(200, "a" * 64, 10)
T1 = Target("http://127.0.0.1:9000", "key", "secret")
T2 = Target("http://127.0.0.1:9001", "key", "secret")


def test_parse_reads_status_and_body_by_length_and_chunks() -> None:
    plain = parse(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\n\r\nabcdef")
    chunked = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert (plain.status, plain.body_bytes) == (206, 3)
    assert (chunked.status, chunked.body_bytes) == (200, 3)
    assert plain.body_sha256 == chunked.body_sha256
    assert parse(b"", timed_out=True).label == "timeout"
    assert parse(b"garbage").label == "closed"


def test_verdict_names_crash_hang_5xx_and_bytes_minio_refuses() -> None:
    assert verdict(OK, OK, alive=True) == ""
    assert "crash" in verdict(OK, OK, alive=False)
    assert "hang" in verdict(Answer(0, timed_out=True), Answer(400), alive=True)
    assert verdict(Answer(0, timed_out=True), Answer(0, timed_out=True), alive=True) == ""
    assert "503" in verdict(Answer(503), Answer(400), alive=True)
    assert verdict(Answer(503), Answer(503), alive=True) == ""
    assert "refuses" in verdict(OK, Answer(403), alive=True)
    assert "other bytes" in verdict(OK, Answer(200, "b" * 64, 10), alive=True)
    assert verdict(Answer(403), OK, alive=True) == ""  # refusing more than MinIO is allowed
    assert "accepted" in verdict(Answer(200), None, alive=True, expect_refusal=True)
    assert verdict(Answer(400), None, alive=True, expect_refusal=True) == ""


def test_listed_cases_cover_the_issue_and_sign_for_each_host() -> None:
    cases = listed_cases("bkt", "p/a.bin")
    groups = {c.group for c in cases}
    assert groups == {"request line and headers", "SigV4", "ranges", "keys", "batch GET"}
    expired = next(c for c in cases if c.name.startswith("expired"))
    one, two = expired.build(T1), expired.build(T2)
    assert b"Host: 127.0.0.1:9000\r\n" in one and b"Host: 127.0.0.1:9001\r\n" in two
    assert one.split(b"Signature=")[1][:64] != two.split(b"Signature=")[1][:64]


def test_generated_cases_are_a_function_of_the_seed() -> None:
    first = [(c.name, c.build(T1)) for c in generated_cases("bkt", "p/a.bin", 40, seed=3)]
    again = [(c.name, c.build(T1)) for c in generated_cases("bkt", "p/a.bin", 40, seed=3)]
    other = [c.name for c in generated_cases("bkt", "p/a.bin", 40, seed=4)]
    assert [n for n, _ in first] == [n for n, _ in again] and [n for n, _ in first] != other
    flips = [data for name, data in first if name.startswith("#3")]
    assert all(b"\r\nHost: 127.0.0.1:9000\r\n" in data for data in flips)  # the Host line is never changed


def test_the_plan_runs_lock_free_faults_first_and_covers_every_component() -> None:
    for profile in PROFILES.values():
        plan = faults.plan(profile)
        assert {f.component for f in plan} == {"minio-1", "minio-2", "minio-3", "accelerator", "hooks", "lakefs"}
        assert any(f.how == "stop" for f in plan) and any(f.how == "readonly" for f in plan) == faults.can_mount()
        locked = [
            i
            for i, f in enumerate(plan)
            if f.how == "kill" and f.upload_via == "accelerator" and f.component.startswith("minio")
        ]
        assert locked and min(locked) > max(i for i, f in enumerate(plan) if i not in locked)
        assert all(f.upload_via != f.component for f in plan if f.component.startswith("minio"))
    assert len(faults.plan(PROFILES["small"])) == 7 + faults.can_mount() and PROFILES["full"].objects >= 2000


def test_the_table_adds_up_and_names_what_went_wrong() -> None:
    good = FaultOutcome(fault="kill -9 lakefs", path="accelerator", objects=10, acknowledged=12)
    bad = FaultOutcome(fault="kill -9 minio-2", path="accelerator", objects=10, acknowledged=8, lost=1)
    bad.problems.append("1 acknowledged object(s) lost")
    report = Report(
        run_id="r1",
        profile="small",
        faults=[good, bad],
        cases=[
            CaseOutcome(group="keys", case="NUL", accelerator="400", minio="400"),
            CaseOutcome(group="keys", case="dot", accelerator="200", minio="403", mishandled=True, why="served"),
        ],
        memory=MemoryFigures(samples=3, peak_mib=100.0, budget_mib=480.0),
    )
    s = summary(report)
    assert (s["faults_injected"], s["faults_survived"], s["acknowledged_writes"], s["lost_writes"]) == (2, 1, 20, 1)
    assert (s["bad_inputs_tried"], s["bad_inputs_mishandled"]) == (2, 1)
    md = render_markdown(report)
    assert "| 2 / 1 | 20 / 1 | 2 / 1 | not run | 100 / 480 MiB |" in md
    assert "NO: 1 acknowledged object(s) lost" in md and "| keys | dot | 200 | 403 | served |" in md
    doc = json.loads(as_json(report))
    assert doc["summary"] == s and [f["survived"] for f in doc["faults"]] == [True, False]


def test_a_connection_whose_client_left_is_counted_as_left_open() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        assert close_wait_sockets(port) == 0
        client.close()
        deadline = time.monotonic() + 5
        while close_wait_sockets(port) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert close_wait_sockets(port) == 1
        accepted.close()
        assert close_wait_sockets(port) == 0


def test_load_problems_name_wrong_bytes_errors_and_leaks() -> None:
    def figures(**changes: int) -> LoadFigures:
        base = dict(ops=1000, errors=0, wrong=0, left_open=0)
        base.update(changes)
        return LoadFigures(
            threads=8, probes=[(4, 90.0), (8, 100.0)], seconds=10, ops_per_s=100.0, p99_ms=5.0,
            slow_clients=10, slow_closed_by_server=0, fds_before=20, fds_after=30, **base,
        )  # fmt: skip

    assert _problems(figures()) == []
    assert "other bytes" in _problems(figures(wrong=1))[0]
    assert "failed" in _problems(figures(errors=50))[0]
    assert _problems(figures(errors=5)) == []  # under 1%
    assert "CLOSE-WAIT" in _problems(figures(left_open=3))[0]


def test_a_secret_on_a_command_line_is_found_and_not_repeated() -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", secret])
    try:
        # Until its exec, the child shows the parent's command line: wait for its own.
        cmdline = Path(f"/proc/{holder.pid}/cmdline")
        deadline = time.monotonic() + 10
        while secret.encode() not in cmdline.read_bytes():
            assert time.monotonic() < deadline, "the child never showed its command line"
            time.sleep(0.01)
        found = check_process_lists({"test secret": secret})
    finally:
        holder.kill()
        holder.wait()
    assert found.mishandled and f"pid {holder.pid}" in found.why and secret not in found.why
    assert not check_process_lists({"test secret": "never-on-any-command-line-" + uuid.uuid4().hex}).mishandled
