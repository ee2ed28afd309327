"""Real UMI datasets into the lake: validate a source in full, then upload it verified.

    ingest(source, settings, *, dataset_name, sha256, endpoint, concurrency, progress) -> IngestResult

Modules: ``sources`` (what a replay buffer, an MP4 zip or folder, or a generated layout becomes:
a checked plan of lake objects), ``pipeline`` (download, plan, upload, manifest last),
``lerobot`` (the LeRobot v3.0 format and the full check of a folder) and ``lerobot_write`` (writing
one). It sits above ``umi`` (the formats) and ``storage`` (the uploader), beside ``versioning``:
a LeRobot folder is committed to lakeFS by ``robolake.ml.lerobot_ingest``, one layer up.
"""

from robolake.ingest.pipeline import IngestResult, ingest

__all__ = ["IngestResult", "ingest"]
