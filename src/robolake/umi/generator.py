"""Generate a deterministic synthetic UMI dataset: per-episode files, the replay buffer, a manifest.

Layout under ``out_dir`` (``XXXXX`` = episode index, 5 digits)::

    pose/episode_XXXXX.json      timestamps, UR5e joint angles, tool position, quaternion, rotvec
    gripper/episode_XXXXX.json   timestamps, width_m, force_n
    video/episode_XXXXX.mp4      H.264 59.94 fps fisheye view from the gripper's GoPro
    configs/experiment_XXX.yaml  (experiments=True) task, gripper, camera, policy hyperparameters
    replay_buffer/dataset.zarr.zip   UMI's training file (see replay_buffer.py)
    manifest.json                every file above with size and sha256, seed, profile, versions

PROFILES (frames at 59.94 Hz; replay-buffer frames are always 224 x 224 JPEG XL, ~40 KB each).
Time and size measured on this project's 2-core machine with the default two worker threads;
medium was measured while other jobs loaded the machine, large is extrapolated from it:

=========  ========  ================  =========  ===================================
profile    episodes  frames/episode    video      generation time, total size
=========  ========  ================  =========  ===================================
tiny       2         60-72 (~1.1 s)    160x120    ~3 s, ~5 MB (unit tests)
small      8         300-420 (~6 s)    320x240    100 s, 111 MB (2,703 frames)
medium     40        480-720 (~10 s)   480x360    34 min loaded, 974 MB (23,813 frames)
large      100       720-1080 (~15 s)  640x480    ~2 h (estimate), ~3.8 GB (~90,000 frames)
=========  ========  ================  =========  ===================================

The same seed, profile, episode count and robolake version (given the same PyAV/x264, libjxl and
numpy builds; the manifest records them) give byte-identical files: episodes draw from their own
seeded streams, every time stamp derives from the seed, and worker threads only change the order
in which independent episodes are computed, never the bytes or the order they are written in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import imagecodecs
import numpy as np
import yaml

from robolake import __version__
from robolake.errors import ConfigError
from robolake.umi.episode import FPS, GRIPPER_MAX_WIDTH_M, UR5E_JOINT_NAMES, Episode, synthesize_episode
from robolake.umi.naming import episode_file
from robolake.umi.render import FisheyeIntrinsics, render_frame
from robolake.umi.replay_buffer import IMAGE_SIZE, ReplayBufferWriter, encode_frame
from robolake.umi.video import VideoMetadata, write_mp4

SCHEMA_VERSION = 1
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Profile:
    """Size of a generated dataset: default episode count, frames per episode, video size."""

    name: str
    episodes: int
    min_frames: int
    max_frames: int
    video_width: int
    video_height: int


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("tiny", 2, 60, 72, 160, 120),
        Profile("small", 8, 300, 420, 320, 240),
        Profile("medium", 40, 480, 720, 480, 360),
        Profile("large", 100, 720, 1080, 640, 480),
    )
}


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative to the dataset directory, "/"-separated
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What was generated, how, and the size and digest of every file."""

    schema_version: int
    generator: str
    seed: int
    profile: str
    episodes: int
    frames_total: int
    fps: float
    camera_serial: str
    experiments: int
    encoders: dict[str, str]
    files: tuple[ManifestEntry, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        raw = json.loads(Path(path).read_bytes())
        raw["files"] = tuple(ManifestEntry(**f) for f in raw["files"])
        return cls(**raw)


def _encoders() -> dict[str, str]:
    libavcodec = ".".join(str(x) for x in av.library_versions["libavcodec"])
    return {
        "av": av.__version__,
        "libavcodec": libavcodec,
        "imagecodecs": imagecodecs.__version__,
        "libjxl": str(imagecodecs.jpegxl_version()),
        "numpy": np.__version__,
    }


@dataclass(frozen=True)
class _Plan:
    """Everything decided up front from the seed, so workers need nothing shared."""

    seed: int
    profile: Profile
    frames: tuple[int, ...]
    start_times: tuple[dt.datetime, ...]
    camera_serial: str


def _plan(seed: int, profile: Profile, episodes: int) -> _Plan:
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(0xDA7A,)))
    frames = tuple(int(x) for x in rng.integers(profile.min_frames, profile.max_frames + 1, episodes))
    serial = "C3441" + "".join(str(int(d)) for d in rng.integers(0, 10, 9))  # GoPro HERO9-style serial
    day = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=int(rng.integers(0, 366)))
    t = day + dt.timedelta(
        hours=int(rng.integers(9, 17)), minutes=int(rng.integers(0, 60)), seconds=int(rng.integers(0, 60))
    )
    starts = []
    for n in frames:
        starts.append(t)
        t += dt.timedelta(seconds=round(n / FPS + float(rng.uniform(4.0, 20.0)), 3))
    return _Plan(seed, profile, frames, tuple(starts), serial)


def _rows(array: np.ndarray[Any, Any], decimals: int = 6) -> list[Any]:
    return np.round(array, decimals).tolist()  # type: ignore[no-any-return]


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    os.replace(partial, path)


def _episode_files(out: Path, ep: Episode, plan: _Plan) -> None:
    common = {
        "schema_version": SCHEMA_VERSION,
        "episode_index": ep.index,
        "fps": FPS,
        "frame_count": ep.n_frames,
        "timestamps_s": _rows(ep.timestamps_s),
    }
    _write_json(
        out / "pose" / episode_file(ep.index, "json"),
        {
            **common,
            "frame": "table: x forward, z up, origin at the robot base, table top at z=0; metres, radians",
            "robot": "UR5e",
            "tcp_offset_m": 0.2,
            "joint_names": list(UR5E_JOINT_NAMES),
            "phases": [asdict(p) for p in ep.phases],
            "scene": asdict(ep.scene),
            "joint_positions_rad": _rows(ep.joint_positions_rad),
            "eef_position_m": _rows(ep.eef_pos_m),
            "eef_quaternion_xyzw": _rows(ep.eef_quat_xyzw, 7),
            "eef_rot_axis_angle": _rows(ep.eef_rotvec),
        },
    )
    _write_json(
        out / "gripper" / episode_file(ep.index, "json"),
        {
            **common,
            "max_width_m": GRIPPER_MAX_WIDTH_M,
            "width_m": _rows(ep.gripper_width_m),
            "force_n": _rows(ep.grip_force_n, 3),
        },
    )
    video = FisheyeIntrinsics.for_video(plan.profile.video_width, plan.profile.video_height)
    meta = VideoMetadata(
        plan.start_times[ep.index], plan.camera_serial, f"robolake synthetic UMI episode {ep.index} seed {plan.seed}"
    )
    frames = (render_frame(ep, f, video, noise_seed=plan.seed) for f in range(ep.n_frames))
    write_mp4(
        out / "video" / episode_file(ep.index, "mp4"), frames, width=video.width, height=video.height, metadata=meta
    )


def _make_episode(out: Path, plan: _Plan, index: int) -> tuple[Episode, list[bytes]]:
    ep = synthesize_episode(plan.seed, index, plan.frames[index])
    _episode_files(out, ep, plan)
    obs = FisheyeIntrinsics.for_video(plan.profile.video_width, plan.profile.video_height).center_square(IMAGE_SIZE[0])
    chunks = [
        encode_frame(render_frame(ep, f, obs, noise_seed=plan.seed + 1, mask_gripper=True)) for f in range(ep.n_frames)
    ]
    return ep, chunks


def _replay_lowdim(ep: Episode) -> dict[str, np.ndarray[Any, Any]]:
    t = ep.n_frames
    return {
        "robot0_eef_pos": ep.eef_pos_m.astype(np.float32),
        "robot0_eef_rot_axis_angle": ep.eef_rotvec.astype(np.float32),
        "robot0_gripper_width": ep.gripper_width_m[:, None].astype(np.float32),
        "robot0_demo_start_pose": np.tile(ep.demo_start_pose, (t, 1)),
        "robot0_demo_end_pose": np.tile(ep.demo_end_pose, (t, 1)),
    }


def _ordered(pool: ThreadPoolExecutor, out: Path, plan: _Plan, window: int) -> Iterator[tuple[Episode, list[bytes]]]:
    """Episodes in index order, at most ``window`` computed ahead of the consumer."""
    pending: dict[int, Future[tuple[Episode, list[bytes]]]] = {}
    total = len(plan.frames)
    for i in range(total):
        for j in range(i, min(total, i + window)):
            if j not in pending:
                pending[j] = pool.submit(_make_episode, out, plan, j)
        yield pending.pop(i).result()


_SWEEP = (  # (learning rate, action horizon, observation horizon)
    (3.0e-4, 16, 2),
    (1.0e-4, 16, 2),
    (3.0e-4, 32, 2),
)


def _experiment_configs(out: Path, plan: _Plan, n_steps: int) -> None:
    video = FisheyeIntrinsics.for_video(plan.profile.video_width, plan.profile.video_height)
    for k, (lr, action_horizon, obs_horizon) in enumerate(_SWEEP):
        config = {
            "experiment": f"experiment_{k:03d}",
            "task": {
                "name": "cup_pick_and_place",
                "description": "pick the cup up and put it on the plate",
                "dataset_path": "replay_buffer/dataset.zarr.zip",
                "episodes": len(plan.frames),
                "steps": n_steps,
                "fps": round(FPS, 5),
                "action": "concat(robot0_eef_pos, robot0_eef_rot_axis_angle, robot0_gripper_width)",
            },
            "gripper": {
                "model": "UMI soft-finger parallel gripper",
                "max_width_m": GRIPPER_MAX_WIDTH_M,
                "camera_serial": plan.camera_serial,
            },
            "camera": {
                "name": "camera0_rgb",
                "video": video.as_dict(),
                "observation": {
                    **video.center_square(IMAGE_SIZE[0]).as_dict(),
                    "crop": "center_square",
                    "mask": "gripper_mount",
                },
            },
            "policy": {
                "type": "diffusion_unet_image",
                "obs_encoder": "vit_base_patch16_clip_224",
                "img_obs_horizon": obs_horizon,
                "low_dim_obs_horizon": obs_horizon,
                "action_horizon": action_horizon,
                "down_sample_steps": 3,
                "num_inference_steps": 16,
                "gripper_width_threshold_m": 0.08,
            },
            "training": {
                "batch_size": 64,
                "learning_rate": lr,
                "weight_decay": 1.0e-6,
                "num_epochs": 120,
                "lr_warmup_steps": 2000,
                "ema": True,
                "seed": plan.seed + k,
            },
        }
        path = out / "configs" / f"experiment_{k:03d}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=False))


DATASETS_DIR = Path("umi_data")  # where generated datasets go by default, one folder per dataset


def synthetic_name(profile: str, seed: int, episodes: int | None = None) -> str:
    """The lake name of a generated dataset (``synthetic_small_s0_e8``); episodes default to the profile's."""
    if profile not in PROFILES:
        raise ConfigError(f"profile {profile!r} is unknown; choose one of {sorted(PROFILES)}")
    return f"synthetic_{profile}_s{seed}_e{PROFILES[profile].episodes if episodes is None else episodes}"


def default_dataset_dir(profile: str, seed: int, episodes: int | None = None, name: str | None = None) -> Path:
    """``umi_data/<name>``: each dataset its own folder, so generating one never touches another."""
    return DATASETS_DIR / (name or synthetic_name(profile, seed, episodes))


_GENERATED_ENTRIES = frozenset({"pose", "gripper", "video", "configs", "replay_buffer", "manifest.json"})


def _prepare(out: Path) -> None:
    """Use an empty or missing directory, or replace a dataset robolake generated there before."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not out.is_dir():
        raise ConfigError(f"out_dir {str(out)!r} is a file; choose a directory")
    if not any(out.iterdir()):
        return
    manifest = out / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(
            f"out_dir {str(out)!r} is not empty and holds no robolake manifest.json; "
            "choose an empty directory so nothing of yours is overwritten"
        )
    foreign = sorted(p.name for p in out.iterdir() if p.name not in _GENERATED_ENTRIES)
    if foreign:
        raise ConfigError(
            f"out_dir {str(out)!r} holds an earlier generated dataset but also {', '.join(map(repr, foreign[:3]))}, "
            "which robolake did not write; choose another directory so nothing of yours is overwritten"
        )
    manifest.unlink()
    for sub in _GENERATED_ENTRIES - {"manifest.json"}:
        shutil.rmtree(out / sub, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def generate_dataset(
    out_dir: str | Path,
    *,
    episodes: int | None = None,
    seed: int = 0,
    profile: str = "small",
    experiments: bool = False,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> Manifest:
    """Generate a synthetic UMI dataset under ``out_dir`` and return (and write) its manifest.

    ``episodes`` defaults to the profile's count; ``progress(n_done, n_total)`` is called with
    episodes done; ``workers`` threads (default: the CPU count, at most 4) render in parallel.
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile {profile!r} is unknown; choose one of {sorted(PROFILES)}")
    prof = PROFILES[profile]
    n_episodes = prof.episodes if episodes is None else episodes
    if n_episodes < 1:
        raise ConfigError(f"episodes={n_episodes!r} must be at least 1")
    if seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    out = Path(out_dir)
    plan = _plan(seed, prof, n_episodes)
    earlier = _intact_earlier(out, seed, profile, n_episodes)
    if earlier is not None and (earlier.experiments > 0) == experiments:
        if progress:
            progress(n_episodes, n_episodes)
        return earlier  # the same parameters give the same bytes: nothing to redo
    if earlier is not None and experiments:
        _experiment_configs(out, plan, earlier.frames_total)  # only the configs are missing
        return _write_manifest(out, plan, profile, n_episodes, earlier.frames_total, experiments)
    _prepare(out)
    n_workers = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))
    if progress:
        progress(0, n_episodes)
    writer = ReplayBufferWriter(out / "replay_buffer" / "dataset.zarr.zip")
    with writer, ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="umi-gen") as pool:
        for done, (ep, chunks) in enumerate(_ordered(pool, out, plan, window=2 * n_workers), start=1):
            writer.add_episode(_replay_lowdim(ep), {"camera0_rgb": chunks})
            if progress:
                progress(done, n_episodes)
    n_steps = sum(plan.frames)
    if experiments:
        _experiment_configs(out, plan, n_steps)
    return _write_manifest(out, plan, profile, n_episodes, n_steps, experiments)


def _intact_earlier(out: Path, seed: int, profile: str, episodes: int) -> Manifest | None:
    """The manifest in `out` if it was made with these parameters and every file still matches it."""
    try:
        earlier = Manifest.load(out / "manifest.json")
    except (OSError, ValueError, TypeError, KeyError):
        return None
    same = (
        earlier.schema_version,
        earlier.generator,
        earlier.seed,
        earlier.profile,
        earlier.episodes,
        earlier.encoders,
    ) == (SCHEMA_VERSION, f"robolake.umi {__version__}", seed, profile, episodes, _encoders())
    if not same:
        return None
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    if on_disk != {f.path for f in earlier.files}:
        return None
    for entry in earlier.files:
        path = out / entry.path
        if path.stat().st_size != entry.size_bytes or _sha256(path) != entry.sha256:
            return None
    return earlier


def _write_manifest(out: Path, plan: _Plan, profile: str, n_episodes: int, n_steps: int, experiments: bool) -> Manifest:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        generator=f"robolake.umi {__version__}",
        seed=plan.seed,
        profile=profile,
        episodes=n_episodes,
        frames_total=n_steps,
        fps=FPS,
        camera_serial=plan.camera_serial,
        experiments=len(_SWEEP) if experiments else 0,
        encoders=_encoders(),
        files=tuple(ManifestEntry(p.relative_to(out).as_posix(), p.stat().st_size, _sha256(p)) for p in files),
    )
    (out / "manifest.json").write_bytes(manifest.to_json())
    return manifest
