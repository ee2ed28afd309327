"""Ingest logic that needs no server: source detection, default names, the dataset manifest."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from robolake.ingest.pipeline import build_manifest
from robolake.ingest.sources import PlannedObject, SourcePlan, default_dataset_name, detect_kind
from robolake.umi.errors import DatasetFormatError


def test_detect_kind(tmp_path: Path) -> None:
    zarr_zip = tmp_path / "cup.zarr.zip"
    zarr_zip.write_bytes(b"anything: the validator will judge it")
    assert detect_kind(zarr_zip) == "replay_buffer"
    mp4s = tmp_path / "cup_mp4s.zip"
    with zipfile.ZipFile(mp4s, "w") as zf:
        zf.writestr("demos/demo_1/raw_video.mp4", b"x")
    assert detect_kind(mp4s) == "video_zip"
    store = tmp_path / "store.zip"
    with zipfile.ZipFile(store, "w") as zf:
        zf.writestr(".zgroup", "{}")
    assert detect_kind(store) == "replay_buffer"
    (tmp_path / "layout").mkdir()
    (tmp_path / "layout" / "manifest.json").write_text("{}")
    assert detect_kind(tmp_path / "layout") == "generated"
    (tmp_path / "videos" / "a").mkdir(parents=True)
    (tmp_path / "videos" / "a" / "raw_video.MP4").write_bytes(b"x")
    assert detect_kind(tmp_path / "videos") == "video_folder"


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        ("empty_dir", "neither a robolake manifest.json nor any .mp4"),
        ("text_file", "is not a supported source"),
        ("missing", "no such file or directory"),
        ("plain_zip", "not a zarr store (no .zgroup) and holds no .mp4 files"),
    ],
)
def test_detect_kind_rejects_with_the_path(tmp_path: Path, setup: str, problem: str) -> None:
    path = tmp_path / setup
    if setup == "empty_dir":
        path.mkdir()
    elif setup == "text_file":
        path = tmp_path / "notes.txt"
        path.write_text("x")
    elif setup == "plain_zip":
        path = tmp_path / "misc.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("readme.txt", "x")
    with pytest.raises(DatasetFormatError) as err:
        detect_kind(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_default_dataset_names(tmp_path: Path) -> None:
    assert default_dataset_name(Path("cup_in_the_wild.zarr.zip"), "replay_buffer") == "cup_in_the_wild"
    assert default_dataset_name(Path("cup_in_the_wild_mp4s.zip"), "video_zip") == "cup_in_the_wild"
    assert default_dataset_name(Path("/data/raw_videos"), "video_folder") == "raw_videos"
    with pytest.raises(DatasetFormatError, match=r"manifest\.json"):
        default_dataset_name(tmp_path, "generated")


def _plan(kind: str, keys: list[str], info: dict[str, object]) -> SourcePlan:
    objects = tuple(
        PlannedObject("umi-raw", k, Path("/x") / k, 10 + i, f"{i:064x}", k.split("/")[0], i) for i, k in enumerate(keys)
    )
    return SourcePlan(kind, len(keys), objects, info)


def test_manifest_is_deterministic_and_merges_sources() -> None:
    buffer = _plan("replay_buffer", ["pose/cup/episode_00000.json", "gripper/cup/episode_00000.json"], {"steps": 7})
    first = build_manifest("cup", buffer, "cup.zarr.zip", None)
    assert first == build_manifest("cup", buffer, "cup.zarr.zip", None)  # no time stamps: a rerun writes nothing
    doc = json.loads(first)
    assert [o["key"] for o in doc["objects"]] == ["gripper/cup/episode_00000.json", "pose/cup/episode_00000.json"]
    assert doc["sources"] == {"replay_buffer": {"source": "cup.zarr.zip", "steps": 7}}

    videos = _plan("videos", ["video/cup/episode_00000.mp4"], {"episodes": []})
    merged = json.loads(build_manifest("cup", videos, "cup_mp4s.zip", doc))
    assert set(merged["sources"]) == {"replay_buffer", "videos"}
    assert len(merged["objects"]) == 3 and merged["total_bytes"] == 10 + 11 + 10
    again = json.loads(build_manifest("cup", buffer, "cup.zarr.zip", merged))
    assert again == merged  # re-ingesting one source keeps the other
