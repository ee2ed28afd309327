"""The error tree is one tree: every class carries an exit code the CLI documents, one class per
name (one IntegrityError for storage and versioning alike), and every status in lakeFS's table a hint."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import robolake
from robolake.errors import EXIT_CODES, IntegrityError, RobolakeError
from robolake.versioning.errors import STATUS_TO_ERROR


def _every_error_class() -> list[type[RobolakeError]]:
    """RobolakeError and every subclass defined anywhere in the package (each module imported)."""
    for module in pkgutil.walk_packages(robolake.__path__, "robolake."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: list[type[RobolakeError]] = []
    todo: list[type[RobolakeError]] = [RobolakeError]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return found


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_error_class_has_a_documented_exit_code() -> None:
    classes = _every_error_class()
    assert len(classes) > 20  # the walk found the layers' own classes, not just robolake.errors
    odd = {_name(c): getattr(c, "exit_code", None) for c in classes if getattr(c, "exit_code", None) not in EXIT_CODES}
    assert odd == {}


def test_error_classes_of_one_name_are_one_class() -> None:
    """Same name, same error: a layer may refine a shared class (storage's IntegrityError is also a
    StorageError) but never define a second one with another meaning or exit code."""
    by_name: dict[str, list[type[RobolakeError]]] = {}
    for cls in _every_error_class():
        by_name.setdefault(cls.__name__, []).append(cls)
    split = {}
    for name, classes in by_name.items():
        roots = [c for c in classes if not any(c is not other and issubclass(c, other) for other in classes)]
        if len(roots) > 1 or len({c.exit_code for c in classes}) > 1:
            split[name] = sorted(f"{_name(c)} (exit {c.exit_code})" for c in classes)
    assert split == {}


def test_integrity_errors_of_versioning_and_storage_are_the_one_class_with_exit_code_3() -> None:
    from robolake import storage, versioning

    assert versioning.IntegrityError is IntegrityError
    assert issubclass(storage.IntegrityError, IntegrityError)
    assert IntegrityError.exit_code == storage.IntegrityError.exit_code == 3


@pytest.mark.parametrize("status", sorted(STATUS_TO_ERROR))
def test_every_status_in_the_table_has_an_error_class_and_a_hint(status: int) -> None:
    cls, hint = STATUS_TO_ERROR[status]
    assert issubclass(cls, RobolakeError)
    assert hint.strip(), f"HTTP {status} has no hint saying what to do"
