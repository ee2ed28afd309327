"""PostgreSQL as lakeFS's database on a cluster's lakeFS host: Debian's server, private to that host.

The server listens on no TCP port, only on a Unix socket in a directory that only its own user
may enter (0700). lakeFS runs on the same host as that user or as root, and nobody else can reach
the socket, so the server trusts whoever connects: no password to keep. As root the server runs
as Debian's `postgres` user (PostgreSQL refuses to run as root). A managed database (RDS, Cloud
SQL, Azure Database) replaces it: set ROBOLAKE_LAKEFS_DATABASE_URL on the lakeFS host.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from robolake.errors import ConfigError, ServerStartError
from robolake.stack.process import as_user

DATABASE = "lakefs"
_SOCKET_MAX = 107  # bytes in a Unix socket's path (sun_path, with its final NUL)
_INSTALL_HINT = "install Debian's PostgreSQL (sudo apt-get install postgresql)"


def find_bindir() -> Path:
    """The directory of the newest installed PostgreSQL server (Debian keeps one per version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path is None:
        raise ConfigError(
            f"lakeFS's database needs a PostgreSQL server and none is installed: {_INSTALL_HINT}, "
            "or set ROBOLAKE_LAKEFS_DATABASE_URL to a PostgreSQL database of your own"
        )
    return Path(on_path).resolve().parent


@dataclasses.dataclass(frozen=True)
class Postgres:
    """One private server: its files under `root`, its socket in `socket_dir`."""

    root: Path
    socket_dir: Path
    bindir: Path
    user: str | None = "postgres"  # the OS user it runs as when started by root

    @property
    def data(self) -> Path:
        return self.root / "data"

    def connection_string(self) -> str:
        return f"host={_quote(str(self.socket_dir))} user={DATABASE} dbname={DATABASE} sslmode=disable"

    def argv(self) -> list[str]:
        return [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data),
            "-c",
            "listen_addresses=",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            "unix_socket_permissions=0700",
        ]

    def run_as(self) -> str | None:
        return self.user if os.geteuid() == 0 else None

    def init(self) -> bool:
        """Make the database cluster and lakeFS's database the first time; True if it did."""
        if len(str(self.socket_dir / ".s.PGSQL.5432").encode()) >= _SOCKET_MAX:
            raise ConfigError(
                f"PostgreSQL's socket {self.socket_dir}/.s.PGSQL.5432 would be longer than a Unix socket "
                f"path may be ({_SOCKET_MAX - 1} bytes): give the lakeFS host a shorter `data` path"
            )
        for folder in (self.root, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            if (user := self.run_as()) is not None:
                try:
                    entry = pwd.getpwnam(user)
                except KeyError:
                    raise ConfigError(
                        f"PostgreSQL runs as the user {user!r}, who does not exist: {_INSTALL_HINT}"
                    ) from None
                os.chown(folder, entry.pw_uid, entry.pw_gid)
        if (self.data / "PG_VERSION").is_file():
            return False
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", DATABASE, "--auth=trust"]
        self._run([*initdb, "-E", "UTF8", "--no-locale", "--no-instructions"], "", "initdb")
        self._run(
            [str(self.bindir / "postgres"), "--single", "-D", str(self.data), "postgres"],
            f"CREATE DATABASE {DATABASE}\n",
            "creating lakeFS's database",
        )
        return True

    def _run(self, argv: list[str], stdin: str, doing: str) -> None:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
            **as_user(self.run_as()),
        )
        if done.returncode != 0 or "ERROR:" in done.stderr:
            raise ServerStartError(f"PostgreSQL: {doing} failed (exit {done.returncode}): {done.stderr.strip()[-600:]}")

    def ready(self) -> bool:
        """The server accepts connections (pg_isready)."""
        probe = [str(self.bindir / "pg_isready"), "-q", "-h", str(self.socket_dir), "-d", DATABASE, "-U", DATABASE]
        try:
            return subprocess.run(probe, capture_output=True, timeout=5, check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def _quote(value: str) -> str:
    """A libpq/pgx key=value connection-string value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
