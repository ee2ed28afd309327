"""A map-style dataset of UMI training windows over a replay buffer at one lakeFS commit.

    ds = LakeDataset.open(settings, "v1.0", "replay_buffer/dataset.zarr.zip", SamplerConfig.umi())
    ds.commit_id            # the ref, resolved once; every byte is read at this commit
    len(ds), ds[0]          # {"camera0_rgb": (2, H, W, 3) uint8, "robot0_eef_pos": (2, 3), ..., "action": (16, 7)}
    LakeDataset.open(..., output="policy")[0]   # {"obs": {...float32 CHW in [0, 1]...}, "action": float32}

``output="window"`` is ``SequenceSampler.sample_sequence``: per key the stored dtype, rgb (T, H, W, C)
uint8. ``output="policy"`` is what UMI's ``UmiDataset.__getitem__`` feeds diffusion policy, up to
its pose processing: rgb moved channel-first and scaled, ``np.moveaxis(x, -1, 1).astype(float32) /
255``; low-dim obs as float32; ``action`` float32, the concatenation of eef_pos, eef_rot_axis_angle
and gripper_width (7 per robot) over the action horizon. Not done here: UmiDataset
then re-expresses obs and action poses relative to the current end-effector pose, rotations as
6-D (``action`` (16, 10)), adds ``*_wrt_start`` from demo_start_pose, and returns torch tensors.

How the bytes travel. The ref is resolved to a commit id once (``GET /commits/{ref}``), the zip is
``stat``-ed once at that commit, and its physical address in ``s3://lakefs-storage`` is read by
``Range`` GETs through the accelerator (``via="accelerator"``, the default). The alternative,
lakeFS's S3 gateway (``via="gateway"``: bucket = repository, key = ``<commit>/<path>``), gives the
same bytes, but each range then goes client -> lakeFS -> accelerator -> MinIO (lakeFS's blockstore
endpoint is the accelerator), and lakeFS resolves the path again for every range: 1.7-3.3 ms of
lakeFS CPU per range (ml package docstring) that the direct path does not spend, taken from MinIO
and the loader on the same cores. Nothing is lost by going round lakeFS: a commit's physical
addresses, and the bytes under them, never change. The gateway stays for readers that hold only
lakeFS keys.

Low-dim arrays and ``episode_ends`` are read once at open; a sample reads only its rgb frames,
each checked by CRC-32. With ``cache_dir`` (what training should use) every read goes through
aligned blocks of the zip on local disk (blocks.py): the first epoch fetches each block once,
~size / 4 MiB GETs shared by all workers, and later epochs read local files. Without it, a batch's
frames are ranged GETs, neighbours within 256 KiB in one. ``schedule`` (the hint robolake's torch
adapter gives each worker: its samples of the epoch, in order) lets background threads fetch
ahead (prefetch.py), so fetching overlaps decoding; ``__getitems__`` reads a batch at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from robolake.config import Settings
from robolake.errors import ConfigError
from robolake.ml.blocks import BLOCK_BYTES, BlockCache
from robolake.ml.normalizer import Mode, Normalizer
from robolake.ml.prefetch import Prefetcher
from robolake.ml.remote import RangeSource, RemoteZip, array_info, decode, read_array
from robolake.ml.windows import SamplerConfig, action_steps, build_indices, check_fits, lowdim_steps, rgb_steps
from robolake.storage.s3 import S3Target
from robolake.umi.errors import DatasetFormatError
from robolake.umi.zarr_store import ArrayInfo
from robolake.versioning import LakeFSClient, NotFoundError, ObjectStat

Output = Literal["window", "policy"]
Via = Literal["accelerator", "gateway"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Located:
    """A replay buffer at one commit: what was asked for and what it resolved to."""

    repo: str
    ref: str
    commit_id: str
    path: str
    stat: ObjectStat

    @property
    def where(self) -> str:
        return f"lakefs://{self.repo}/{self.commit_id}/{self.path}"


def resolve(client: LakeFSClient, repo: str, ref: str, path: str) -> Located:
    """The commit `ref` names and the replay buffer at `path` (a ``*.zarr.zip``, or a prefix holding one)."""
    try:
        commit_id = client.get_commit(repo, ref).id
    except NotFoundError as exc:
        if exc.kind == "repository":
            raise
        raise NotFoundError(
            f"ref {ref!r} is not a branch, tag or commit of repository {repo!r}; check its name "
            "(`robolake version tag list`, `robolake version log main` list tags and commits)",
            status=404,
        ) from exc
    at = f"in {repo!r} at commit {commit_id[:12]} (ref {ref!r})"
    if not path.endswith(".zarr.zip"):
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        found = [o.path for o in client.list_objects(repo, commit_id, prefix) if o.path.endswith(".zarr.zip")]
        if len(found) > 1:
            raise ConfigError(f"path {path!r} holds {len(found)} replay buffers {at}: {found[:5]!r}; name one")
        if not found:
            raise NotFoundError(f"path {path!r} holds no replay buffer (*.zarr.zip) {at}", status=404)
        path = found[0]
    try:
        stat = client.stat_object(repo, commit_id, path)
    except NotFoundError as exc:
        raise NotFoundError(f"no replay buffer at path {path!r} {at}; check the path", status=404) from exc
    return Located(repo=repo, ref=ref, commit_id=commit_id, path=path, stat=stat)


def range_source(settings: Settings, found: Located, via: Via) -> RangeSource:
    """Where the bytes of `found` are read from (see the module docstring for the choice)."""
    if via == "gateway":
        key_id, secret = settings.resolve_lakefs_keys()
        target = S3Target(endpoint=settings.lakefs_endpoint, access_key=key_id, secret_key=secret)
        return RangeSource(target, found.repo, f"{found.commit_id}/{found.path}")
    if via != "accelerator":
        raise ConfigError(f"via {via!r} is not 'accelerator' or 'gateway'")
    address = found.stat.physical_address
    bucket, _, key = address.removeprefix("s3://").partition("/")
    if not address.startswith("s3://") or not key:
        raise ConfigError(f"{found.where} is stored at {address!r}, not an s3:// address; read it with via='gateway'")
    return RangeSource(S3Target.from_settings(settings), bucket, key)


def check_arrays(zf: RemoteZip, config: SamplerConfig, where: str) -> None:
    """ConfigError naming every array the sampler config needs and the buffer lacks."""
    needed = ["meta/episode_ends", *(f"data/{name}" for name in config.needed_arrays())]
    missing = [name for name in needed if f"{name}/.zarray" not in zf.infos]
    if missing:
        present = sorted(n.removesuffix("/.zarray") for n in zf.infos if n.endswith("/.zarray"))
        raise ConfigError(
            f"the replay buffer {where} lacks {', '.join(repr(m) for m in missing)}, which the sampler "
            f"config needs; it has {present!r}"
        )


class LakeDataset:
    """UMI sampler windows over one replay buffer at one commit; build it with :meth:`open`."""

    # The background fetch (schedule): samples per fetch call, samples held ahead, threads per process.
    PREFETCH_GROUP = 8
    PREFETCH_AHEAD = 64
    PREFETCH_THREADS = 2

    def __init__(
        self, found: Located, zf: RemoteZip, config: SamplerConfig, output: Output, normalizer: Normalizer | None = None
    ) -> None:
        self.found, self.zip, self.config, self.output = found, zf, config, output
        self.normalizer = normalizer
        if normalizer is not None:
            normalizer.require([*config.lowdim, "action"])
        self._ahead: Prefetcher[int] | None = None
        # What was read, fixed for the dataset's life: the ref as given and the commit it resolved to.
        self.repo, self.ref, self.commit_id, self.path = found.repo, found.ref, found.commit_id, found.path
        ends_info, _ = array_info(zf, "meta/episode_ends")
        self.episode_ends: npt.NDArray[np.int64] = read_array(zf, "meta/episode_ends").astype(np.int64)
        ends = self.episode_ends
        if len(ends_info.shape) != 1 or not len(ends) or ends[0] <= 0 or np.any(np.diff(ends) <= 0):
            raise DatasetFormatError(found.where, "meta/episode_ends must be positive and strictly increasing")
        check_fits(self.episode_ends, config, found.where)
        self.n_steps = int(self.episode_ends[-1])
        self.rgb_info = {key: self._rgb_info(key) for key in config.rgb}
        self.lowdim = {key: self._lowdim(key) for key in {*config.lowdim, *config.action_sources()}}
        self.action_array = np.concatenate([self.lowdim[k] for k in config.action_sources()], axis=-1)
        self.indices = build_indices(self.episode_ends, config)

    @classmethod
    def open(
        cls,
        settings: Settings,
        ref: str,
        path: str,
        config: SamplerConfig | None = None,
        *,
        repo: str | None = None,
        output: Output = "window",
        via: Via = "accelerator",
        client: LakeFSClient | None = None,
        cache_dir: Path | None = None,
        block_bytes: int = BLOCK_BYTES,
        normalize: Mode | Normalizer | None = None,
        stats_path: str | None = None,
    ) -> LakeDataset:
        """Resolve `ref` once, find the buffer, check it against `config`, load episode ends and low-dim arrays.

        Every bad input fails here, before a sample is read: ConfigError for settings the buffer or
        UMI's sampler cannot serve, NotFoundError for a ref or path that does not exist. With
        `cache_dir`, the zip is read in aligned blocks of `block_bytes`, each fetched once and kept
        there for later epochs and every other process (keyed by repository, commit and path; it
        needs about the zip's size of free disk). Without it, each read is a ranged GET.
        `normalize` ("limits": [-1, 1] by min/max, "gaussian": zero mean, unit std; see normalizer.py)
        maps the low-dim keys and the action by the statistics in `stats_path` (default: the
        ``stats.json`` beside the buffer, as ``robolake process stats`` writes it) at the same commit.
        """
        config = config or SamplerConfig.umi()
        config.check()
        if output not in ("window", "policy"):
            raise ConfigError(f"output {output!r} is not 'window' or 'policy'")
        repo = repo or settings.lakefs_repo
        lakefs = client or LakeFSClient.from_settings(settings)
        try:
            found = resolve(lakefs, repo, ref, path)
            normalizer = load_normalizer(lakefs, found, normalize, stats_path, config)
        finally:
            if client is None:
                lakefs.close()
        size = found.stat.size_bytes
        blocks = BlockCache(cache_dir, found.where, size, block_bytes=block_bytes) if cache_dir is not None else None
        zf = RemoteZip(range_source(settings, found, via), size, found.where, blocks=blocks)
        check_arrays(zf, config, found.where)
        return cls(found, zf, config, output, normalizer)

    # ---- what was read ------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"LakeDataset({self.found.where}, ref={self.ref!r}, samples={len(self)}, output={self.output!r})"

    def lineage(self) -> dict[str, Any]:
        """What a run record keeps of this dataset."""
        return {
            "repo": self.repo,
            "ref": self.ref,
            "commit_id": self.commit_id,
            "path": self.path,
            "size_bytes": self.found.stat.size_bytes,
            "checksum": self.found.stat.checksum,
            "n_episodes": len(self.episode_ends),
            "n_samples": len(self),
            "sampler": self.config.as_dict(),
            "normalize": self.normalizer.as_dict() if self.normalizer else None,
        }

    # ---- samples ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Samples `indices` (torch's batched fetch): one read for all their frames, each frame decoded once."""
        rows = [self._row(i) for i in indices]
        names = {row: self._frame_names(row) for row in rows}
        raw: dict[str, bytes] = {}
        if self._ahead is not None:
            for held in self._ahead.take(rows).values():
                raw.update(held)
        wanted = {name for row_names in names.values() for name in row_names}
        raw.update(self.zip.read_entries(wanted - raw.keys()))
        frames = {name: self._decode(name, raw[name]) for name in wanted}
        return [self._sample(row, frames) for row in rows]

    def schedule(self, indices: Sequence[int]) -> None:
        """These samples will be read next, in this order: fetch their bytes in the background.

        Replaces what an earlier call planned and was not fetched yet. With a block cache, the
        threads put the blocks the samples need on local disk (a block another worker is
        fetching is left to it); without one, they keep the samples' frame bytes in memory, at
        most PREFETCH_AHEAD samples ahead. Safe in a forked DataLoader worker: the threads start
        in the process that calls this, at its first call.
        """
        rows = [self._row(i) for i in indices]
        if self._ahead is None:
            self._ahead = Prefetcher(
                self._prefetch, group=self.PREFETCH_GROUP, ahead=self.PREFETCH_AHEAD, threads=self.PREFETCH_THREADS
            )
        self._ahead.schedule(rows)

    def __getstate__(self) -> dict[str, Any]:
        # A worker that receives the dataset by pickle plans its own reads (and its source its own connections).
        return {**self.__dict__, "_ahead": None}

    def _row(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range: the dataset has {len(self)}")
        return int(index) % len(self)

    def _frame_names(self, row: int) -> list[str]:
        current, start, _ = (int(x) for x in self.indices[row])
        return [
            f"data/{key}/{int(s)}.0.0.0" for key, w in self.config.rgb.items() for s in rgb_steps(current, start, w)
        ]

    def _prefetch(self, rows: list[int]) -> dict[int, dict[str, bytes]] | None:
        names = {row: self._frame_names(row) for row in rows}
        if self.zip.blocks is not None:
            self.zip.fetch_blocks(name for row_names in names.values() for name in row_names)
            return None
        raw = self.zip.read_entries({name for row_names in names.values() for name in row_names})
        return {row: {name: raw[name] for name in row_names} for row, row_names in names.items()}

    def _sample(self, row: int, frames: dict[str, npt.NDArray[np.uint8]]) -> dict[str, Any]:
        current, start, end = (int(x) for x in self.indices[row])
        window: dict[str, Any] = {
            key: np.stack([frames[f"data/{key}/{int(s)}.0.0.0"] for s in rgb_steps(current, start, w)])
            for key, w in self.config.rgb.items()
        }
        for key, w in self.config.lowdim.items():
            window[key] = self.lowdim[key][lowdim_steps(current, start, end, w)]
        window["action"] = self.action_array[action_steps(current, end, self.config.action, self.config.action_padding)]
        if self.normalizer is not None:
            window = self.normalizer.apply(window, [*self.config.lowdim, "action"])
        return window if self.output == "window" else to_policy(window, self.config)

    def _decode(self, name: str, raw: bytes) -> npt.NDArray[np.uint8]:
        key = name.split("/")[1]
        info = self.rgb_info[key]
        frame: npt.NDArray[np.uint8] = decode(self.zip, f"data/{key}", info, None, raw)
        if frame.shape != info.shape[1:] or frame.dtype != np.uint8:
            raise DatasetFormatError(
                self.found.where,
                f"{name} decodes to {frame.dtype} {list(frame.shape)}, expected {list(info.shape[1:])}",
            )
        return frame

    # ---- checks at open -----------------------------------------------------------------

    def _rgb_info(self, key: str) -> ArrayInfo:
        info, _ = array_info(self.zip, f"data/{key}")
        shape = info.shape
        if len(shape) != 4 or shape[3] != 3 or info.dtype != "|u1" or info.chunks != (1, *shape[1:]):
            raise DatasetFormatError(
                self.found.where,
                f"data/{key} is {info.dtype} {list(shape)} chunks {list(info.chunks)}, "
                "expected |u1 (N, H, W, 3), one frame per chunk",
            )
        if info.compressor_id != "imagecodecs_jpegxl":
            raise DatasetFormatError(
                self.found.where, f"data/{key} uses codec {info.compressor_id!r}, expected UMI's 'imagecodecs_jpegxl'"
            )
        self._check_steps(key, shape[0])
        return info

    def _lowdim(self, key: str) -> npt.NDArray[Any]:
        array = read_array(self.zip, f"data/{key}")
        self._check_steps(key, array.shape[0])
        return array

    def _check_steps(self, key: str, steps: int) -> None:
        if steps != self.n_steps:
            raise DatasetFormatError(
                self.found.where, f"data/{key} has {steps} steps but episode_ends[-1] = {self.n_steps}"
            )


def load_normalizer(
    client: LakeFSClient,
    found: Located,
    normalize: Mode | Normalizer | None,
    stats_path: str | None,
    config: SamplerConfig,
) -> Normalizer | None:
    """The normalizer `normalize` asks for: as given, or fitted from a stats.json at the buffer's commit."""
    if normalize is None or isinstance(normalize, Normalizer):
        return normalize
    folder = found.path.rpartition("/")[0]
    path = stats_path or (f"{folder}/stats.json" if folder else "stats.json")
    where = f"lakefs://{found.repo}/{found.commit_id}/{path}"
    try:
        doc = json.loads(client.get_object(found.repo, found.commit_id, path))
    except NotFoundError:
        raise NotFoundError(
            f"no statistics at {where} for normalize={normalize!r}; write them with `robolake process stats` "
            "(at a commit holding this buffer), or give stats_path",
            status=404,
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetFormatError(where, f"is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DatasetFormatError(where, "is not a JSON object of features")
    return Normalizer.from_stats(doc, normalize, action_sources=config.action_sources(), source=where)


def to_policy(window: dict[str, Any], config: SamplerConfig) -> dict[str, Any]:
    """UmiDataset's sample before its pose processing: float32 CHW images in [0, 1], float32 low-dim and action."""
    obs: dict[str, Any] = {key: np.moveaxis(window[key], -1, 1).astype(np.float32) / 255.0 for key in config.rgb}
    obs.update({key: window[key].astype(np.float32) for key in config.lowdim})
    return {"obs": obs, "action": window["action"].astype(np.float32)}
