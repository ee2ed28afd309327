"""The one episode-name pattern (umi.naming), the one size parser (bench.core) and the one progress record."""

from __future__ import annotations

import pytest

from robolake.bench.core import format_size, parse_size
from robolake.errors import ConfigError
from robolake.storage.progress import TransferProgress
from robolake.umi.naming import episode_file, episode_of, episode_token, split_episode_file


@pytest.mark.parametrize(
    ("path", "index"),
    [
        ("pose/episode_00012.json", 12),
        ("video/cup/EPISODE_7.MP4", 7),
        ("gripper/myepisode_00001.json", None),
        ("pose/episode_.json", None),
        ("episode_3/rgb.jpg", None),  # only the file name counts
        ("notes.txt", None),
    ],
)
def test_episode_of_reads_the_file_name(path: str, index: int | None) -> None:
    assert episode_of(path) == index


def test_episode_names_round_trip() -> None:
    assert episode_file(12, "json") == "episode_00012.json"
    assert episode_file(123456, "mp4") == "episode_123456.mp4"
    assert split_episode_file("episode_00012.json") == (12, "json")
    assert split_episode_file("episode_00012.json.partial") is None
    assert split_episode_file("xepisode_1.json") is None
    assert episode_token("pose/cup/episode_00012.json") == "episode_00012"
    assert episode_token("runs/myepisode_1/x") is None


@pytest.mark.parametrize(
    ("text", "size"), [("4096", 4096), ("4KiB", 4096), ("64MiB", 64 << 20), ("1GiB", 1 << 30), (" 2B ", 2)]
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["8MB", "huge", "1.5MiB", "", "-1KiB"])
def test_parse_size_names_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match=f"--obj-size {text!r} is not like 4096, 4KiB"):
        parse_size(text, "--obj-size")


def test_format_size_is_exact() -> None:
    assert [format_size(n) for n in (1 << 30, 16 << 20, 1536, 1024, 7)] == ["1GiB", "16MiB", "1536B", "1KiB", "7B"]


def test_transfer_progress_serves_files_and_objects() -> None:
    done = TransferProgress(3, 10, 300, 1000, path="pose/episode_00002.json")
    assert (done.objects_done, done.skipped, done.failed, done.path) == (3, 0, 0, "pose/episode_00002.json")
