"""Dataset versioning on lakeFS: a typed API client, verified dataset put/read, diff summaries.

    from robolake.versioning import LakeFSClient, put_dataset, read_dataset
    client = LakeFSClient.from_settings(Settings.load())
    done = put_dataset(client, "robotics-data", "main", Path("episodes"), "umi/cup", {"seed": 7})
    files = read_dataset(client, "robotics-data", done.commit.id, "umi/cup", Path("/tmp/cup"))

The client's keys come from `Settings.resolve_lakefs_keys` (flag, environment, .env, state dir).
"""

from robolake.errors import IntegrityError
from robolake.storage.progress import TransferProgress  # what put_dataset and read_dataset report
from robolake.versioning.client import (
    Commit,
    DiffEntry,
    ImportStatus,
    LakeFSClient,
    MergeBase,
    ObjectStat,
    Ref,
    Repository,
)
from robolake.versioning.dataset import (
    DatasetCommit,
    DiffSummary,
    EpisodeChanges,
    content_checksum,
    diff_summary,
    put_dataset,
    read_dataset,
)
from robolake.versioning.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    ImportFailedError,
    LakeFSError,
    NotFoundError,
    PreconditionFailedError,
)

__all__ = [
    "BadRequestError",
    "Commit",
    "ConflictError",
    "DatasetCommit",
    "DiffEntry",
    "DiffSummary",
    "EpisodeChanges",
    "ForbiddenError",
    "ImportFailedError",
    "ImportStatus",
    "IntegrityError",
    "LakeFSClient",
    "LakeFSError",
    "MergeBase",
    "NotFoundError",
    "ObjectStat",
    "PreconditionFailedError",
    "Ref",
    "Repository",
    "TransferProgress",
    "content_checksum",
    "diff_summary",
    "put_dataset",
    "read_dataset",
]
