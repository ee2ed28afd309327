"""Package exports imported on first use, so `robolake <command>` loads only what it runs.

    if TYPE_CHECKING:                       # what type checkers and readers see
        from robolake.umi.generator import generate_dataset
    __getattr__ = lazy_exports(__name__, {"generate_dataset": "generator"})

A package's __init__ that imported every submodule made each command pay for all of them
(numpy, imagecodecs, PyAV, aiohttp, boto3: about a second per process); with this it pays for
what it touches.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for `package`: `exports` maps a name to the submodule defining it."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__
