"""The UMI validation hook without a server: episode JSON checks, event parsing, the action file,
which objects an event selects (a fake lakeFS client), and the HTTP app's answers."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from robolake.errors import ConfigError
from robolake.umi import generate_dataset
from robolake.versioning.client import DiffEntry, HookRun, LakeFSClient
from robolake.versioning.errors import Call, PreconditionFailedError
from robolake.versioning.hooks import (
    ACTION_PATH,
    HOOK_TOKEN_ENV,
    REPLY_PREFIX,
    HookEvent,
    ObjectRejected,
    ValidationBudgetExceeded,
    ValidationLimits,
    _reply_in,
    action_yaml,
    check_gripper_json,
    check_pose_json,
    classify,
    explain_hook_failure,
    validate_event,
    validation_hook_url,
)
from robolake.versioning.hooks_server import HooksConfig, _is_allowed, hooks_app, parse_allowed


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The pose and gripper documents of one generated episode."""
    out = tmp_path_factory.mktemp("umi")
    generate_dataset(out, profile="tiny", seed=1, episodes=1)
    return {kind: json.loads((out / kind / "episode_00000.json").read_bytes()) for kind in ("pose", "gripper")}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# ---- episode JSON --------------------------------------------------------------------------------


def test_generated_pose_and_gripper_files_pass(episode: dict[str, Any]) -> None:
    check_pose_json("p/pose/episode_00000.json", dumps(episode["pose"]))
    check_gripper_json("p/gripper/episode_00000.json", dumps(episode["gripper"]))


def test_ingested_per_robot_layout_passes_and_is_checked_per_robot() -> None:
    ts = [0.0, 0.0167, 0.0334]
    pose = {
        "timestamps_s": ts,
        "frame_count": 3,
        "robots": {
            "robot0": {
                "eef_position_m": [[0.1, 0.2, 0.3]] * 3,
                "eef_rot_axis_angle": [[0.0, 0.1, 0.2]] * 3,
                "demo_start_pose": [0, 0, 0, 0, 0, 0],
            },
        },
    }
    gripper: dict[str, Any] = {"timestamps_s": ts, "robots": {"robot0": {"width_m": [0.05, 0.06, 0.07]}}}
    check_pose_json("pose/cup/episode_00000.json", dumps(pose))
    check_gripper_json("gripper/cup/episode_00000.json", dumps(gripper))
    gripper["robots"]["robot1"] = {"width_m": [0.05, 0.3, 0.07]}
    with pytest.raises(ObjectRejected, match=r"robots\.robot1\.width_m\[1\] = 0\.3 m is outside 0\.0\.\.0\.2 m"):
        check_gripper_json("gripper/cup/episode_00000.json", dumps(gripper))


def _pose_with(episode: dict[str, Any], **changes: Any) -> bytes:
    doc = copy.deepcopy(episode["pose"])
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value(doc) if callable(value) else value
    return dumps(doc)


def _set(key: str, index: tuple[int, ...], value: Any) -> Any:
    def change(doc: dict[str, Any]) -> Any:
        series = doc[key]
        target = series
        for i in index[:-1]:
            target = target[i]
        target[index[-1]] = value
        return series

    return change


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"timestamps_s": None}, "timestamps_s is missing"),
        ({"timestamps_s": []}, "timestamps_s is empty"),
        ({"timestamps_s": _set("timestamps_s", (5,), 0.0)}, r"timestamps_s\[5\] = 0\.0 does not increase"),
        (
            {"timestamps_s": _set("timestamps_s", (3,), "0.05")},
            r"timestamps_s\[3\] is a string \('0\.05'\), expected a number",
        ),
        ({"timestamps_s": _set("timestamps_s", (2,), True)}, r"timestamps_s\[2\] is a boolean \(True\)"),
        ({"frame_count": 3}, r"frame_count is 3 but timestamps_s has \d+ entries"),
        ({"eef_position_m": None}, "eef_position_m is missing"),
        ({"eef_position_m": lambda d: d["eef_position_m"][:-1]}, r"eef_position_m has \d+ entries but timestamps_s"),
        (
            {"eef_position_m": _set("eef_position_m", (4, 1), math.nan)},
            r"eef_position_m\[4\]\[1\] is nan: every number",
        ),
        (
            {"eef_rot_axis_angle": _set("eef_rot_axis_angle", (0,), [1.0, 2.0])},
            r"eef_rot_axis_angle\[0\] is 2 numbers, expected 3 numbers",
        ),
        (
            {"eef_quaternion_xyzw": _set("eef_quaternion_xyzw", (7, 3), math.inf)},
            r"eef_quaternion_xyzw\[7\]\[3\] is inf",
        ),
        (
            {"joint_positions_rad": _set("joint_positions_rad", (9,), [0.0] * 5)},
            r"joint_positions_rad\[9\] is 5 numbers, expected 6 numbers",
        ),
        ({"eef_position_m": {"x": 1}}, "eef_position_m is an object, expected an array"),
    ],
)
def test_broken_pose_files_are_rejected_naming_the_field(
    episode: dict[str, Any],
    changes: dict[str, Any],
    problem: str,
) -> None:
    with pytest.raises(ObjectRejected, match=problem) as info:
        check_pose_json("umi/cup/pose/episode_00000.json", _pose_with(episode, **changes))
    assert info.value.path == "umi/cup/pose/episode_00000.json"
    assert str(info.value).startswith("umi/cup/pose/episode_00000.json: ")


def test_truncated_and_non_json_pose_files_are_rejected(episode: dict[str, Any]) -> None:
    body = dumps(episode["pose"])
    with pytest.raises(ObjectRejected, match=r"is not valid JSON \(.*\): truncated or corrupt"):
        check_pose_json("pose/episode_00000.json", body[: len(body) // 2])
    with pytest.raises(ObjectRejected, match="is not UTF-8 text"):
        check_pose_json("pose/episode_00000.json", b"\xff\xfe" + body)
    with pytest.raises(ObjectRejected, match="holds an array, expected a JSON object"):
        check_pose_json("pose/episode_00000.json", b"[1, 2]")


@pytest.mark.parametrize(
    ("width", "ok"), [(0.0, True), (0.2, True), (0.085, True), (-0.001, False), (0.2001, False), (85.0, False)]
)
def test_gripper_width_must_lie_within_0_and_0_2_m(episode: dict[str, Any], width: float, ok: bool) -> None:
    doc = copy.deepcopy(episode["gripper"])
    doc["width_m"][10] = width
    if ok:
        check_gripper_json("gripper/episode_00000.json", dumps(doc))
    else:
        with pytest.raises(ObjectRejected, match=rf"width_m\[10\] = {width!r} m is outside 0\.0\.\.0\.2 m"):
            check_gripper_json("gripper/episode_00000.json", dumps(doc))


def test_gripper_series_lengths_and_numbers(episode: dict[str, Any]) -> None:
    doc = copy.deepcopy(episode["gripper"])
    doc["force_n"] = doc["force_n"][:-2]
    with pytest.raises(ObjectRejected, match=r"force_n has \d+ entries but timestamps_s"):
        check_gripper_json("gripper/episode_00000.json", dumps(doc))
    doc = copy.deepcopy(episode["gripper"])
    doc["width_m"][0] = None
    with pytest.raises(ObjectRejected, match=r"width_m\[0\] is null, expected a number"):
        check_gripper_json("gripper/episode_00000.json", dumps(doc))
    del doc["width_m"]
    with pytest.raises(ObjectRejected, match="width_m is missing"):
        check_gripper_json("gripper/episode_00000.json", dumps(doc))


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("replay_buffer/dataset.zarr.zip", "replay_buffer"),
        ("umi/cup/video/episode_00003.MP4", "video"),
        ("pose/episode_00001.json", "pose"),
        ("umi/raw/pose/cup/episode_00001.json", "pose"),
        ("x/gripper/episode_00012.json", "gripper"),
        ("gripper/pose/episode_00012.json", "pose"),
        ("pose/manifest.json", None),
        ("episode_00001.json", None),
        ("configs/experiment_000.yaml", None),
        (ACTION_PATH, None),
    ],
)
def test_classify(path: str, kind: str | None) -> None:
    assert classify(path) == kind


# ---- event, action file, lakeFS's run log -------------------------------------------------------


def test_event_parsing_names_what_is_wrong() -> None:
    event = HookEvent.from_json(
        {
            "event_type": "pre-merge",
            "event_time": "2024-01-01T00:00:00Z",
            "repository_id": "r",
            "branch_id": "main",
            "source_ref": "abc",
            "commit_id": "def",
            "commit_metadata": {"a": "b"},
            "merge_source": "dev",
        }
    )
    assert (event.event_type, event.branch_id, event.source_ref, event.merge_source) == (
        "pre-merge",
        "main",
        "abc",
        "dev",
    )
    with pytest.raises(ValueError, match="no 'source_ref'"):
        HookEvent.from_json({"event_type": "pre-commit", "repository_id": "r", "branch_id": "main"})
    with pytest.raises(ValueError, match="'branch_id' is 3"):
        HookEvent.from_json({"event_type": "pre-commit", "repository_id": "r", "branch_id": 3, "source_ref": "x"})
    with pytest.raises(ValueError, match="JSON list"):
        HookEvent.from_json([])


def test_action_file_is_stable_and_guards_the_branch_on_both_events() -> None:
    url = validation_hook_url("http://127.0.0.1:9020/", "tok/en+")
    assert url == "http://127.0.0.1:9020/lakefs/validate-umi?token=tok%2Fen%2B"
    body = action_yaml("main", url, "90s")
    assert body == action_yaml("main", url, "90s")
    action = yaml.safe_load(body)
    assert action["on"] == {"pre-commit": {"branches": ["main"]}, "pre-merge": {"branches": ["main"]}}
    (hook,) = action["hooks"]
    assert hook["type"] == "webhook" and hook["properties"] == {"url": url, "timeout": "90s"}
    assert action_yaml("other", url) != body
    assert yaml.safe_load(action_yaml("main", url, "1m30s"))["hooks"][0]["properties"]["timeout"] == "1m30s"
    with pytest.raises(ConfigError, match="'2 minutes' is not a Go duration"):
        action_yaml("main", url, "2 minutes")


def test_the_stacks_action_file_names_the_token_only_by_lakefs_environment() -> None:
    url = validation_hook_url("http://127.0.0.1:9020")
    assert url == "http://127.0.0.1:9020/lakefs/validate-umi"
    (hook,) = yaml.safe_load(action_yaml("main", url))["hooks"]
    assert hook["properties"] == {
        "url": url,
        "timeout": "2m",
        "headers": {"Authorization": "Bearer {{ ENV.LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN }}"},
    }
    assert HOOK_TOKEN_ENV == "LAKEFSACTION_ROBOLAKE_HOOKS_TOKEN"  # lakeFS's actions.env.prefix


def test_reply_is_read_from_the_response_part_of_the_run_log() -> None:
    output = (
        "Request:\nPOST http://127.0.0.1:9020/lakefs/validate-umi?token=x\nRequest Body:\n"
        '{"commit_message":"robolake-validate-umi: fake"}\n\nRequest duration: 3ms\n\nResponse:\n'
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n"
        f"{REPLY_PREFIX}a/pose/episode_00001.json: timestamps_s is missing\n\n"
        "Error: action failed: webhook request failed (status code: 400)\n"
    )
    assert _reply_in(output) == "a/pose/episode_00001.json: timestamps_s is missing"
    assert _reply_in("Request:\nPOST x\nError: connection refused\n") == ""


class FakeLakeFS:
    """Just the calls validate_event and explain_hook_failure make, recorded."""

    endpoint = "http://lakefs.invalid"

    def __init__(self, objects: dict[str, bytes], diff_type: str = "added") -> None:
        self.objects = objects
        self.diff_type = diff_type
        self.calls: list[tuple[str, ...]] = []
        self.output = f"Response:\nHTTP/1.1 400 Bad Request\r\n\r\n{REPLY_PREFIX}it broke\n"

    def diff(self, repo: str, left: str, right: str) -> Iterator[DiffEntry]:
        self.calls.append(("diff", left, right))
        return self._entries()

    def uncommitted(self, repo: str, branch: str) -> Iterator[DiffEntry]:
        self.calls.append(("uncommitted", branch))
        return self._entries()

    def _entries(self) -> Iterator[DiffEntry]:
        for path, body in self.objects.items():
            yield DiffEntry(self.diff_type, path, "object", len(body))
        yield DiffEntry("removed", "gone/pose/episode_00009.json", "object", 10)

    def get_object(self, repo: str, ref: str, path: str) -> bytes:
        self.calls.append(("get", ref, path))
        time.sleep(0.01)
        return self.objects[path]

    def hook_runs(self, repo: str, run_id: str) -> Iterator[HookRun]:
        assert run_id == "run-7"
        yield HookRun("0000_0000", "robolake_validate_umi", "failed")

    def hook_run_output(self, repo: str, run_id: str, hook_run_id: str) -> str:
        assert (run_id, hook_run_id) == ("run-7", "0000_0000")
        return self.output


def _event(kind: str) -> HookEvent:
    return HookEvent(event_type=kind, repository_id="r", branch_id="main", source_ref="c0ffee")


def test_pre_merge_checks_what_the_source_brings_at_the_source_commit(episode: dict[str, Any]) -> None:
    lakefs = FakeLakeFS({"a/pose/episode_00000.json": dumps(episode["pose"]), "a/readme.txt": b"hi"})
    report = validate_event(lakefs, _event("pre-merge"))  # type: ignore[arg-type]
    assert report.ok and report.checked == ("a/pose/episode_00000.json",) and report.skipped == 1
    assert lakefs.calls == [("diff", "main", "c0ffee"), ("get", "c0ffee", "a/pose/episode_00000.json")]


def test_pre_commit_checks_staged_changes_and_reports_every_bad_object(episode: dict[str, Any]) -> None:
    bad = dumps({**episode["gripper"], "timestamps_s": "soon"})
    lakefs = FakeLakeFS({f"g/gripper/episode_0000{i}.json": bad for i in range(3)}, diff_type="changed")
    report = validate_event(lakefs, _event("pre-commit"))  # type: ignore[arg-type]
    assert lakefs.calls[0] == ("uncommitted", "main") and all(c[1] == "main" for c in lakefs.calls[1:])
    assert not report.ok and len(report.rejected) == 3
    assert report.summary() == (
        "g/gripper/episode_00000.json: timestamps_s is a string, expected an array with one "
        "time stamp per frame (also rejected: g/gripper/episode_00001.json, "
        "g/gripper/episode_00002.json)"
    )


def test_size_limit_and_time_budget(episode: dict[str, Any]) -> None:
    body = dumps(episode["pose"])
    lakefs = FakeLakeFS({f"p/pose/episode_0000{i}.json": body for i in range(5)})
    report = validate_event(lakefs, _event("pre-merge"), ValidationLimits(max_json_bytes=len(body) - 1))  # type: ignore[arg-type]
    assert len(report.rejected) == 5 and f"is {len(body)} bytes, more than the" in report.summary()
    with pytest.raises(ValidationBudgetExceeded, match=r"did not finish within 0 s \(1 of 5 UMI objects checked\)"):
        validate_event(
            lakefs,
            _event("pre-merge"),
            ValidationLimits(time_budget_s=0.0),  # type: ignore[arg-type]
            deadline=time.monotonic() + 0.005,
        )


def test_explain_hook_failure_adds_the_hooks_answer() -> None:
    said = (
        "update branch main: pre-merge hook aborted, run id 'run-7': 1 error occurred:\n\t* hook run id "
        "'0000_0000' failed on action 'a' hook 'h': action failed: webhook request failed (status code: 400)"
    )
    exc = PreconditionFailedError(
        "cannot merge: ...", status=412, server_message=said, call=Call("merge 'dev' into 'main'", "r")
    )
    explained = explain_hook_failure(FakeLakeFS({}), "r", exc)  # type: ignore[arg-type]
    assert str(explained) == "cannot merge 'dev' into 'main': the validation hook refused it: it broke"
    lakefs = FakeLakeFS({})
    lakefs.output = (
        'Request:\nPOST x\nError: action failed: Post "http://h:1/lakefs/validate-umi?token=s3cr-t_": refused\n'
    )
    assert str(explain_hook_failure(lakefs, "r", exc)) == (  # type: ignore[arg-type]
        "cannot merge 'dev' into 'main': the validation hook refused it: hook 'robolake_validate_umi' failed: "
        'action failed: Post "http://h:1/lakefs/validate-umi?token=...": refused'
    )
    unrelated = PreconditionFailedError("cannot x", status=412, server_message="Precondition failed")
    assert explain_hook_failure(FakeLakeFS({}), "r", unrelated) is unrelated  # type: ignore[arg-type]


# ---- the HTTP app ----------------------------------------------------------------------------------


def test_loopback_only_unless_networks_are_allowed() -> None:
    assert _is_allowed("127.0.0.1") and _is_allowed("::1") and _is_allowed("::ffff:127.0.0.1")
    assert not _is_allowed("10.0.0.5") and not _is_allowed(None) and not _is_allowed("unix")
    private = parse_allowed(("private",))
    assert _is_allowed("172.18.0.5", private) and _is_allowed("10.0.0.5", private) and _is_allowed("fd00::1", private)
    assert not _is_allowed("8.8.8.8", private) and not _is_allowed("172.32.0.1", private)
    one = parse_allowed(("172.18.0.0/16",))
    assert _is_allowed("172.18.3.4", one) and not _is_allowed("172.19.0.1", one)
    with pytest.raises(ConfigError, match=r"'172\.18\.0\.300/16' is not a network"):
        parse_allowed(("172.18.0.300/16",))


def test_app_answers_one_line_and_demands_the_token(episode: dict[str, Any]) -> None:
    lakefs = FakeLakeFS({"x/pose/episode_00000.json": b'{"timestamps_s": [1, 1]}'})
    app = hooks_app(HooksConfig(token="s3cret"), lakefs)  # type: ignore[arg-type]
    event = {"event_type": "pre-commit", "repository_id": "r", "branch_id": "main", "source_ref": "main"}

    async def scenario() -> list[tuple[int, str]]:
        async with TestClient(TestServer(app)) as http:
            answers = []
            bearer, wrong = {"Authorization": "Bearer s3cret"}, {"Authorization": "Bearer nope"}
            for query, body, headers in [
                ("", event, {}),
                ("?token=nope", event, {}),
                ("?token=s3cret", {"event_type": "x"}, {}),
                ("", {**event, "event_type": "post-commit"}, bearer),
                ("?token=s3cret", event, {}),
                ("", event, wrong),
                ("?token=s3cret", event, wrong),  # a header present is the one that counts
                ("", event, bearer),
            ]:
                response = await http.post(f"/lakefs/validate-umi{query}", json=body, headers=headers)
                answers.append((response.status, await response.text()))
            health = await http.get("/health")
            assert health.status == 200
            return answers

    answers = asyncio.run(scenario())
    assert [status for status, _ in answers] == [401, 401, 400, 400, 400, 401, 401, 400]
    assert answers[7] == answers[4]
    assert all(text.startswith(REPLY_PREFIX) and text.count("\n") == 1 for _, text in answers)
    assert "wrong token" in answers[1][1] and "no 'repository_id'" in answers[2][1]
    assert "'post-commit' events are not validated" in answers[3][1]
    assert answers[4][1] == (
        f"{REPLY_PREFIX}x/pose/episode_00000.json: timestamps_s[1] = 1.0 does not increase "
        "(timestamps_s[0] = 1.0): time stamps must be strictly increasing\n"
    )


def test_app_refuses_to_run_without_a_token() -> None:
    with pytest.raises(ValueError, match="token is empty"):
        hooks_app(HooksConfig(token=""), LakeFSClient("http://127.0.0.1:1", "k", "s"))


def test_internal_errors_answer_500(tmp_path: Path) -> None:
    class Broken(FakeLakeFS):
        def uncommitted(self, repo: str, branch: str) -> Iterator[DiffEntry]:
            raise KeyError("boom")

    app = hooks_app(HooksConfig(token="t", work_dir=tmp_path), Broken({}))  # type: ignore[arg-type]
    event = {"event_type": "pre-commit", "repository_id": "r", "branch_id": "main", "source_ref": "main"}

    async def scenario() -> tuple[int, str]:
        async with TestClient(TestServer(app)) as http:
            response = await http.post("/lakefs/validate-umi?token=t", json=event)
            return response.status, await response.text()

    status, text = asyncio.run(scenario())
    assert status == 500 and text == f"{REPLY_PREFIX}internal error: KeyError: 'boom'; see the hooks server's log\n"
