"""The per-episode file name UMI data uses everywhere: ``episode_XXXXX.<ext>`` (five digits or more).

One pattern for every layer that writes or reads such names (the generator writes them, the
storage layout derives metadata from them, versioning groups diffs and checks commits by them):

    episode_file(12, "json")                  -> "episode_00012.json"
    episode_of("pose/cup/episode_00012.json") -> 12      (the last path segment only)
    episode_token("pose/episode_00012.json")  -> "episode_00012"   (anywhere in a path)
    split_episode_file("episode_00012.json")  -> (12, "json")

The token starts at a path segment or after a separator (so ``myepisode_1.json`` is not an
episode) and takes every digit that follows. Matching ignores case.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

EPISODE_RE = re.compile(r"(?<![a-z0-9])episode_(\d+)(?![0-9])", re.IGNORECASE)
_EPISODE_FILE_RE = re.compile(r"episode_(\d+)\.([a-z0-9]+)", re.IGNORECASE)


def episode_file(index: int, ext: str) -> str:
    """``episode_00012.json``: the index zero-padded to five digits, as UMI and the generator name files."""
    return f"episode_{index:05d}.{ext}"


def episode_of(path: str) -> int | None:
    """The episode index in the last segment of `path` (``pose/episode_00012.json`` -> 12), or None."""
    match = EPISODE_RE.search(PurePosixPath(path).name)
    return int(match.group(1)) if match else None


def episode_token(path: str) -> str | None:
    """The first ``episode_<digits>`` token anywhere in `path`, as written, or None."""
    match = EPISODE_RE.search(path)
    return match.group(0) if match else None


def split_episode_file(name: str) -> tuple[int, str] | None:
    """(index, lower-case extension) when `name` is exactly ``episode_<digits>.<ext>``, else None."""
    match = _EPISODE_FILE_RE.fullmatch(name)
    return (int(match.group(1)), match.group(2).lower()) if match else None
