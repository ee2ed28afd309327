"""Every error robolake raises on purpose.

    RobolakeError                 base; `str(err)` is a complete message for a user      exit 1
    ├── ConfigError               a setting has a bad value (names the setting and the value) 2
    ├── StateError                the state directory is missing, corrupt or half-written    1
    ├── ToolchainError            Go missing or too old, a binary build failed               1
    ├── PortInUseError            a port the stack needs is taken (names port and setting)   1
    ├── ServerStartError          a managed server exited or never became healthy            1
    ├── ServiceUnavailableError   a server robolake talks to does not answer                 1
    ├── AuthError                 a server rejected the credentials                          1
    └── IntegrityError            bytes written or read do not match their checksum          3

Each layer adds its own subclasses (storage/errors.py, versioning/errors.py, umi/errors.py);
the one IntegrityError here serves them all. Every class carries the exit code the CLI ends
with; EXIT_CODES lists the ones in use. Lower-layer errors (OSError, requests, botocore) are
translated at the boundary with `raise ... from exc`, so the CLI can print one line and exit
non-zero without a traceback.
"""

from __future__ import annotations

# The exit codes a RobolakeError may carry (a unit test holds every class in the tree to them).
EXIT_CODES: dict[int, str] = {
    1: "the operation failed",
    2: "bad input: a flag, setting or value robolake cannot use",
    3: "data failed a check: a checksum mismatch, or a file the validation hook rejects",
    4: "partly done: some objects failed after every retry; run the command again to resume",
}


class RobolakeError(Exception):
    """Base class: the message says what failed, the value, why, and what to do."""

    exit_code: int = 1


class ConfigError(RobolakeError, ValueError):
    """A setting (flag, environment variable, .env entry) has a value robolake cannot use."""

    exit_code = 2


class StateError(RobolakeError):
    """The stack's state directory is missing, corrupt or left half-written."""


class ToolchainError(RobolakeError):
    """The Go toolchain is missing or too old, or building a pinned binary failed."""


class PortInUseError(RobolakeError):
    """A TCP port the stack needs is already bound by another process."""

    def __init__(self, port: int, host: str, setting: str, component: str) -> None:
        self.port = port
        self.host = host
        self.setting = setting
        self.component = component
        super().__init__(
            f"port {port} on {host} (for {component}) is already in use by another process; "
            f"nothing was started. Free the port, or choose another one with {setting}."
        )


class ServerStartError(RobolakeError):
    """A managed server exited during start-up or did not become healthy in time."""


class ServiceUnavailableError(RobolakeError, ConnectionError):
    """A server robolake needs does not answer."""


class AuthError(RobolakeError, PermissionError):
    """A server rejected robolake's credentials."""


class IntegrityError(RobolakeError):
    """Bytes written or read do not match the checksum recorded for them (ETag, MD5 or sha256)."""

    exit_code = 3
