"""Processing jobs on Dask distributed: raw episodes -> training-ready data, committed atomically.

    from robolake.processing import EngineOptions, LeRobotParams, run_lerobot, run_replay_buffer, run_stats
    run_replay_buffer(settings, "main", "datasets/cup", to_branch="cup-processed")        # LocalCluster
    run_replay_buffer(settings, "main", "datasets/cup", engine=EngineOptions(scheduler="tcp://10.0.0.5:8786"))
    run_stats(settings, "cup-processed", "datasets/cup/processed/replay_buffer/")
    run_lerobot(settings, "cup-processed", "datasets/cup/processed/", params=LeRobotParams(fps=20))

Modules: ``engine`` (Dask: embedded LocalCluster, a running scheduler, or inline), ``inputs``
(the ref resolved once, raw episodes, reading objects at their commit), ``frames`` (one episode's
task: decode, crop, resize, mask, JPEG XL; staged results), ``replay_buffer`` and ``stats`` (the
jobs), ``lerobot_parts`` and ``lerobot`` (the LeRobot export: per-episode video segments, then
one folder), ``transcode`` (videos to another codec and size), ``commit`` (one squash-merged
commit from a work branch), ``jobs`` (results, progress), ``board`` (each run's record in the
lake, which the console's Jobs page shows), ``staging`` (cleaning old staged results).

Scaling on a cluster (one task per episode; N workers, one core each). Measured here: the
figures marked so; the rest is arithmetic on them, not a measurement:

- A task reads its episode's three objects at their physical addresses through the accelerator
  (two JSON files of ~100 KB, and the video: ~1 MB per 6 s at 320 x 240 here; a 2.7K GoPro clip
  is ~40-60 MB per 10 s) and writes one staged object to ``umi-processed`` of ~20 KB per frame
  (measured, synthetic scenes; real scenes encode larger, ~40 KB per frame in UMI's sets). It is
  CPU-bound: ~20 ms per frame on one core here (measured, 160 x 120 and 320 x 240 input: H.264
  decode, swscale, and JPEG XL at level 99, most of it); a 2.7K frame adds its decode. So a
  worker makes ~30-50 frames/s, and the task phase grows with the workers until storage
  saturates: at ~40 KB out and ~100 KB in per frame, 100 workers move ~0.5 GB/s. The
  accelerator is one process and passes large objects through uncached; past a few hundred
  MB/s, give workers a MinIO node (or several accelerators) as their endpoint.
- The driver is serial: it reads every staged episode back, writes the one zip (UMI's loader
  opens one ``dataset.zarr.zip``) and uploads it to lakeFS once, i.e. moves the output size
  (~40 KB per frame) three times through one process. At an estimated 100-200 MB/s that is
  ~1,000-2,000 frames/s: with tens of workers the assembly, not the tasks, bounds the job
  (cup_in_the_wild, ~450k frames, ~18 GB: minutes of assembly against hours of encoding on one
  machine). Reuse keeps re-runs cheap: an episode's staged result is keyed by its content and the
  parameters, so adding episodes to a dataset processes only those.
- The scheduler holds one small task per episode (a few KB of description; results travel
  through S3, never through Dask), far below what one scheduler handles even at 100k episodes.
- Measured on this 2-core machine, shared with the stack (``robolake bench process``): 8 tiny
  episodes, 1 process 34.7 frames/s, 2 Dask workers 49.6 frames/s (1.43x in the task phase).

Where a task reads its video (``--read-from``, measured here with ``robolake bench process
--compare-read-from``, two runs on the 2 shared cores under load 5-8; each read as a task makes
it: a fresh client, GET, sha256, temp file): a 48 MiB object (a 2.7K GoPro clip's size) read
straight from a MinIO node at 227-335 MB/s against 162-261 MB/s through the accelerator, which
passes objects over 1 MiB through uncached (1.28x and 1.40x for the node); the generator's
36 KB videos at 0.65-2.0 MB/s from a node against 0.87-2.2 MB/s through the accelerator, which
serves them from its cache after the first read (0.75x and 0.90x for the node; request setup,
not bytes, dominates there). So the default, ``auto``, reads a video over 1 MiB from a node
(tasks take the nodes in turn) and a smaller one through the accelerator. Either way the read is
a small part of a task here (~0.06 s of 3-10 s per tiny episode): the task stays CPU-bound.

The other jobs on a cluster (arithmetic, not measured): ``lerobot`` tasks read only their own
frames' bytes (~20-40 KB of JPEG XL each; the driver hands each task its directory entries, so no
task reads the zip's directory) and write one MP4 segment per camera (a few KB per frame); the
driver reads the low-dim arrays once (~30 bytes per step), then every segment back, and remuxes
them (no decoding), so its cost is the output size, a few KB per frame, far below the tasks' JPEG
XL decode and H.264 encode. ``transcode`` tasks read and write whole videos; its driver passes
every output video through itself once (download, then upload to lakeFS).
"""

from robolake.processing.engine import EngineOptions, dask_versions
from robolake.processing.errors import EngineMissingError, TaskFailedError
from robolake.processing.frames import ReplayBufferParams
from robolake.processing.jobs import JobResult, TaskProgress
from robolake.processing.lerobot import run_lerobot
from robolake.processing.lerobot_parts import LeRobotParams
from robolake.processing.replay_buffer import run_replay_buffer
from robolake.processing.stats import run_stats

__all__ = [
    "EngineMissingError",
    "EngineOptions",
    "JobResult",
    "LeRobotParams",
    "ReplayBufferParams",
    "TaskFailedError",
    "TaskProgress",
    "dask_versions",
    "run_lerobot",
    "run_replay_buffer",
    "run_stats",
]
