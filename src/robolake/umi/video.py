"""GoPro-like H.264 MP4s: written with PyAV's bundled libx264, read back without trusting them.

Why PyAV: its wheels ship FFmpeg with libx264 (checked for av 18 on manylinux x86_64), so a
fresh machine needs no system ffmpeg, and the same library probes the result. Why these flags:
``fflags=+bitexact`` and the codec's ``bitexact`` flag drop the muxer's and encoder's version
strings, one x264 thread makes the bitstream independent of the core count (x264's frame threads
change rate control), and every timestamp in the file comes from :class:`VideoMetadata`, never
from the clock. Same frames + same metadata + same PyAV/x264 build => the same bytes.

UMI's pipeline reads three things from a raw GoPro file: the camera serial (QuickTime
``CameraSerialNumber``), and the start of the first frame from the video stream's ``timecode``
(non-drop HH:MM:SS:FF at the rounded rate 60) plus the date of ``creation_time``. We write the
serial as an ``mdta`` key (``movflags=use_metadata_tags``), ``creation_time`` into the movie
header, and ``timecode`` into a ``tmcd`` track that FFmpeg's MP4 muxer adds for it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from robolake.errors import RobolakeError
from robolake.umi.errors import DatasetFormatError

GOPRO_RATE = Fraction(60000, 1001)


def _x264_params() -> str:
    """x264's AVX-512 code made bytes that depend on the calling thread (seen on a Xeon with
    AVX-512 FP16: the same frames encoded differently in the main thread and in a pool thread);
    where the CPU has AVX-512, x264 is capped at AVX2, which gives the same bytes in any thread."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    match = re.search(r"^flags\s*:(.*)$", info, re.MULTILINE)
    return "asm=AVX2" if match and {"avx2", "avx512f"} <= set(match[1].split()) else ""


_X264_PARAMS = _x264_params()

_TIMECODE_RATE = 60  # GoPro/QuickTime non-drop timecode counts 59.94 Hz video at a nominal 60


@dataclass(frozen=True)
class VideoSettings:
    """x264 settings; ``crf`` and ``preset`` as in ffmpeg's libx264 wrapper."""

    crf: int = 20
    preset: str = "veryfast"
    gop_frames: int = 60


@dataclass(frozen=True)
class VideoMetadata:
    """What a GoPro stamps on a clip, here all derived from the dataset's seed."""

    start_time: dt.datetime  # timezone-aware UTC time of the first frame
    camera_serial: str
    comment: str = ""

    @property
    def creation_time(self) -> str:
        # GoPro (and FFmpeg when it reads a file back) write whole seconds with a zero fraction.
        return self.start_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    @property
    def timecode(self) -> str:
        t = self.start_time.astimezone(dt.UTC)
        midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
        frames = round((t - midnight).total_seconds() * float(GOPRO_RATE))
        seconds, f = divmod(frames, _TIMECODE_RATE)
        return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{f:02d}"


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_mp4` read from a file's headers."""

    path: str
    codec: str
    width: int
    height: int
    frame_count: int
    rate: Fraction
    duration_s: float
    creation_time: str | None
    timecode: str | None
    camera_serial: str | None
    comment: str | None

    def start_datetime(self) -> dt.datetime:
        """The first frame's UTC time by UMI's rule: the creation date plus the timecode."""
        if self.creation_time is None or self.timecode is None:
            raise DatasetFormatError(self.path, "no creation_time or timecode metadata", "not a GoPro-style clip")
        h, m, s, f = (int(x) for x in self.timecode.split(":"))
        seconds = ((3600 * h + 60 * m + s) * round(self.rate) + f) / self.rate
        date = dt.datetime.strptime(self.creation_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        midnight = date.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight + dt.timedelta(seconds=float(seconds))


def write_mp4(
    path: str | Path,
    frames: Iterable[npt.NDArray[np.uint8]],
    *,
    width: int,
    height: int,
    metadata: VideoMetadata,
    settings: VideoSettings = VideoSettings(),  # frozen, so a shared default is safe
) -> int:
    """Encode RGB frames (H, W, 3) as H.264 yuv420p at 59.94 fps; returns the frame count.

    Writes ``<path>.partial`` and renames it, so a crash never leaves a half file at ``path``.
    """
    if width % 2 or height % 2:
        raise ValueError(f"video size {width}x{height} must be even in both dimensions for yuv420p")
    if "libx264" not in av.codecs_available:
        raise RobolakeError(
            f"this PyAV build ({av.__version__}) has no libx264 encoder; install the PyPI wheel: pip install 'av>=18.1'"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    try:
        options = {"movflags": "use_metadata_tags", "fflags": "+bitexact"}
        with av.open(str(partial), mode="w", format="mp4", options=options) as container:
            container.metadata["creation_time"] = metadata.creation_time
            container.metadata["CameraSerialNumber"] = metadata.camera_serial
            if metadata.comment:
                container.metadata["comment"] = metadata.comment
            codec_options = {
                "crf": str(settings.crf),
                "preset": settings.preset,
                "threads": "1",
                "g": str(settings.gop_frames),
                **({"x264-params": _X264_PARAMS} if _X264_PARAMS else {}),
            }
            stream = container.add_stream("libx264", rate=GOPRO_RATE, options=codec_options)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = 1 / GOPRO_RATE
            stream.codec_context.thread_count = 1
            stream.codec_context.flags |= av.codec.context.Flags.bitexact
            stream.metadata["creation_time"] = metadata.creation_time
            stream.metadata["timecode"] = metadata.timecode
            for image in frames:
                if image.shape != (height, width, 3) or image.dtype != np.uint8:
                    raise ValueError(
                        f"frame {count} is {image.dtype} {image.shape}, expected uint8 {(height, width, 3)}"
                    )
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = count
                container.mux(stream.encode(frame))
                count += 1
            container.mux(stream.encode(None))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def probe_mp4(path: str | Path, *, count_frames: bool = False) -> VideoInfo:
    """Read codec, size, frame count, rate and GoPro metadata; ``count_frames`` demuxes every packet."""
    path = Path(path)
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise DatasetFormatError(path, "no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate
            if rate is None:
                raise DatasetFormatError(path, "the video stream has no frame rate")
            frame_count = stream.frames
            if count_frames or frame_count == 0:
                frame_count = sum(1 for packet in container.demux(stream) if packet.size > 0)
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else math.nan
            return VideoInfo(
                path=str(path),
                codec=stream.codec_context.name,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                frame_count=frame_count,
                rate=Fraction(rate),
                duration_s=duration,
                creation_time=stream.metadata.get("creation_time") or container.metadata.get("creation_time"),
                timecode=stream.metadata.get("timecode"),
                camera_serial=container.metadata.get("CameraSerialNumber"),
                comment=container.metadata.get("comment"),
            )
    except av.FFmpegError as exc:
        raise DatasetFormatError(path, f"not a readable MP4 ({exc})", "the file is damaged or not a video") from exc


def decode_frame(path: str | Path, index: int) -> npt.NDArray[np.uint8]:
    """Decode frame ``index`` (0-based) as RGB; decodes from the start, so keep ``index`` small."""
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            for i, frame in enumerate(container.decode(stream)):
                if i == index:
                    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    except av.FFmpegError as exc:
        raise DatasetFormatError(path, f"cannot decode frame {index} ({exc})") from exc
    raise DatasetFormatError(path, f"has no frame {index}")


KNOWN_VIDEO_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})


def check_video(path: Path, shown_as: str = "") -> VideoInfo:
    """probe_mp4 plus a known codec and, when the header counts frames, that every frame is there."""
    try:
        info = probe_mp4(path)
        if info.codec not in KNOWN_VIDEO_CODECS:
            raise DatasetFormatError(
                path, f"unknown video codec {info.codec!r}", f"expected one of {sorted(KNOWN_VIDEO_CODECS)}"
            )
        if info.frame_count > 0:
            counted = probe_mp4(path, count_frames=True).frame_count
            if counted != info.frame_count:
                raise DatasetFormatError(
                    path,
                    f"truncated: the header lists {info.frame_count} frames, the file holds {counted}",
                    "copy or download it again",
                )
    except DatasetFormatError as exc:
        if shown_as:
            raise DatasetFormatError(shown_as, exc.problem) from exc
        raise
    return info


def open_encoder(stream: av.video.stream.VideoStream) -> None:
    """Open `stream`'s encoder now (its size and flags set first), keeping this process's scheduling.

    SVT-AV1 (libsvtav1), run as root, makes the thread that opens it and the encoder's own threads
    real-time (SCHED_FIFO, priority 99): a busy encoder then starves every other process on the
    machine, MinIO's nodes among them, and every process started afterwards (a Dask worker, a
    server) inherits the policy. Threads it made real-time get the opening thread's policy back;
    a process started real-time on purpose is left as it is.
    """
    if not hasattr(os, "sched_getscheduler"):  # not Linux
        stream.codec_context.open(strict=False)
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    stream.codec_context.open(strict=False)
    if policy in (os.SCHED_FIFO, os.SCHED_RR):
        return
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread may have ended meanwhile
            if os.sched_getscheduler(int(tid)) in (os.SCHED_FIFO, os.SCHED_RR):
                os.sched_setscheduler(int(tid), policy, param)
