"""Errors of the processing jobs.

    RobolakeError                      (robolake.errors)
    ├── EngineMissingError             Dask is not installed (names the extra to install)
    └── TaskFailedError                a task failed on a worker; the message is the task's error,
                                       naming the episode, its exit code kept

Tasks run in other processes (other machines, on a cluster): their errors travel back pickled.
Several robolake errors take constructor arguments their message does not round-trip through
(DatasetFormatError(path, problem, hint)), so a task wraps any RobolakeError it raises into a
TaskFailedError that pickles as (message, exit code). An unreachable scheduler is a
ServiceUnavailableError, a bad address or flag a ConfigError (robolake.errors).
"""

from __future__ import annotations

from robolake.errors import RobolakeError

INSTALL_HINT = "pip install 'robolake[dask]'"


class EngineMissingError(RobolakeError):
    """The Dask engine (an optional extra) is not installed."""

    exit_code = 2


class TaskFailedError(RobolakeError):
    """One task of a job failed; its message names the input and what was wrong with it."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[type[TaskFailedError], tuple[str, int]]:
        return type(self), (str(self), self.exit_code)
