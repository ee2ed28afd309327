"""Virtualenvs beside the test venv, cached outside the checkout: real consumers with their own pins.

    python = lerobot_python()      # lerobot 0.4.4 (its torch), robolake's dependencies, NOT robolake
    run_script(python, SCRIPT, "arg", robolake=True)   # robolake from this checkout's src/ on sys.path

The lerobot virtualenv is what a team that trains with LeRobot has: ``pip install lerobot==0.4.4``
(the newest release for Python 3.11; it pins torch<2.11, torchcodec<0.11, av<16), resolved together
with robolake's own dependencies and its ``[torch]`` extra, so one torch serves both robolake's
adapter tests and the lerobot checks. robolake itself is not installed there: a script that needs
it gets this checkout's ``src/`` on its path, so the cached virtualenv never holds a stale copy.
The cache key is the requirement list; a half-built virtualenv (no ``.complete``) is built again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEROBOT_PIN = "lerobot==0.4.4"


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "robolake"


def robolake_requirements(*extras: str) -> list[str]:
    """robolake's runtime dependencies (and those of `extras`) as pyproject.toml states them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def side_python(name: str, requirements: list[str], *, timeout: float = 1800) -> Path:
    """The python of the cached virtualenv `name`-<hash of requirements>, built on first use."""
    key = hashlib.sha256(json.dumps(requirements).encode()).hexdigest()[:12]
    base = cache_root() / "venvs" / f"{name}-{key}"
    python = base / "bin" / "python"
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(base.parent / f".{name}-{key}.lock", "w") as lock:  # two test runs build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / ".complete").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(base)], check=True, timeout=300)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, "--upgrade", "pip"], check=True, timeout=300)
            subprocess.run([*pip, *requirements], check=True, timeout=timeout)
            (base / ".complete").write_text("\n".join(requirements) + "\n")
    return python


def lerobot_python() -> Path:
    return side_python("lerobot", [LEROBOT_PIN, *robolake_requirements("torch")])


def run_script(
    python: Path, script: str, *args: str, robolake: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `script` (source text) with `args` in `python`, isolated from this venv; robolake from src/ if asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if robolake:
        env["PYTHONPATH"] = str(ROOT / "src")
    flags = [] if robolake else ["-I"]
    return subprocess.run(
        [str(python), *flags, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
