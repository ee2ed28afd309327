"""robolake.ml's PyTorch loader with real torch, on a replay buffer in the session stack's lakeFS.

torch is not in the test venv: the scripts run in the cached lerobot virtualenv (tests/sidevenv.py,
torch 2.10), with this checkout's src/ on their path and the stack's settings in their arguments.
Two script runs (two processes) read the same commit with the same seed; the first also runs with
no workers, resumes mid-epoch, loads bad states and meets an error raised in a worker; the second
runs the README's torch snippet. The reads go through a probe, a LakeDataset subclass that notes
in each process which samples it was told were coming (``schedule``), which it read, and which
TCP connections to the accelerator the process opened (from /proc): the workers' connections are
the dataset's own. Another map-style dataset (a wrapper) is rebuilt from its pickle in each
worker, its numpy arrays shared.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.ml import LakeDataset, SamplerConfig, make_loader
from robolake.umi.replay_buffer import ReplayBufferWriter, encode_frame
from robolake.versioning import LakeFSClient, NotFoundError
from tests.sidevenv import lerobot_python, run_script
from tests.stackutil import stack_env
from tests.umidata import random_lowdim

pytestmark = pytest.mark.e2e

REPO = "robotics-data"
LENGTHS = (60, 70, 66)  # UMI's windows (action 16 steps, 3 apart) leave 15 + 25 + 21 = 61 samples
IMG = 32  # small frames: the loader is under test, not JPEG XL decoding
SEED, BATCH = 7, 8
ROOT = Path(__file__).resolve().parents[2]

# argv: settings (JSON of ROBOLAKE_* variables), commit, path, output folder, what to run (JSON list).
SCRIPT = r"""
import hashlib, json, os, sys, time
from pathlib import Path
import numpy as np
import torch
from robolake.config import Settings
from robolake.errors import ConfigError, RobolakeError
from robolake.ml import LakeDataset, SamplerConfig, make_loader
from robolake.umi.errors import DatasetFormatError

env, commit, path, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
todo = json.loads(sys.argv[5])
settings = Settings.load(environ=env, env_file=Path(env["ROBOLAKE_ENV_FILE"]))
PORT = settings.accelerator_port


def accelerator_sockets():
    # inodes of the TCP connections this process holds to the accelerator
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[2].rsplit(":", 1)[1], 16) == PORT and f[9] in mine:
                found.add(f[9])
    return found


class Probe(LakeDataset):
    # a LakeDataset that also writes to out/<tag>/<pid>.json what this process was told was coming,
    # what it read, and which connections to the accelerator it opened
    tag, fail_at, pid, logged = "none", None, None, None

    def note(self, **what):
        if (self.pid, self.logged) != (os.getpid(), self.tag):  # a new process, or a new iteration
            self.pid, self.logged = os.getpid(), self.tag
            self.log = {"pid": self.pid, "inherited": sorted(accelerator_sockets()), "opened": [],
                        "scheduled": [], "read": []}
        for key, value in what.items():
            self.log[key] += value
        fresh = accelerator_sockets() - set(self.log["inherited"])
        self.log["opened"] = sorted(set(self.log["opened"]) | fresh)
        (out / self.tag).mkdir(parents=True, exist_ok=True)
        (out / self.tag / f"{self.pid}.json").write_text(json.dumps(self.log))

    def schedule(self, indices):
        self.note(scheduled=[int(i) for i in indices])
        hint = getattr(super(), "schedule", None)
        if hint is not None:
            hint(indices)

    def __getitems__(self, indices):
        self.note()
        if self.fail_at is not None and self.fail_at in indices:
            raise DatasetFormatError(self.found.where, f"frame of sample {self.fail_at} is damaged", "read it again")
        many = getattr(super(), "__getitems__", None)
        samples = many(indices) if many is not None else [LakeDataset.__getitem__(self, i) for i in indices]
        self.note(read=[int(i) for i in indices])
        return samples


class Wrapped:
    # a map-style dataset that is not a LakeDataset: each forked worker gets it rebuilt from its pickle
    def __init__(self, inner):
        self.inner, self.table = inner, np.arange(len(inner))

    def __len__(self):
        return len(self.inner)

    def where(self):
        return {"pid": os.getpid(), "table_at": self.table.__array_interface__["data"][0], "inner": id(self.inner)}

    def __getitem__(self, index):
        (out / "wrapped").mkdir(parents=True, exist_ok=True)
        (out / "wrapped" / f"{os.getpid()}.json").write_text(json.dumps(self.where()))
        return self.inner[index]


def flat(sample, prefix=""):
    for key in sorted(sample):
        value = sample[key]
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{key}.")
        elif key != "index":
            yield f"{prefix}{key}", np.asarray(value)


def digest(sample):
    h = hashlib.sha256()
    for key, array in flat(sample):
        h.update(f"{key}:{array.dtype.str}:{array.shape}".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def rows(batch):
    # per sample of a collated batch: [index, digest of its arrays]
    indices = batch["index"].tolist()
    def row(tree, j):
        return {k: row(v, j) if isinstance(v, dict) else v[j] for k, v in tree.items() if k != "index"}
    return [[i, digest(row(batch, j))] for j, i in enumerate(indices)]


def epochs(loader, probe, tag, count):
    got = []
    for e in range(count):
        probe.tag = f"{tag}-e{loader.epoch}"
        got.append([rows(b) for b in loader])
    return got


config = SamplerConfig.umi(val_ratio=0.0)
ds = LakeDataset.open(settings, commit, path, config, output="policy")
probe = Probe.open(settings, commit, path, config, output="policy")
result = {"n": len(ds), "commit_id": ds.commit_id, "parent": os.getpid(), "seconds": {}}
for job in todo:
    started = time.monotonic()
    if job == "reference":  # every sample read directly, no torch involved
        result["reference"] = [digest(ds[i]) for i in range(len(ds))]
    elif job.startswith("epochs-w"):
        workers = int(job.removeprefix("epochs-w"))
        loader = make_loader(probe, batch_size=8, num_workers=workers, seed=7)
        result[job] = {"len": len(loader), "epochs": epochs(loader, probe, job, 2), "state": loader.state_dict()}
        probe.tag = f"{job}-seed8"
        other = make_loader(probe, batch_size=8, num_workers=workers, seed=8)
        result[job]["seed8"] = rows(next(iter(other)))
    elif job == "wrapped":
        wrapped = Wrapped(LakeDataset.open(settings, commit, path, config, output="policy"))
        result["wrapped"] = {"parent": wrapped.where(), "epoch": [rows(b) for b in make_loader(
            wrapped, batch_size=8, num_workers=2, seed=7)]}
    elif job == "resume":
        loader = make_loader(probe, batch_size=8, num_workers=2, seed=7)
        probe.tag = "resume-before"
        before = []
        for batch in loader:
            before.append(rows(batch))
            if len(before) == 3:
                break
        saved = json.loads(json.dumps(loader.state_dict()))
        again = make_loader(probe, batch_size=8, num_workers=2, seed=7)
        again.load_state_dict(saved)
        probe.tag = "resume-after"
        after = [rows(b) for b in again]
        probe.tag = "resume-next"
        result["resume"] = {"state": saved, "before": before, "after": after,
                            "next_epoch_first": rows(next(iter(again))), "after_state": again.state_dict(),
                            "same_loader_rest": len(list(loader))}
    elif job == "bad-states":
        errors = []
        saved = result["resume"]["state"]
        for kwargs in ({"batch_size": 4, "seed": 7}, {"batch_size": 8, "seed": 9}):
            try:
                make_loader(probe, num_workers=2, **kwargs).load_state_dict(saved)
            except ConfigError as exc:
                errors.append(str(exc))
        try:
            make_loader(probe, batch_size=8, seed=7).load_state_dict({**saved, "batches": 99})
        except ConfigError as exc:
            errors.append(str(exc))
        for kwargs in ({"batch_size": 0}, {"batch_size": 8, "num_workers": -1}, {"batch_size": 8, "seed": -3}):
            try:
                make_loader(probe, **kwargs)
            except ConfigError as exc:
                errors.append(str(exc))
        result["bad_states"] = errors
    elif job == "worker-error":
        failing = Probe.open(settings, commit, path, config, output="policy")
        failing.fail_at = int(result["resume"]["after"][0][0][0])
        try:
            list(make_loader(failing, batch_size=8, num_workers=2, seed=7))
        except RobolakeError as exc:
            result["worker_error"] = [type(exc).__name__, str(exc)]
    elif job == "readme":
        readme = (Path(sys.argv[6]) / "README.md").read_text().split("## Training from the lake", 1)[1]
        snippet = readme.split("```python\n")[2].split("```", 1)[0]
        probe.tag = "readme"
        exec(compile(snippet, "README.md", "exec"), {"ds": probe})
    result["seconds"][job] = round(time.monotonic() - started, 2)
print("RESULT " + json.dumps(result))
"""


@dataclasses.dataclass(frozen=True)
class Lake:
    commit: str
    path: str
    branch: str


def _frames(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMG, 0:IMG]
    base = np.stack([xx * 7, yy * 5, (xx + yy) * 3], -1)
    return [encode_frame(np.clip(base + i + rng.integers(0, 9, base.shape), 0, 255).astype(np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def lake(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """A small replay buffer committed on its own branch; the branch is deleted afterwards."""
    local = tmp_path_factory.mktemp("torchbuf") / "dataset.zarr.zip"
    with ReplayBufferWriter(local, image_size=(IMG, IMG)) as writer:
        for k, episode in enumerate(random_lowdim(LENGTHS, seed=3)):
            writer.add_episode(episode, {"camera0_rgb": _frames(LENGTHS[k], seed=k)})
    branch, path = f"t-torch-{uuid.uuid4().hex[:8]}", "ml/torch/replay_buffer/dataset.zarr.zip"
    with LakeFSClient.from_settings(settings) as client:
        client.create_branch(REPO, branch, "main")
        try:
            body = local.read_bytes()
            client.upload_object(REPO, branch, path, body, md5_hex=hashlib.md5(body).hexdigest())
            yield Lake(commit=client.commit(REPO, branch, "a buffer for the torch loader").id, path=path, branch=branch)
        finally:
            with contextlib.suppress(NotFoundError):
                client.delete_branch(REPO, branch)


def _settings_args(settings: Settings) -> str:
    return json.dumps(stack_env(settings))


@dataclasses.dataclass(frozen=True)
class Run:
    result: dict[str, Any]
    stdout: str
    out: Path

    def logs(self, tag: str) -> list[dict[str, Any]]:
        """What each process did in the iteration `tag`."""
        return [json.loads(p.read_text()) for p in sorted((self.out / tag).glob("*.json"))]


@pytest.fixture(scope="module")
def runs(settings: Settings, lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    python = lerobot_python()
    plans = [
        ["reference", "epochs-w0", "epochs-w2", "resume", "bad-states", "worker-error", "wrapped"],
        ["epochs-w2", "readme"],
    ]
    done, walls = [], []
    for k, todo in enumerate(plans):
        out = tmp_path_factory.mktemp(f"torchrun{k}")
        args = (_settings_args(settings), lake.commit, lake.path, str(out), json.dumps(todo), str(ROOT))
        started = time.monotonic()
        proc = run_script(python, SCRIPT, *args, robolake=True, timeout=600)
        walls.append(round(time.monotonic() - started, 1))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        done.append(Run(json.loads(line.removeprefix("RESULT ")), proc.stdout, out))
    print(f"torch scripts: {walls} s in all; per job: {[r.result['seconds'] for r in done]}", file=sys.stderr)
    return done


def _indices(batches: list[list[list[Any]]]) -> list[int]:
    return [int(i) for batch in batches for i, _ in batch]


def test_the_same_seed_gives_the_same_batches_in_any_process_with_any_worker_count(runs: list[Run]) -> None:
    first, second = runs[0].result, runs[1].result
    n, reference = first["n"], first["reference"]
    assert n == 61 and first["epochs-w0"]["len"] == 8  # 7 batches of 8, then one of 5
    epochs = first["epochs-w0"]["epochs"]
    assert epochs == first["epochs-w2"]["epochs"] == second["epochs-w2"]["epochs"]
    for epoch in epochs:
        assert [len(b) for b in epoch] == [8] * 7 + [5]
        assert sorted(_indices(epoch)) == list(range(n))
        for batch in epoch:  # each row of a batch is the sample its index names, read directly
            assert all(d == reference[i] for i, d in batch)
    assert _indices(epochs[0]) != _indices(epochs[1])  # the next epoch is another permutation
    assert np.array_equal(_indices(epochs[0]), np.random.default_rng([SEED, 0]).permutation(n))  # EpochOrder's
    assert first["epochs-w0"]["seed8"] == first["epochs-w2"]["seed8"] != epochs[0][0]  # the seed decides
    state = first["epochs-w2"]["state"]  # two epochs done: the next one starts
    expected = {"epoch": 2, "batches": 0, "n": n, "seed": SEED, "batch_size": BATCH, "commit_id": first["commit_id"]}
    assert {k: state[k] for k in expected} == expected


def test_two_workers_read_every_sample_exactly_once_each_over_its_own_connections(runs: list[Run]) -> None:
    for run in runs:
        parent = run.result["parent"]
        for epoch in ("e0", "e1"):
            logs = run.logs(f"epochs-w2-{epoch}")
            assert len(logs) == 2 and len({log["pid"] for log in logs} | {parent}) == 3, logs
            read = collections.Counter(i for log in logs for i in log["read"])
            assert sorted(read) == list(range(run.result["n"])) and set(read.values()) == {1}
            for log in logs:
                assert log["scheduled"] == log["read"]  # told in advance, in the order read
                assert log["opened"], f"worker {log['pid']} read over no connection of its own: {log}"
    # with no workers the calling process reads, told the whole epoch first
    alone = runs[0].logs("epochs-w0-e0")
    assert [log["pid"] for log in alone] == [runs[0].result["parent"]]
    assert alone[0]["scheduled"] == alone[0]["read"] == _indices(runs[0].result["epochs-w0"]["epochs"][0])


def test_another_dataset_is_rebuilt_in_each_worker_sharing_its_arrays(runs: list[Run]) -> None:
    wrapped = runs[0].result["wrapped"]
    assert wrapped["epoch"] == runs[0].result["epochs-w0"]["epochs"][0]
    parent, logs = wrapped["parent"], runs[0].logs("wrapped")
    assert len(logs) == 2 and parent["pid"] not in {log["pid"] for log in logs}
    for log in logs:
        assert log["inner"] != parent["inner"]  # a new LakeDataset object, so new connections
        assert log["table_at"] == parent["table_at"]  # the numpy array is the parent's, not a copy


def test_a_state_saved_mid_epoch_resumes_with_exactly_the_remaining_batches(runs: list[Run]) -> None:
    result = runs[0].result
    full, resume = result["epochs-w0"]["epochs"], result["resume"]
    assert resume["state"]["epoch"] == 0 and resume["state"]["batches"] == 3
    assert resume["before"] == full[0][:3] and resume["after"] == full[0][3:]
    assert resume["next_epoch_first"] == full[1][0]
    assert resume["after_state"]["epoch"] == 1 and resume["after_state"]["batches"] == 1
    # the resumed workers were told, and read, only the remaining samples
    rest = _indices(full[0][3:])
    logs = runs[0].logs("resume-after")
    assert sorted(i for log in logs for i in log["read"]) == sorted(rest)
    assert sorted(i for log in logs for i in log["scheduled"]) == sorted(rest)
    # the broken-off loader stays where it was handed out to: its next iteration is the rest too
    assert resume["same_loader_rest"] == 5


def test_bad_states_and_errors_in_workers_are_one_clear_line(runs: list[Run]) -> None:
    result = runs[0].result
    bad = result["bad_states"]
    assert len(bad) == 6 and all("\n" not in line for line in bad)
    assert "saved for another dataset or loader: batch_size 8 (this loader: 4)" in bad[0]
    assert "seed 7 (this loader: 9)" in bad[1]
    assert "batches 99: expected epoch >= 0 and 0 <= batches <= 8" in bad[2]
    assert bad[3:] == [
        "batch_size 0 is not a whole number >= 1",
        "num_workers -1 is not a whole number >= 0 (0: load in this process)",
        "seed -3 is not a whole number >= 0; give one such as 0 or 7",
    ]
    name, message = result["worker_error"]
    assert name == "DatasetFormatError" and "\n" not in message and "Traceback" not in message
    assert message.endswith("is damaged; read it again") and result["commit_id"] in message


def test_the_readme_torch_snippet_runs(runs: list[Run]) -> None:
    epoch0 = runs[1].result["epochs-w2"]["epochs"][0]
    printed = [line for line in runs[1].stdout.splitlines() if line.startswith("[")]
    assert printed == [
        f"{_indices(epoch0[:1])} (8, 2, 3, {IMG}, {IMG})",
        f"{_indices(epoch0[1:2])}",
    ]


def test_without_torch_the_loader_names_the_extra_to_install(settings: Settings, lake: Lake) -> None:
    assert importlib.util.find_spec("torch") is None  # the test venv has no torch: this is a user without it
    ds = LakeDataset.open(settings, lake.commit, lake.path, SamplerConfig.umi(val_ratio=0.0))
    with pytest.raises(ConfigError) as caught:
        make_loader(ds, batch_size=8)
    assert isinstance(caught.value, ImportError)
    assert str(caught.value).endswith("install it with pip install 'robolake[torch]'")
    assert "\n" not in str(caught.value)
