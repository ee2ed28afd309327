"""A LeRobot v3.0 folder into the lake as one lakeFS commit, checked in full before any byte is sent.

    result = ingest_lerobot(settings, Path("my_dataset"), branch="main")
    # -> lerobot/my_dataset/ on main: meta/, data/, videos/ as they were, one commit

Order, so that a bad folder writes nothing: the branch is looked up (it must exist and hold no
uncommitted changes); the folder is checked by ``robolake.ingest.lerobot.check_folder`` (info.json,
tasks, episodes, that every data and video file the episodes name exists and that row and frame
counts agree); only then are the files uploaded (each verified by MD5 and recorded with its sha256)
and committed with metadata describing the dataset (format, fps, totals, robot type, video keys).
Reading it back, ``robolake version read <commit> lerobot/<name> DIR`` gives a folder
``LeRobotDataset(repo_id, root=DIR)`` loads. Hidden files and folders (``.cache`` from the Hugging
Face tools) are left out.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robolake.config import Settings
from robolake.ingest.lerobot import FolderCheck, check_folder
from robolake.keys import check_dataset_name
from robolake.ml.lerobot_export import require_clean_branch
from robolake.versioning import LakeFSClient, TransferProgress, put_dataset
from robolake.versioning.dataset import normalize_prefix

LAKE_ROOT = "lerobot"


def _noop(_: str) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class LeRobotIngestResult:
    dataset: str
    source: str
    repo: str
    branch: str
    path: str  # the dataset's folder in the repository
    commit_id: str
    episodes: int
    frames: int
    tasks: int
    fps: int
    video_keys: list[str]
    files: int
    uploaded: int
    total_bytes: int
    kind: str = "lerobot"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def ingest_lerobot(
    settings: Settings,
    folder: Path,
    *,
    branch: str = "main",
    name: str | None = None,
    repo: str | None = None,
    progress: Callable[[TransferProgress], None] | None = None,
    status: Callable[[str], None] = _noop,
) -> LeRobotIngestResult:
    """Check `folder` as LeRobot v3.0, then commit it to ``lerobot/<name>/`` on `branch` (see the module docstring)."""
    repo = repo or settings.lakefs_repo
    dataset = name or folder.resolve().name
    check_dataset_name(dataset, "dataset name (--name)")
    prefix = normalize_prefix(f"{LAKE_ROOT}/{dataset}")
    with LakeFSClient.from_settings(settings) as lakefs:
        require_clean_branch(lakefs, repo, branch, "ingest")
        checked = check_folder(folder, status)
        info = checked.info
        status(f"uploading {len(checked.files)} files ({checked.size_bytes / 1e6:,.1f} MB) to {prefix} on {branch!r}")
        work = settings.cache_dir / "ingest"
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{dataset}-", dir=work) as tmp:
            staged = _stage(checked.root, checked.files, Path(tmp))
            done = put_dataset(
                lakefs,
                repo,
                branch,
                staged,
                prefix,
                _metadata(checked),
                progress,
                name=dataset,
                message=f"Ingest LeRobot v3.0 dataset {dataset!r}: "
                f"{info.total_episodes} episodes, {info.total_frames} frames",
            )
    return LeRobotIngestResult(
        dataset=dataset,
        source=folder.resolve().name,
        repo=repo,
        branch=branch,
        path=prefix,
        commit_id=done.commit.id,
        episodes=info.total_episodes,
        frames=info.total_frames,
        tasks=info.total_tasks,
        fps=info.fps,
        video_keys=info.video_keys,
        files=done.object_count,
        uploaded=done.uploaded,
        total_bytes=done.total_bytes,
    )


def _metadata(checked: FolderCheck) -> dict[str, object]:
    info = checked.info
    return {
        "format": "lerobot",
        "codebase_version": "v3.0",
        "fps": info.fps,
        "total_episodes": info.total_episodes,
        "total_frames": info.total_frames,
        "total_tasks": info.total_tasks,
        "robot_type": info.robot_type or "",
        "video_keys": ",".join(info.video_keys),
        "source": checked.root.resolve().name,  # no machine paths in the lake
        "ingested_by": "robolake ingest",
    }


def _stage(root: Path, files: tuple[str, ...], into: Path) -> Path:
    """A tree of links to exactly the files that were checked (what put_dataset then uploads)."""
    staged = into / "dataset"
    for rel in files:
        link = staged / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((root / rel).resolve())
    return staged
