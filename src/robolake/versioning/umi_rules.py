"""What the UMI validation hook checks, file by file; nothing here talks to lakeFS.

    *.zarr.zip                        validate_replay_buffer: zip directory, zarr v2 layout, arrays, frames
    .../pose/.../episode_N.json       time stamps finite and increasing; each series one finite row per stamp
    .../gripper/.../episode_N.json    the same, and width_m within 0..0.2 m
    *.mp4                             H.264, at least one frame, every frame the header lists is in the file

Every check raises ObjectRejected naming the object's repository path and the problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from robolake.errors import RobolakeError
from robolake.umi.naming import split_episode_file

GRIPPER_WIDTH_RANGE_M = (0.0, 0.2)
ACCEPTED_VIDEO_CODECS = ("h264",)

# Series in episode JSON: field -> numbers per row (None: one number per time stamp; 0: any, but
# the same in every row). The generator writes them at the top level; ingest of a replay buffer
# writes them per robot under "robots" (umi/generator.py, ingest/sources.py).
POSE_SERIES: dict[str, int | None] = {
    "eef_position_m": 3,
    "eef_rot_axis_angle": 3,
    "eef_quaternion_xyzw": 4,
    "joint_positions_rad": 0,
}
POSE_REQUIRED = ("eef_position_m", "eef_rot_axis_angle")
GRIPPER_SERIES: dict[str, int | None] = {"width_m": None, "force_n": None}
GRIPPER_REQUIRED = ("width_m",)


class ObjectRejected(RobolakeError, ValueError):
    """An object the commit or merge would bring fails the UMI checks; `.path` is its repository path."""

    exit_code = 3

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


# ---- which objects, and of what kind ----------------------------------------------------------


def classify(path: str) -> str | None:
    """ "replay_buffer", "pose", "gripper", "video", or None for objects the hook does not check."""
    p = PurePosixPath(path)
    name = p.name.lower()
    if name.endswith(".zarr.zip"):
        return "replay_buffer"
    if name.endswith(".mp4"):
        return "video"
    parsed = split_episode_file(p.name)
    if parsed is not None and parsed[1] == "json":
        # The sensor is the nearest enclosing pose/ or gripper/ folder: pose/episode_00001.json
        # (generated), pose/<dataset>/episode_00001.json (ingested), under any prefix.
        for folder in reversed(p.parts[:-1]):
            if folder in ("pose", "gripper"):
                return folder
    return None


def check_replay_buffer_file(path: str, local: Path) -> None:
    """Check a downloaded replay buffer (`local`) stored at repository path `path`."""
    from robolake.umi.errors import DatasetFormatError
    from robolake.umi.replay_buffer import validate_replay_buffer

    try:
        validate_replay_buffer(local)
    except DatasetFormatError as exc:
        raise ObjectRejected(path, exc.problem.replace(str(local), path)) from exc


def check_video_file(path: str, local: Path) -> None:
    """Check a downloaded MP4 (`local`) stored at repository path `path`."""
    from robolake.umi.errors import DatasetFormatError
    from robolake.umi.video import check_video

    try:
        info = check_video(local)
    except DatasetFormatError as exc:  # FFmpeg's messages name the file: name the repository path
        raise ObjectRejected(path, exc.problem.replace(str(local), path)) from exc
    if info.codec not in ACCEPTED_VIDEO_CODECS:
        expected = " or ".join(ACCEPTED_VIDEO_CODECS)
        raise ObjectRejected(path, f"video codec is {info.codec!r}; UMI clips must be {expected}")
    if info.frame_count <= 0:
        raise ObjectRejected(path, "holds no video frames")


# ---- episode JSON -----------------------------------------------------------------------------


def check_episode_json(path: str, data: bytes, kind: str) -> None:
    """Check a pose or gripper episode file (`kind`), generated or ingested layout."""
    if kind == "pose":
        check_pose_json(path, data)
    elif kind == "gripper":
        check_gripper_json(path, data)
    else:
        raise ValueError(f"kind {kind!r} is not an episode JSON kind; expected 'pose' or 'gripper'")


def check_pose_json(path: str, data: bytes) -> None:
    """Time stamps finite and increasing; eef position and rotation (and any other series) one
    finite row of the right width per time stamp."""
    doc = _load_json(path, data)
    n = _timestamps(path, doc)
    for label, series in _series_groups(path, doc):
        _check_series(path, label, series, POSE_SERIES, POSE_REQUIRED, n)


def check_gripper_json(path: str, data: bytes) -> None:
    """As for poses, and every gripper width within 0..0.2 m."""
    doc = _load_json(path, data)
    n = _timestamps(path, doc)
    lo, hi = GRIPPER_WIDTH_RANGE_M
    for label, series in _series_groups(path, doc):
        _check_series(path, label, series, GRIPPER_SERIES, GRIPPER_REQUIRED, n)
        for i, width in enumerate(series["width_m"]):
            if not lo <= width <= hi:
                raise ObjectRejected(
                    path,
                    f"{label}width_m[{i}] = {width!r} m is outside {lo}..{hi} m: not a "
                    "gripper opening (metres, not millimetres?)",
                )


def _load_json(path: str, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ObjectRejected(path, "is not UTF-8 text: corrupt, or not an episode JSON file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ObjectRejected(
            path,
            f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}, "
            f"{len(data)} bytes): truncated or corrupt",
        ) from None
    if not isinstance(doc, dict):
        raise ObjectRejected(path, f"holds {_kind(doc)}, expected a JSON object with timestamps_s and series")
    return doc


def _kind(value: object) -> str:
    """JSON's name for the value's type, with its article: "an array", "a string", "null"."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _number(path: str, label: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ObjectRejected(
            path, f"{label} is {_kind(value)}" + ("" if value is None else f" ({value!r})") + ", expected a number"
        )
    if not math.isfinite(value):
        raise ObjectRejected(path, f"{label} is {value!r}: every number must be finite")
    return float(value)


def _timestamps(path: str, doc: Mapping[str, Any]) -> int:
    raw = doc.get("timestamps_s")
    if not isinstance(raw, list):
        what = "missing" if raw is None else _kind(raw)
        raise ObjectRejected(path, f"timestamps_s is {what}, expected an array with one time stamp per frame")
    if not raw:
        raise ObjectRejected(path, "timestamps_s is empty: an episode needs at least one frame")
    previous = -math.inf
    for i, value in enumerate(raw):
        t = _number(path, f"timestamps_s[{i}]", value)
        if t <= previous:
            raise ObjectRejected(
                path,
                f"timestamps_s[{i}] = {t!r} does not increase (timestamps_s[{i - 1}] = "
                f"{previous!r}): time stamps must be strictly increasing",
            )
        previous = t
    count = doc.get("frame_count")
    if count is not None and (isinstance(count, bool) or count != len(raw)):
        raise ObjectRejected(path, f"frame_count is {count!r} but timestamps_s has {len(raw)} entries")
    fps = doc.get("fps")
    if fps is not None and _number(path, "fps", fps) <= 0:
        raise ObjectRejected(path, f"fps is {fps!r}, expected a positive rate")
    return len(raw)


def _series_groups(path: str, doc: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label prefix, mapping holding the series): the document itself, or each of its robots."""
    robots = doc.get("robots")
    if robots is None:
        yield "", dict(doc)
        return
    if not isinstance(robots, dict) or not robots:
        raise ObjectRejected(path, f"robots is {_kind(robots)}, expected an object of robot name -> series")
    for name, series in robots.items():
        if not isinstance(series, dict):
            raise ObjectRejected(path, f"robots.{name} is {_kind(series)}, expected an object of series")
        yield f"robots.{name}.", series


def _check_series(
    path: str,
    label: str,
    doc: dict[str, Any],
    specs: Mapping[str, int | None],
    required: tuple[str, ...],
    n: int,
) -> None:
    """Check every known series in `doc`; replace each by its floats, so callers can range-check them."""
    for name in required:
        if name not in doc:
            raise ObjectRejected(path, f"{label}{name} is missing; a {'/'.join(required)} series is required")
    for name, width in specs.items():
        if name not in doc:
            continue
        raw, where = doc[name], f"{label}{name}"
        if not isinstance(raw, list):
            raise ObjectRejected(path, f"{where} is {_kind(raw)}, expected an array with one entry per time stamp")
        if len(raw) != n:
            raise ObjectRejected(
                path,
                f"{where} has {len(raw)} entries but timestamps_s has {n}: every series needs one entry per time stamp",
            )
        if width is None:
            doc[name] = [_number(path, f"{where}[{i}]", v) for i, v in enumerate(raw)]
            continue
        expected = width or (len(raw[0]) if isinstance(raw[0], list) else -1)
        for i, row in enumerate(raw):
            if not isinstance(row, list) or len(row) != expected or not row:
                shape = f"{len(row)} numbers" if isinstance(row, list) else _kind(row)
                want = f"{expected} numbers" if expected > 0 else "a non-empty array of numbers"
                raise ObjectRejected(path, f"{where}[{i}] is {shape}, expected {want}")
            for j, value in enumerate(row):
                _number(path, f"{where}[{i}][{j}]", value)
