"""The Compose runtime's images (`robolake stack images`), built with or without a registry.

Five images, each from a Dockerfile in deploy/docker/ whose bases are build arguments:
robolake/minio, robolake/lakefs, robolake/prometheus (the Go servers), robolake/robolake (the
accelerator, the hooks server and the setup job) and robolake/postgres (lakeFS's database in the
cloud file), all tagged `:local`, the tags the compose files name. With `--base public` the
bases are the Dockerfiles' defaults (golang, alpine, python, debian images
from a registry); with `--base local` they are one Debian image made here, with no registry:
`debootstrap --variant=minbase` from the Debian mirror in apt's sources, imported with
`docker import` (`auto`: local when the registry does not answer a pull of the public base).

The Go servers are the binaries the native runtime builds and caches (robolake.binaries), put
into each build context, so an image build copies a file instead of compiling for minutes; the
host's extra CA certificates go into every context, for builds behind a TLS-inspecting proxy.
Each image is built in a context of its own under the cache directory, holding only what its
Dockerfile copies; Docker's layer cache makes an unchanged rebuild take seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from robolake.binaries import BinaryBuilder, tools_dir
from robolake.config import Settings
from robolake.errors import ConfigError, ToolchainError

Reporter = Callable[[str], object]

BASES = ("auto", "public", "local")
# What every image's runtime needs from the local base: TLS roots, the healthchecks' curl and
# wget, Python with venv for robolake's image (bookworm's python3 is 3.11), and PostgreSQL's
# server for the postgres image (debootstrap installs it; no apt inside a build).
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("ca-certificates", "curl", "wget", "python3", "python3-venv", "postgresql-15")
PUBLIC_PROBE = "python:3.11-slim"  # the public base a `--base auto` tries to pull
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
_DOCKER_DIR = Path("deploy/docker")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One image: its Dockerfile, the host binaries it takes, the checkout files it copies."""

    name: str
    binaries: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def tag(self) -> str:
        return f"robolake/{self.name}:local"

    @property
    def dockerfile(self) -> Path:
        return _DOCKER_DIR / f"{self.name}.Dockerfile"


RECIPES = (
    Recipe("minio", binaries=("minio",)),
    Recipe("lakefs", binaries=("lakefs",), sources=("tools/lakefs-build",)),
    Recipe("prometheus", binaries=("prometheus",)),
    Recipe("robolake", sources=("pyproject.toml", "README.md", "src", "tools")),
    Recipe("postgres", sources=("deploy/docker/postgres-entrypoint.sh",)),
)


@dataclasses.dataclass(frozen=True)
class Built:
    tag: str
    seconds: float
    base: str


def local_base_tag() -> str:
    """The local base's tag names its suite and packages, so a changed list makes a new base."""
    digest = hashlib.sha256(" ".join((BASE_SUITE, *BASE_PACKAGES)).encode()).hexdigest()[:8]
    return f"robolake/base:{BASE_SUITE}-{digest}"


def docker_env() -> dict[str, str]:
    # The legacy builder: the docker CLI on some machines has no buildx plugin, and BuildKit fails there.
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def _run(argv: list[str], what: str, *, timeout_s: float, report: Reporter | None = None, **kw: object) -> None:
    """Run a docker or debootstrap command, streaming lines to `report`; a failure names its last lines."""
    tail: deque[str] = deque(maxlen=15)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=docker_env(),
            **kw,  # type: ignore[call-overload]
        )
    except OSError as exc:
        raise ToolchainError(f"{what}: cannot run {argv[0]!r}: {exc.strerror}") from exc
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line.rstrip())
        if report is not None and line.strip():
            report(line.rstrip())
        if time.monotonic() - started > timeout_s:
            proc.kill()
            raise ToolchainError(f"{what}: gave up after {timeout_s:.0f} s")
    if proc.wait() != 0:
        last = "\n  ".join(tail)
        raise ToolchainError(f"{what} failed (exit code {proc.returncode}); last output:\n  {last}")


def _docker_ok(*args: str, timeout_s: float = 60) -> bool:
    try:
        done = subprocess.run(["docker", *args], capture_output=True, env=docker_env(), timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def require_engine() -> None:
    if not _docker_ok("info", timeout_s=15):
        raise ToolchainError(
            "no Docker engine answers `docker info`: start dockerd (./install-docker.sh installs and "
            "starts it), or run the stack without Docker: ./deploy-local.sh --runtime native"
        )


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian archive apt installs from (deb822 .sources files or sources.list lines)."""
    found: list[tuple[str, str]] = []  # (uri, suites)
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.MULTILINE))
            for uri in fields.get("URIs", "").split():
                found.append((uri, fields.get("Suites", "")))
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                match = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                if match:
                    found.append((match[1], match[2]))
    for uri, suites in found:
        # The main archive: a plain suite name (not -security, -updates, -backports).
        if any(re.fullmatch(r"[a-z]+", suite) for suite in suites.split()) and "security" not in uri:
            return uri.rstrip("/")
    raise ConfigError(
        f"no Debian archive in apt's sources ({etc}/sources.list, {etc}/sources.list.d/); "
        "name one with --mirror URL, or use --base public where a registry answers"
    )


def ensure_local_base(cache_dir: Path, mirror: str | None, report: Reporter) -> str:
    """The local Debian base image, made once with debootstrap and `docker import` (~1-2 min)."""
    tag = local_base_tag()
    if _docker_ok("image", "inspect", tag):
        return tag
    if os.geteuid() != 0:
        raise ToolchainError(
            f"making the local base image {tag} runs debootstrap, which needs root; run as root, or use --base public"
        )
    if shutil.which("debootstrap") is None:
        raise ToolchainError(
            f"making the local base image {tag} needs debootstrap: apt-get install debootstrap, or use --base public"
        )
    mirror = mirror or apt_mirror()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="base-", dir=cache_dir) as work:
        root = Path(work) / "root"
        report(f"making the local base image {tag}: debootstrap {BASE_SUITE} ({', '.join(BASE_PACKAGES)})")
        include = f"--include={','.join(BASE_PACKAGES)}"
        argv = ["debootstrap", "--variant=minbase", include, BASE_SUITE, str(root), mirror]
        _run(argv, f"debootstrap {BASE_SUITE} from {mirror}", timeout_s=1200)
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
            _run(["docker", "import", "-", tag], f"docker import of {tag}", timeout_s=600, stdin=tar.stdout)
    return tag


def choose_base(base: str, report: Reporter) -> str:
    """`auto` -> `public` when the registry answers a pull of the public base, else `local`."""
    if base not in BASES:
        raise ConfigError(f"--base {base!r} is not a base: use {', '.join(BASES)}")
    if base != "auto":
        return base
    if _docker_ok("image", "inspect", PUBLIC_PROBE) or _docker_ok("pull", "-q", PUBLIC_PROBE, timeout_s=60):
        return "public"
    report(f"no registry answers a pull of {PUBLIC_PROBE}: building on a local Debian base")
    return "local"


def _place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        return
    try:
        os.link(src, dest)  # the binaries are 100+ MB: a hard link where the cache shares a filesystem
    except OSError:
        shutil.copy2(src, dest)


def make_context(recipe: Recipe, root: Path, work: Path, binaries: dict[str, Path]) -> Path:
    """A build context holding only what `recipe`'s Dockerfile copies, in the checkout's layout."""
    ctx = work / recipe.name
    shutil.rmtree(ctx, ignore_errors=True)
    readmes = (_DOCKER_DIR / "prebuilt/README.md", _DOCKER_DIR / "ca/README.md")
    for part in (recipe.dockerfile, *readmes, *map(Path, recipe.sources)):
        _place(root / part, ctx / part)
    for binary in recipe.binaries:
        if binary in binaries:
            _place(binaries[binary], ctx / _DOCKER_DIR / "prebuilt" / binary)
    for cert in sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []:
        _place(cert, ctx / _DOCKER_DIR / "ca" / cert.name)
    return ctx


def build_images(
    settings: Settings,
    base: str = "auto",
    *,
    mirror: str | None = None,
    from_source: bool = False,
    report: Reporter = print,
    progress: Callable[[str], None] | None = None,
) -> list[Built]:
    """Build the images the compose files name; returns what was built and how long it took."""
    require_engine()
    base = choose_base(base, report)
    args: list[str] = []
    if base == "local":
        if from_source:
            raise ConfigError("--from-source needs Go inside the build, which the local base lacks: use --base public")
        local = ensure_local_base(settings.cache_dir, mirror, report)
        args = ["--build-arg", f"BASE_IMAGE={local}", "--build-arg", f"BUILD_IMAGE={local}"]
    binaries: dict[str, Path] = {}
    if not from_source:
        builder = BinaryBuilder(settings.cache_dir)
        for name in (b for r in RECIPES for b in r.binaries):
            if not builder.is_cached(name):
                report(f"building {name} on this machine first (cached for the native runtime too)")
            binaries[name] = builder.ensure(name, progress, companions=False)
    root = tools_dir().parent
    built = []
    with tempfile.TemporaryDirectory(prefix="docker-context-", dir=_mkdir(settings.cache_dir)) as work:
        for recipe in RECIPES:
            started = time.monotonic()
            ctx = make_context(recipe, root, Path(work), binaries)
            report(f"building {recipe.tag} ({base} base)")
            argv = ["docker", "build", "-t", recipe.tag, "-f", str(ctx / recipe.dockerfile), *args, str(ctx)]
            _run(argv, f"docker build of {recipe.tag}", timeout_s=3600, report=progress)
            built.append(Built(recipe.tag, time.monotonic() - started, base))
    return built


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
