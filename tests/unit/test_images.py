"""robolake.stack.images without a Docker engine (with one: tests/e2e/test_compose_runtime.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from robolake.errors import ConfigError
from robolake.stack import images
from robolake.stack.images import RECIPES, apt_mirror, choose_base, local_base_tag, make_context

ROOT = Path(__file__).resolve().parents[2]


def test_apt_mirror_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert apt_mirror(tmp_path) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb http://sec.example/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert apt_mirror(tmp_path) == "http://old.example/debian"
    (tmp_path / "sources.list").write_text("")
    with pytest.raises(ConfigError, match="--mirror URL"):
        apt_mirror(tmp_path)


def test_a_base_that_is_not_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="'alpine' is not a base: use auto, public, local"):
        choose_base("alpine", print)
    assert choose_base("local", print) == "local" and choose_base("public", print) == "public"


def test_the_local_base_tag_follows_its_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    tag = local_base_tag()
    assert re.fullmatch(r"robolake/base:bookworm-[0-9a-f]{8}", tag)
    monkeypatch.setattr(images, "BASE_PACKAGES", (*images.BASE_PACKAGES, "git"))
    assert local_base_tag() != tag


def test_each_context_holds_what_its_dockerfile_copies(tmp_path: Path) -> None:
    fake = tmp_path / "minio-v1"
    fake.write_bytes(b"\x7fELF not really")
    by_name = {r.name: r for r in RECIPES}
    ctx = make_context(by_name["minio"], ROOT, tmp_path / "work", {"minio": fake})
    assert (ctx / "deploy/docker/prebuilt/minio").read_bytes() == fake.read_bytes()
    assert (ctx / "deploy/docker/minio.Dockerfile").is_file() and not (ctx / "src").exists()
    robolake = make_context(by_name["robolake"], ROOT, tmp_path / "work", {"minio": fake})
    assert (robolake / "src/robolake/__init__.py").is_file() and (robolake / "tools/versions.env").is_file()
    assert not (robolake / "deploy/docker/prebuilt/minio").exists()
    assert not list(robolake.rglob("__pycache__"))
    for recipe in RECIPES:
        text = (ROOT / recipe.dockerfile).read_text()
        context = make_context(recipe, ROOT, tmp_path / "each", {})
        for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
            for part in source.split():
                assert (context / part).exists(), f"{recipe.name}: its context lacks {part}"
