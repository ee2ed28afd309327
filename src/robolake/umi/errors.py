"""Errors of the UMI data package.

    RobolakeError                      (robolake.errors)
    └── DatasetFormatError             a file is not what the UMI format says it must be
                                       (also a ValueError); names the file and the problem

Lower-layer errors (zipfile.BadZipFile, json.JSONDecodeError, imagecodecs errors) are translated
where a file is opened, with `raise ... from exc`, so a caller prints one line and no traceback.
"""

from __future__ import annotations

from pathlib import Path

from robolake.errors import RobolakeError


class DatasetFormatError(RobolakeError, ValueError):
    """A UMI file (replay buffer, video, episode JSON) is malformed, truncated or inconsistent."""

    exit_code = 3

    def __init__(self, path: str | Path, problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        message = f"{self.path}: {problem}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)
