"""`robolake reliability --profile small` against the session stack, as CI runs it.

The campaign kills and freezes the stack's processes; the test brings the stack back up in
any case, so the tests after it find it healthy.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from robolake.reliability.faults import can_mount
from robolake.reliability.load import close_wait_sockets
from robolake.reliability.wire import host_port
from robolake.stack.native import NativeStack
from tests.e2e.test_bad_input import ROBOLAKE
from tests.stackutil import settings_env

pytestmark = pytest.mark.e2e


def test_small_profile_loses_no_write_and_mishandles_no_input(stack: NativeStack, client: Any, tmp_path: Path) -> None:
    try:
        done = subprocess.run(
            [ROBOLAKE, "reliability", "--profile", "small", "--json", "--out", str(tmp_path)],
            env=settings_env(stack.settings),
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        head = json.loads(done.stdout)
        key = f"results/reliability/{head['run_id']}/results.json"
        doc = json.loads(client.get_object(Bucket="umi-experiments", Key=key)["Body"].read())
        s = doc["summary"]
        assert s == head["summary"]
        faults = 7 + can_mount()  # the read-only drive needs root
        assert s["faults_injected"] == faults and s["acknowledged_writes"] >= faults * 400
        lost = [f"{f['fault']}: {f['problems']}" for f in doc["faults"] if not f["survived"]]
        assert s["lost_writes"] == 0 and lost == [], "\n".join(lost)
        assert s["faults_survived"] == s["faults_injected"]
        mishandled = [f"{c['group']} / {c['case']}: {c['why']}" for c in doc["cases"] if c["mishandled"]]
        assert s["bad_inputs_tried"] >= 100 and mishandled == [], "\n".join(mishandled)
        assert s["memory_peak_mib"] is not None and s["memory_peak_mib"] <= s["memory_budget_mib"]
        assert s["load_ops_per_s"] > 0 and s["load_problems"] == [], s["load_problems"]
        assert doc["load"]["left_open"] == 0 and doc["load"]["wrong"] == 0
        probes = doc["load"]["probes"]  # the load was held at the measured capacity
        assert len(probes) >= 2 and doc["load"]["threads"] == max(probes, key=lambda p: p[1])[0]
        assert done.returncode == 0, done.stderr[-2000:]
        md = (tmp_path / head["run_id"] / "results.md").read_text()
        assert "| faults injected / survived |" in md
    finally:
        stack.up()
    assert stack.status().healthy


def test_clients_that_leave_mid_head_leave_no_connection_open(stack: NativeStack) -> None:
    """The load part's leak check, on its own: 50 clients send half a request head, then close."""
    s = stack.settings
    for _ in range(50):
        with socket.create_connection(host_port(s.accelerator_endpoint), timeout=5) as sock:
            sock.sendall(b"GET /robolake-reliability/k HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
    deadline = time.monotonic() + 5
    while close_wait_sockets(s.accelerator_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert close_wait_sockets(s.accelerator_port) == 0
