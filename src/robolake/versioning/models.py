"""What the lakeFS API answers, as small frozen records (parsed from its JSON with `from_json`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Repository:
    id: str
    default_branch: str
    storage_namespace: str
    creation_date: int

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Repository:
        return cls(raw["id"], raw["default_branch"], raw["storage_namespace"], int(raw["creation_date"]))


@dataclasses.dataclass(frozen=True)
class Ref:
    """A branch or tag and the commit it points at."""

    id: str
    commit_id: str

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Ref:
        return cls(raw["id"], raw["commit_id"])


@dataclasses.dataclass(frozen=True)
class Commit:
    id: str
    message: str
    committer: str
    creation_date: int  # Unix seconds
    parents: tuple[str, ...]
    metadata: dict[str, str]
    meta_range_id: str = ""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Commit:
        return cls(
            raw["id"],
            raw.get("message", ""),
            raw.get("committer", ""),
            int(raw.get("creation_date", 0)),
            tuple(raw.get("parents") or ()),
            dict(raw.get("metadata") or {}),
            raw.get("meta_range_id", ""),
        )


@dataclasses.dataclass(frozen=True)
class ObjectStat:
    path: str
    checksum: str  # MD5 hex for objects uploaded through the API; the S3 ETag for imported ones
    size_bytes: int
    mtime: int
    physical_address: str
    content_type: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ObjectStat:
        return cls(
            raw["path"],
            raw.get("checksum", ""),
            int(raw.get("size_bytes") or 0),
            int(raw.get("mtime", 0)),
            raw.get("physical_address", ""),
            raw.get("content_type") or "",
            dict(raw.get("metadata") or {}),
        )


@dataclasses.dataclass(frozen=True)
class DiffEntry:
    type: str  # added | removed | changed | conflict | prefix_changed
    path: str
    path_type: str = "object"
    size_bytes: int | None = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DiffEntry:
        return cls(raw["type"], raw["path"], raw.get("path_type", "object"), raw.get("size_bytes"))


@dataclasses.dataclass(frozen=True)
class MergeBase:
    source_commit_id: str
    destination_commit_id: str
    base_commit_id: str


@dataclasses.dataclass(frozen=True)
class ImportStatus:
    id: str
    completed: bool
    ingested_objects: int
    commit: Commit | None
    error: str

    @classmethod
    def from_json(cls, import_id: str, raw: Mapping[str, Any]) -> ImportStatus:
        commit = Commit.from_json(raw["commit"]) if raw.get("commit") else None
        error = (raw.get("error") or {}).get("message", "")
        return cls(import_id, bool(raw.get("completed")), int(raw.get("ingested_objects") or 0), commit, error)


@dataclasses.dataclass(frozen=True)
class HookRun:
    """One hook of an actions run (what lakeFS ran for a commit or merge, and how it ended)."""

    hook_run_id: str
    hook_id: str
    status: str  # completed | failed | skipped ...

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HookRun:
        return cls(str(raw.get("hook_run_id", "")), str(raw.get("hook_id", "")), str(raw.get("status", "")))


Metadata = Mapping[str, object]  # commit metadata as given; lakeFS stores each value as a string


def str_map(values: Metadata | None) -> dict[str, str]:
    """lakeFS metadata maps strings to strings."""
    return {str(k): str(v) for k, v in (values or {}).items()}
