"""`process transcode`'s pure parts: sizes, encoder choice and its message, one video transcoded locally."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from robolake.errors import ConfigError
from robolake.processing.transcode import TranscodeParams, count_frames, parse_size, pick_encoder, transcode_file
from robolake.umi import generate_dataset


def _frames(path: Path) -> tuple[int, set[tuple[int, int]], str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        sizes = set()
        n = 0
        for frame in container.decode(stream):
            sizes.add((frame.width, frame.height))
            n += 1
        return n, sizes, stream.codec_context.codec.canonical_name


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_a_video_is_transcoded_to_the_codec_and_size_asked_frame_for_frame(tmp_path: Path, codec: str) -> None:
    if codec == "av1" and "libsvtav1" not in av.codecs_available and "libaom-av1" not in av.codecs_available:
        pytest.skip("this PyAV has no AV1 encoder")
    generate_dataset(tmp_path / "gen", profile="tiny", seed=3, episodes=1)
    src = tmp_path / "gen" / "video" / "episode_00000.mp4"
    dest = tmp_path / "out.mp4"
    made = transcode_file(src, dest, TranscodeParams(codec=codec, width=96, height=64), "v")
    n_src, sizes_src, _ = _frames(src)
    n, sizes, name = _frames(dest)
    assert made == n == n_src == count_frames(dest, "x") and sizes == {(96, 64)} and sizes_src != sizes
    assert name == codec


def test_h264_output_is_byte_reproducible(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "gen", profile="tiny", seed=4, episodes=1)
    src = tmp_path / "gen" / "video" / "episode_00000.mp4"
    params = TranscodeParams(codec="h264", width=64, height=48)
    transcode_file(src, tmp_path / "a.mp4", params, "v")
    transcode_file(src, tmp_path / "b.mp4", params, "v")
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_a_missing_encoder_names_the_encoders_there_are() -> None:
    assert pick_encoder("h264", {"libx264", "libsvtav1"}) == "libx264"
    assert pick_encoder("av1", {"libaom-av1"}) == "libaom-av1"
    with pytest.raises(ConfigError) as caught:
        pick_encoder("av1", {"libx264", "h264"})
    message = str(caught.value)
    assert "--codec av1" in message and "libsvtav1, libaom-av1" in message and "video encoders: libx264" in message
    assert "use --codec h264" in message and "\n" not in message


@pytest.mark.parametrize(
    ("text", "message"), [("64", "not WIDTHxHEIGHT"), ("x48", "not WIDTHxHEIGHT"), ("64x48px", "not WIDTHxHEIGHT")]
)
def test_a_bad_size_is_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_size(text)


@pytest.mark.parametrize(("width", "height"), [(63, 48), (64, 8), (0, 0), (10000, 64)])
def test_an_odd_or_out_of_range_size_is_refused(width: int, height: int) -> None:
    assert parse_size(f"{width}x{height}") == (width, height)
    with pytest.raises(ConfigError, match="must be even and from 16 to 8192"):
        TranscodeParams(width=width, height=height).check()


def test_the_output_folder_names_codec_and_size() -> None:
    assert TranscodeParams(codec="av1", width=320, height=240).folder == "av1-320x240"
