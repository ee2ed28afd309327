"""The episode browser's reads: a ref resolved to a commit once, then every byte read at that commit.

A dataset is a key prefix holding a generated (or ingested) UMI dataset (robolake.umi.generator):

    <dataset>/video/episode_XXXXX.mp4      played with HTTP Range (`video_range`)
    <dataset>/pose/episode_XXXXX.json      eef_position_m, timestamps_s  -> the pose curves
    <dataset>/gripper/episode_XXXXX.json   width_m                       -> the gripper curve
    <dataset>/replay_buffer/dataset.zarr.zip   camera0_rgb frames (JPEG XL) -> the frame strip, as JPEG

Objects at a commit never change, so what is read for a commit (stats, a zip's directory and
episode_ends) is kept in small per-process caches keyed by commit id: seeking a video asks lakeFS
nothing after its first range. Video and replay-buffer bytes travel by ``Range`` GETs through the
accelerator, at the physical address lakeFS records for the commit (robolake.ml's read path).
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from robolake.console.views import Lake
from robolake.errors import ConfigError
from robolake.keys import check_prefix
from robolake.ml.dataset import Located, range_source
from robolake.ml.remote import RangeSource, RemoteZip, array_info, decode, read_array
from robolake.umi.errors import DatasetFormatError
from robolake.umi.naming import episode_of
from robolake.versioning import NotFoundError, ObjectStat

BUFFER = "replay_buffer/dataset.zarr.zip"
RGB = "data/camera0_rgb"
KINDS = ("video", "pose", "gripper")
MAX_SCANNED = 100_000  # objects looked at to find the datasets of a commit
STRIP_FRAMES = 12
T = TypeVar("T")


class _Lru:
    """A small thread-safe LRU of values that never go stale (they are keyed by commit id)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                value: T = self._items[key]
                return value
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


class EpisodeReader:
    """Episodes of datasets in one lakeFS repository, read at commits."""

    def __init__(self, lake: Lake, repo: str) -> None:
        self.lake, self.repo = lake, repo
        self._stats = _Lru(512)
        self._zips = _Lru(16)
        self._ends = _Lru(64)
        self._listings = _Lru(64)

    # ---- refs and datasets -----------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """The commit id `ref` (branch, tag, commit, ``main~1``) names now."""
        if not ref or len(ref) > 256 or any(ch in ref for ch in "\x00\n\r "):
            raise ConfigError(f"ref {ref!r} is not a branch, tag or commit name")
        try:
            return self.lake.client.get_commit(self.repo, ref).id
        except NotFoundError as exc:
            raise NotFoundError(
                f"ref {ref!r} is not a branch, tag or commit of repository {self.repo!r}; "
                "pick one on the versions page",
                status=404,
            ) from exc

    def datasets(self, commit: str) -> list[str]:
        """Prefixes at `commit` holding episode files or a replay buffer ("" is the repository's root)."""
        found: set[str] = set()
        for i, obj in enumerate(self.lake.client.list_objects(self.repo, commit)):
            if i >= MAX_SCANNED:
                break
            parts = obj.path.split("/")
            for depth, part in enumerate(parts[:-1]):
                if part in (*KINDS, "replay_buffer"):
                    found.add("/".join(parts[:depth]))
                    break
        return sorted(found)

    def episodes(self, commit: str, dataset: str) -> list[dict[str, Any]]:
        """Each episode of the dataset with the files it has; NotFoundError when there is none."""
        prefix = dataset_prefix(dataset)
        rows: dict[int, dict[str, Any]] = {}
        for obj in self._listing(commit, prefix):
            kind, _, name = obj.path.removeprefix(prefix).partition("/")
            index = episode_of(name) if kind in KINDS and "/" not in name else None
            if index is not None:
                row = rows.setdefault(index, {"index": index, "video": None, "pose": None, "gripper": None})
                row[kind] = obj.path
                if kind == "video":
                    row["video_bytes"] = obj.size_bytes
        if not rows:
            raise NotFoundError(
                f"dataset {dataset or '/'!r} holds no episodes at commit {commit[:12]} "
                "(no video/, pose/ or gripper/ episode_XXXXX files); pick a dataset on the episodes page",
                status=404,
            )
        return [rows[i] for i in sorted(rows)]

    def _listing(self, commit: str, prefix: str) -> list[ObjectStat]:
        return self._listings.get(
            (commit, prefix), lambda: list(self.lake.client.list_objects(self.repo, commit, prefix))
        )

    def episode(self, commit: str, dataset: str, index: int) -> dict[str, Any]:
        """One episode: its curves, its video's path and how many replay-buffer frames it has."""
        rows = self.episodes(commit, dataset)
        row = next((r for r in rows if r["index"] == index), None)
        if row is None:
            raise NotFoundError(
                f"episode {index} is not in dataset {dataset or '/'!r} at commit {commit[:12]}; it has "
                f"episodes {rows[0]['index']}..{rows[-1]['index']} ({len(rows)})",
                status=404,
            )
        pose = self._json(commit, row["pose"]) if row["pose"] else {}
        gripper = self._json(commit, row["gripper"]) if row["gripper"] else {}
        frames = self._frame_count(commit, dataset, index)
        return {
            "index": index,
            "episodes": [r["index"] for r in rows],
            "video": row["video"],
            "fps": pose.get("fps") or gripper.get("fps"),
            "pose": {
                "t": pose.get("timestamps_s", []),
                "eef_position_m": pose.get("eef_position_m", []),
            },
            "gripper": {"t": gripper.get("timestamps_s", []), "width_m": gripper.get("width_m", [])},
            "frames": frames,
            "strip": _strip(frames),
        }

    def _json(self, commit: str, path: str) -> dict[str, Any]:
        raw = self.lake.client.get_object(self.repo, commit, path)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise DatasetFormatError(path, f"is not JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise DatasetFormatError(path, "is not a JSON object")
        return doc

    # ---- bytes: video ranges and replay-buffer frames ----------------------------------------

    def stat(self, commit: str, path: str) -> ObjectStat:
        return self._stats.get((commit, path), lambda: self.lake.client.stat_object(self.repo, commit, path))

    def video(self, commit: str, dataset: str, index: int) -> tuple[ObjectStat, RangeSource]:
        """The episode's MP4 at `commit`: its stat (size, checksum) and where to read its ranges."""
        path = f"{dataset_prefix(dataset)}video/episode_{index:05d}.mp4"
        try:
            stat = self.stat(commit, path)
        except NotFoundError as exc:
            raise NotFoundError(f"episode {index} has no video {path!r} at commit {commit[:12]}", status=404) from exc
        located = Located(repo=self.repo, ref=commit, commit_id=commit, path=path, stat=stat)
        return stat, range_source(self.lake.settings, located, "accelerator")

    def _zip(self, commit: str, dataset: str) -> RemoteZip | None:
        path = dataset_prefix(dataset) + BUFFER

        def open_zip() -> RemoteZip | None:
            try:
                stat = self.lake.client.stat_object(self.repo, commit, path)
            except NotFoundError:
                return None
            located = Located(repo=self.repo, ref=commit, commit_id=commit, path=path, stat=stat)
            return RemoteZip(range_source(self.lake.settings, located, "accelerator"), stat.size_bytes, located.where)

        return self._zips.get((commit, path), open_zip)

    def _episode_rows(self, commit: str, dataset: str, index: int) -> range | None:
        """The replay buffer's rows of the episode (its `index`-th), or None without a buffer."""
        zf = self._zip(commit, dataset)
        if zf is None or f"{RGB}/.zarray" not in zf.infos:
            return None
        ends = self._ends.get((commit, dataset), lambda: [int(e) for e in read_array(zf, "meta/episode_ends")])
        if not 0 <= index < len(ends):
            return None
        return range(ends[index - 1] if index else 0, ends[index])

    def _frame_count(self, commit: str, dataset: str, index: int) -> int:
        rows = self._episode_rows(commit, dataset, index)
        return len(rows) if rows is not None else 0

    def frame(self, commit: str, dataset: str, index: int, frame: int) -> np.ndarray[Any, Any]:
        """Frame `frame` of the episode from the replay buffer, decoded (H, W, 3) uint8."""
        rows = self._episode_rows(commit, dataset, index)
        if rows is None:
            raise NotFoundError(
                f"dataset {dataset or '/'!r} has no replay-buffer frames for episode {index} at commit {commit[:12]}",
                status=404,
            )
        if not 0 <= frame < len(rows):
            raise NotFoundError(
                f"frame {frame} is out of range: episode {index} has {len(rows)} frames (0..{len(rows) - 1})",
                status=404,
            )
        zf = self._zip(commit, dataset)
        if zf is None:  # _episode_rows found it: only a cache eviction in between gets here
            raise NotFoundError(f"dataset {dataset or '/'!r} has no replay buffer at commit {commit[:12]}", status=404)
        info, compressor = array_info(zf, RGB)
        key = f"{RGB}/{rows[frame]}" + ".0" * (len(info.shape) - 1)
        raw = zf.read_entries([key])[key]
        image = np.asarray(decode(zf, RGB, info, compressor, raw))
        return image.reshape(image.shape[-3:]) if image.ndim > 3 else image


def dataset_prefix(dataset: str) -> str:
    """``umi/cup`` -> ``umi/cup/``; "" (the root) stays ""; ConfigError for ``..`` and the like."""
    check_prefix(dataset, "dataset")
    stripped = dataset.strip("/")
    return f"{stripped}/" if stripped else ""


def _strip(frames: int) -> list[int]:
    if frames <= STRIP_FRAMES:
        return list(range(frames))
    return sorted({round(i * (frames - 1) / (STRIP_FRAMES - 1)) for i in range(STRIP_FRAMES)})
