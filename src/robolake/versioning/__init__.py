"""Dataset versioning on lakeFS: a typed API client, verified dataset put/read, diff summaries.

    from robolake.versioning import LakeFSClient, put_dataset, read_dataset
    client = LakeFSClient.from_settings(Settings.load())
    done = put_dataset(client, "robotics-data", "main", Path("episodes"), "umi/cup", {"seed": 7})
    files = read_dataset(client, "robotics-data", done.commit.id, "umi/cup", Path("/tmp/cup"))

The client's keys come from `Settings.resolve_lakefs_keys` (flag, environment, .env, state dir).
"""

from typing import TYPE_CHECKING

from robolake.errors import IntegrityError
from robolake.lazy import lazy_exports
from robolake.storage.progress import TransferProgress  # what put_dataset and read_dataset report

if TYPE_CHECKING:
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

__getattr__ = lazy_exports(
    __name__,
    {
        "Commit": "client",
        "DiffEntry": "client",
        "ImportStatus": "client",
        "LakeFSClient": "client",
        "MergeBase": "client",
        "ObjectStat": "client",
        "Ref": "client",
        "Repository": "client",
        "DatasetCommit": "dataset",
        "DiffSummary": "dataset",
        "EpisodeChanges": "dataset",
        "content_checksum": "dataset",
        "diff_summary": "dataset",
        "put_dataset": "dataset",
        "read_dataset": "dataset",
        "BadRequestError": "errors",
        "ConflictError": "errors",
        "ForbiddenError": "errors",
        "ImportFailedError": "errors",
        "LakeFSError": "errors",
        "NotFoundError": "errors",
        "PreconditionFailedError": "errors",
    },
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
