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

Measured (ad-hoc script, not a test) on this shared 2-core machine, load average 4.9-6.5 from
other jobs: a stack of the test fixtures' kind, a tiny buffer (3 episodes, 206 JPEG XL frames of
~40 KB, 8.4 MB zip), boto3 ranged GETs of single frames, two rounds:

  path                         1 thread    8 threads   CPU ms per GET: lakeFS  accelerator  MinIO
  MinIO node 1 direct          111-131/s   135-183/s   0.03-0.08     -            5.1-6.7
  accelerator, phys. address    98-110/s    92-237/s   0.02-0.10     1.0          5.0-6.4
  lakeFS S3 gateway            109-126/s   115-196/s   1.05-1.63     0.74         5.0-7.2

  (client CPU 2.0-2.3 ms per GET on every path). A whole epoch of task/umi.yaml windows (71
  samples, one worker): accelerator 26 samples/s, gateway 25/s; with ``cache_dir`` the first
  epoch needs 81 GETs instead of 100 (neighbouring samples share frames) and the next one 1 GET
  (the zip directory), 33 samples/s. Decoding one 224x224 JPEG XL frame took 15 ms here, two per
  sample: with this buffer a worker is bound by decoding, not by the transport.
"""

from robolake.ml.dataset import LakeDataset, Located, to_policy
from robolake.ml.loader import LakeLoader, MissingExtraError, make_loader
from robolake.ml.order import BatchOrder, EpochOrder
from robolake.ml.runs import RunRecord, list_runs, write_run_record
from robolake.ml.windows import KeyWindow, SamplerConfig, build_indices, val_mask

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
