"""Object keys, content types and the user metadata derived from a file's path.

The lake layout of UMI data (bucket ``umi-raw``)::

    pose/<dataset>/episode_XXXXX.json        per-episode end-effector pose (+ joints when known)
    gripper/<dataset>/episode_XXXXX.json     per-episode gripper width (+ force when known)
    video/<dataset>/episode_XXXXX.mp4        per-episode GoPro video
    original/<dataset>/<file>                the file that was ingested, byte for byte
    manifests/<dataset>.json                 what the dataset holds: every object, size, sha256

Experiment configs go to ``umi-experiments/configs/<dataset>/``. The metadata every uploaded
object carries (``x-amz-meta-*``): ``sha256`` always; ``episode`` (the integer in
``episode_XXXXX``), ``sensor`` (pose, gripper, video, ...) and ``schema-version`` when the path
says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import PurePosixPath

from robolake.umi.naming import episode_file, episode_of

RAW_BUCKET = "umi-raw"
EXPERIMENTS_BUCKET = "umi-experiments"
SCHEMA_VERSION = "1"
SENSORS = ("pose", "gripper", "video")

MetadataFn = Callable[[str], Mapping[str, str]]

# Fixed here rather than taken from `mimetypes`, whose answers depend on the host's mime.types.
CONTENT_TYPES: dict[str, str] = {
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".mp4": "video/mp4",
    ".zip": "application/zip",
    ".yaml": "application/yaml",  # RFC 9512
    ".yml": "application/yaml",
    ".csv": "text/csv",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jxl": "image/jxl",
    ".parquet": "application/vnd.apache.parquet",
    ".zst": "application/zstd",
    ".gz": "application/gzip",
    ".tar": "application/x-tar",
    ".npy": "application/octet-stream",
    ".pkl": "application/octet-stream",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_SENSOR_DIRS = {
    "pose": "pose",
    "gripper": "gripper",
    "video": "video",
    "videos": "video",
    "configs": "config",
    "replay_buffer": "replay_buffer",
}


def content_type_for(name: str) -> str:
    """The Content-Type for a file name, by its (lower-cased) extension."""
    suffix = PurePosixPath(name.lower()).suffix
    return CONTENT_TYPES.get(suffix, DEFAULT_CONTENT_TYPE)


def sensor_of(relpath: str) -> str | None:
    """The sensor a path belongs to, from its first known directory (pose, gripper, video ...)."""
    for part in PurePosixPath(relpath).parts[:-1]:
        if part in _SENSOR_DIRS:
            return _SENSOR_DIRS[part]
    return None


def default_metadata(relpath: str) -> dict[str, str]:
    """User metadata for a file at `relpath` (relative, "/"-separated): episode, sensor, schema-version."""
    meta: dict[str, str] = {}
    episode = episode_of(relpath)
    if episode is not None:
        meta["episode"] = str(episode)
    sensor = sensor_of(relpath)
    if sensor is not None:
        meta["sensor"] = sensor
    if sensor is not None or episode is not None:
        meta["schema-version"] = SCHEMA_VERSION
    return meta


def join_key(prefix: str, relpath: str) -> str:
    """`prefix` + "/" + `relpath`, without doubled or leading slashes."""
    prefix = prefix.strip("/")
    relpath = relpath.lstrip("/")
    return f"{prefix}/{relpath}" if prefix else relpath


def sensor_key(sensor: str, dataset: str, index: int) -> str:
    """``pose/<dataset>/episode_XXXXX.json`` (or ``.mp4`` for video) in the umi-raw bucket."""
    if sensor not in SENSORS:
        raise ValueError(f"sensor {sensor!r} is not one of {SENSORS}")
    return f"{sensor}/{dataset}/{episode_file(index, 'mp4' if sensor == 'video' else 'json')}"


def original_key(dataset: str, relpath: str) -> str:
    return f"original/{dataset}/{relpath.lstrip('/')}"


def manifest_key(dataset: str) -> str:
    return f"manifests/{dataset}.json"


def config_key(dataset: str, name: str) -> str:
    """Where an experiment config goes in the umi-experiments bucket."""
    return f"configs/{dataset}/{name}"


def safe_header_value(value: str) -> str:
    """A metadata value S3 can carry in a header: printable ASCII; anything else is %-escaped."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(c if c.isascii() and c.isprintable() else "".join(f"%{b:02X}" for b in c.encode()) for c in value)
