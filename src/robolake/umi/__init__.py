"""Synthetic UMI (Universal Manipulation Interface) data, written in UMI's real formats.

    generate_dataset(out_dir, *, episodes, seed, profile, experiments, progress) -> Manifest
    validate_replay_buffer(path) -> ReplayBufferInfo       (raises DatasetFormatError)
    probe_mp4(path) -> VideoInfo

Modules: ``episode`` (trajectories), ``render`` (the gripper camera's view), ``video`` (H.264
MP4), ``replay_buffer`` (UMI's zarr v2 zip: writer, and UMI's rules for the validator),
``zarr_store`` (reading a zarr v2 zip without trusting it), ``naming`` (``episode_XXXXX`` file
names, for every layer), ``generator`` (the layout).
"""

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
