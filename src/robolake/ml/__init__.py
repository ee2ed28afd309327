"""Train from the lake: UMI sampler windows read from a lakeFS commit, and run records.

    from robolake.ml import LakeDataset, SamplerConfig, EpochOrder, RunRecord, write_run_record
    ds = LakeDataset.open(settings, "v1.0", "replay_buffer/dataset.zarr.zip", SamplerConfig.umi())
    order = EpochOrder(len(ds), seed=7)
    uri = write_run_record(settings, RunRecord.for_dataset(ds, seed=7))
    for i in order: sample = ds[i]

numpy only (no torch): a map-style dataset any loader can wrap. Modules: ``windows`` (UMI's
SequenceSampler index logic and its train/val split), ``remote`` (a zarr v2 zip in the lake read
by byte range), ``dataset`` (LakeDataset: the ref resolved once, the bytes through the
accelerator), ``order`` (seeded, resumable epoch order), ``runs`` (lineage records), ``loader``
(``make_loader``: the PyTorch adapter, torch imported on first use, ``pip install 'robolake[torch]'``).

How the bytes are read (``blocks``, ``prefetch``): with ``cache_dir``, in aligned 4 MiB blocks of
the zip, each fetched once into a local directory that every worker process shares; a worker's
``schedule(indices)`` fetches ahead in background threads and ``__getitems__`` reads a batch's
frames at once. Why, measured on this shared 2-core machine while other jobs ran (load average
7-15), with one process reading the small-profile zip through the accelerator:

  decoding one 224x224 JPEG XL frame (~40 KB)         2.9 ms CPU (7 ms wall under that load)
  one ranged GET, CPU ms: client / MinIO / accelerator / lakeFS, and wall ms
    40 KB (one frame)                                  2.7 / 7.0 / 1.0 / 0.0    13.5
    1 MiB                                              2.3 / 7.8 / 1.7 / 0.2    12.9
    4 MiB (one block)                                  3.7 / 12.5 / 4.6 / 0.4   30.7
    16 MiB                                             8.9 / 25.0 / 13.3 / 0.0  50.3
  (through lakeFS's S3 gateway the same ranges cost lakeFS 1.7-3.3 ms more, 11.7 at 16 MiB)

A frame fetched by its own GET costs ~11 ms of CPU on the same two cores, almost four decodes;
inside a 4 MiB block (~100 frames) it costs ~0.2 ms, and in later epochs nothing but a local read.
``robolake bench dataloader --mode training`` (6 small-profile episodes: 81.6 MiB zip, 1,572
samples per epoch, 2 fork workers, batches of 16, 3 epochs, UMI's loader run before and after
each robolake epoch), three runs at load 4.5-10: robolake reached 1.00-1.39x the samples/s of
UMI's own loader (zip from local disk into memory) in the cold first epoch and 0.88-1.36x in five
of the six warm ones (0.47x in one, during a load spike from other jobs), spending 0.95-0.99x
(cold) and 0.87-1.15x (warm) its CPU per sample, the figure such spikes do not move (UMI's:
5.4-6.9 ms, decoding two frames and zarr's overhead); without a cache directory (ranged GETs,
neighbours coalesced, prefetched into memory; one run) 0.38-0.67x at ~3x the CPU; one GET per
frame 0.14-0.43x at ~5x. With 1 / 4 / 16 MiB blocks the cold epoch cost 0.88x / 0.95-0.99x /
1.01x UMI's CPU per sample: 4 MiB keeps the first fetch short and a damaged block cheap to read
again.
"""

from typing import TYPE_CHECKING

from robolake.lazy import lazy_exports

if TYPE_CHECKING:
    from robolake.ml.dataset import LakeDataset, Located, to_policy
    from robolake.ml.loader import LakeLoader, MissingExtraError, make_loader
    from robolake.ml.order import BatchOrder, EpochOrder
    from robolake.ml.runs import RunRecord, list_runs, write_run_record
    from robolake.ml.windows import KeyWindow, SamplerConfig, build_indices, val_mask

__getattr__ = lazy_exports(
    __name__,
    {
        "LakeDataset": "dataset",
        "Located": "dataset",
        "to_policy": "dataset",
        "LakeLoader": "loader",
        "MissingExtraError": "loader",
        "make_loader": "loader",
        "BatchOrder": "order",
        "EpochOrder": "order",
        "RunRecord": "runs",
        "list_runs": "runs",
        "write_run_record": "runs",
        "KeyWindow": "windows",
        "SamplerConfig": "windows",
        "build_indices": "windows",
        "val_mask": "windows",
    },
)

__all__ = [
    "BatchOrder",
    "EpochOrder",
    "KeyWindow",
    "LakeDataset",
    "LakeLoader",
    "Located",
    "MissingExtraError",
    "RunRecord",
    "SamplerConfig",
    "build_indices",
    "list_runs",
    "make_loader",
    "to_policy",
    "val_mask",
    "write_run_record",
]
