"""UMI's training-side reader of ``dataset.zarr.zip``, reproduced from its published behaviour.

Option chosen: a fixture written in our own words, because neither alternative exists at test time:
no PyPI package ships UMI's ``diffusion_policy`` (the one candidate, ``diffusion-policy-accelerated``
1.5, holds CUDA kernels and a Push-T model, no codecs, replay buffer or sampler), and GitHub, where
real-stanford/universal_manipulation_interface lives, is unreachable when the tests run.

What is reproduced, and from where in that repository:

- ``diffusion_policy/codecs/imagecodecs_numcodecs.py``, class ``JpegXl``: codec id
  ``imagecodecs_jpegxl``; ``__init__`` takes exactly level, effort, distance, lossless,
  decodingspeed, photometric, planar, usecontainer, index, keeporientation and numthreads, so a
  ``.zarray`` naming any other key (``bitspersample``, ``squeeze``) raises ``TypeError`` when zarr
  builds the codec; every argument is kept as an attribute (``lossless`` as a bool), which is what
  numcodecs' ``get_config`` records; frames are encoded and decoded by imagecodecs.
- ``diffusion_policy/common/replay_buffer.py``, ``ReplayBuffer.copy_from_store(src_store=
  zarr.ZipStore(path, mode='r'), store=zarr.MemoryStore())``: opens every ``data/*`` array (which
  builds its codec), copies the chunks still compressed, then checks every array against
  ``episode_ends``.
- ``diffusion_policy/common/sampler.py``, ``SequenceSampler`` with ``task/umi.yaml``'s settings:
  the window indices (no action padding) and the strided, front-padded slice of rgb frames that is
  decoded per sample; ``umi_dataset.py`` turns it into float32 CHW in [0, 1].

Standalone on purpose: it imports only numpy, zarr 2, numcodecs and imagecodecs, so the e2e test
runs it in the separate zarr 2.16 virtualenv where robolake is not installed.
"""

from __future__ import annotations

import math
from typing import Any

import imagecodecs
import numcodecs.registry
import numpy as np
import zarr
from numcodecs.abc import Codec

# What UMI's JpegXl(level=99, numthreads=1) records in a .zarray (07_generate_replay_buffer.py).
UMI_RECORDED_CONFIG: dict[str, Any] = {
    "decodingspeed": None,
    "distance": None,
    "effort": None,
    "id": "imagecodecs_jpegxl",
    "index": None,
    "keeporientation": None,
    "level": 99,
    "lossless": False,
    "numthreads": 1,
    "photometric": None,
    "planar": None,
    "usecontainer": None,
}

# task/umi.yaml: obs and action down-sampled by 3, image horizon 2, action horizon 16.
DOWN_SAMPLE_STEPS = 3
IMAGE_HORIZON = 2
ACTION_HORIZON = 16


class UmiJpegXl(Codec):
    """UMI's vendored JPEG XL codec: its id, its exact keyword set, its recorded config."""

    codec_id = "imagecodecs_jpegxl"

    def __init__(
        self,
        level: Any = None,
        effort: Any = None,
        distance: Any = None,
        lossless: Any = None,
        decodingspeed: Any = None,
        photometric: Any = None,
        planar: Any = None,
        usecontainer: Any = None,
        index: Any = None,
        keeporientation: Any = None,
        numthreads: Any = None,
    ) -> None:
        # Public attributes are the config numcodecs records, so their names and order matter.
        self.level, self.effort, self.distance = level, effort, distance
        self.lossless = bool(lossless)
        self.decodingspeed, self.photometric, self.planar = decodingspeed, photometric, planar
        self.usecontainer, self.index, self.keeporientation = usecontainer, index, keeporientation
        self.numthreads = numthreads

    def encode(self, buf: Any) -> Any:
        image = np.asarray(buf)
        # zarr hands over a (1, H, W, C) chunk; only a lone frame loses its leading axes.
        frames = math.prod(image.shape[:-3]) if image.ndim > 3 else 1
        image = image.reshape(image.shape[-3:] if frames == 1 else (-1, *image.shape[-3:]))
        return imagecodecs.jpegxl_encode(
            image,
            level=self.level,
            effort=self.effort,
            distance=self.distance,
            lossless=self.lossless,
            decodingspeed=self.decodingspeed,
            photometric=self.photometric,
            planar=self.planar,
            usecontainer=self.usecontainer,
            numthreads=self.numthreads,
        )

    def decode(self, buf: Any, out: Any = None) -> Any:
        return imagecodecs.jpegxl_decode(
            buf, index=self.index, keeporientation=self.keeporientation, numthreads=self.numthreads, out=out
        )


def register_umi_codecs() -> None:
    """Make ``imagecodecs_jpegxl`` mean UMI's class, as UMI's ``register_codecs()`` does in its environment.

    Process-wide: unit tests put the class into ``numcodecs.registry.codec_registry`` with monkeypatch instead.
    """
    numcodecs.registry.register_codec(UmiJpegXl)


def copy_from_store(path: str) -> Any:
    """``ReplayBuffer.copy_from_store`` from a ``ZipStore`` into a ``MemoryStore``; returns the root group."""
    with zarr.ZipStore(path, mode="r") as src:
        src_root = zarr.group(src)
        root = zarr.group(store=zarr.MemoryStore())
        zarr.copy_store(src, root.store, source_path="/meta", dest_path="/meta", if_exists="replace")
        root.create_group("data", overwrite=True)
        for key in src_root["data"]:
            # Opening the array builds its codec from .zarray: a key UMI's class lacks fails here. UMI
            # re-encodes only when asked for other chunks or another compressor; by default it copies.
            _ = src_root["data"][key].compressor
            zarr.copy_store(src, root.store, source_path=f"/data/{key}", dest_path=f"/data/{key}", if_exists="replace")
    steps = int(root["meta/episode_ends"][-1])
    for key, array in root["data"].arrays():  # ReplayBuffer.__init__
        if array.shape[0] != steps:
            raise ValueError(f"data/{key} has {array.shape[0]} steps, episode_ends[-1] is {steps}")
    return root


def sampler_windows(
    episode_ends: Any, action_horizon: int = ACTION_HORIZON, down_sample_steps: int = DOWN_SAMPLE_STEPS
) -> list[tuple[int, int, int]]:
    """SequenceSampler's ``(current, episode start, episode end)`` per sample, without action padding."""
    windows: list[tuple[int, int, int]] = []
    start = 0
    for end in (int(e) for e in episode_ends):
        last = end - (action_horizon - 1) * down_sample_steps - 1  # the action window must fit the episode
        windows.extend((current, start, end) for current in range(start, last + 1))
        start = end
    return windows


def rgb_window(
    frames: Any, current: int, start: int, horizon: int = IMAGE_HORIZON, down_sample_steps: int = DOWN_SAMPLE_STEPS
) -> np.ndarray[Any, Any]:
    """The frames SequenceSampler decodes for one sample: strided back from ``current``, front-padded."""
    valid = min(horizon, (current - start) // down_sample_steps + 1)
    out = np.asarray(frames[current - (valid - 1) * down_sample_steps : current + 1 : down_sample_steps])
    if out.shape[0] < horizon:
        out = np.concatenate([np.repeat(out[:1], horizon - out.shape[0], axis=0), out], axis=0)
    return out


def to_obs(window: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """UmiDataset's image observation: (T, H, W, C) uint8 to (T, C, H, W) float32 in [0, 1]."""
    return np.moveaxis(window, -1, 1).astype(np.float32) / 255.0
