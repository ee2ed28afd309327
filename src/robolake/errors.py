"""Every error robolake raises on purpose.

    RobolakeError                 base; `str(err)` is a complete message for a user
    ├── ConfigError               a setting has a bad value (names the setting and the value)
    ├── StateError                the state directory is missing, corrupt or half-written
    ├── ToolchainError            Go missing or too old, a binary build failed
    ├── PortInUseError            a port the stack needs is taken (names port and setting)
    ├── ServerStartError          a managed server exited or never became healthy
    ├── ServiceUnavailableError   a server robolake talks to does not answer
    └── AuthError                 a server rejected the credentials

Lower-layer errors (OSError, requests, botocore) are translated at the boundary with
`raise ... from exc`, so the CLI can print one line and exit non-zero without a traceback.
"""

from __future__ import annotations


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
