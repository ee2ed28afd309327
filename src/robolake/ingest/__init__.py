"""Real UMI datasets into the lake: validate a source in full, then upload it verified.

    ingest(source, settings, *, dataset_name, sha256, endpoint, concurrency, progress) -> IngestResult

Modules: ``sources`` (what a replay buffer, an MP4 zip or folder, or a generated layout becomes:
a checked plan of lake objects), ``pipeline`` (download, plan, upload, manifest last). It sits
above ``umi`` (the formats) and ``storage`` (the uploader), beside ``versioning``.
"""

from robolake.ingest.pipeline import IngestResult, ingest

__all__ = ["IngestResult", "ingest"]
