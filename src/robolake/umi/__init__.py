"""Synthetic UMI (Universal Manipulation Interface) data, written in UMI's real formats.

    generate_dataset(out_dir, *, episodes, seed, profile, experiments, progress) -> Manifest
    validate_replay_buffer(path) -> ReplayBufferInfo       (raises DatasetFormatError)
    probe_mp4(path) -> VideoInfo

Modules: ``episode`` (trajectories), ``render`` (the gripper camera's view), ``video`` (H.264
MP4), ``replay_buffer`` (UMI's zarr v2 zip: writer, and UMI's rules for the validator),
``zarr_store`` (reading a zarr v2 zip without trusting it), ``naming`` (``episode_XXXXX`` file
names, for every layer), ``generator`` (the layout).
"""

from typing import TYPE_CHECKING

from robolake.lazy import lazy_exports

if TYPE_CHECKING:
    from robolake.umi.errors import DatasetFormatError
    from robolake.umi.generator import (
        PROFILES,
        Manifest,
        ManifestEntry,
        Profile,
        default_dataset_dir,
        generate_dataset,
        synthetic_name,
    )
    from robolake.umi.replay_buffer import ReplayBufferInfo, open_replay_buffer, validate_replay_buffer
    from robolake.umi.video import VideoInfo, probe_mp4

__getattr__ = lazy_exports(
    __name__,
    {
        "DatasetFormatError": "errors",
        "PROFILES": "generator",
        "Manifest": "generator",
        "ManifestEntry": "generator",
        "Profile": "generator",
        "default_dataset_dir": "generator",
        "generate_dataset": "generator",
        "synthetic_name": "generator",
        "ReplayBufferInfo": "replay_buffer",
        "open_replay_buffer": "replay_buffer",
        "validate_replay_buffer": "replay_buffer",
        "VideoInfo": "video",
        "probe_mp4": "video",
    },
)

__all__ = [
    "PROFILES",
    "DatasetFormatError",
    "Manifest",
    "ManifestEntry",
    "Profile",
    "ReplayBufferInfo",
    "VideoInfo",
    "default_dataset_dir",
    "generate_dataset",
    "open_replay_buffer",
    "probe_mp4",
    "synthetic_name",
    "validate_replay_buffer",
]
