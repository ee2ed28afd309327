"""Object keys, key prefixes and bucket names: the one check every command runs on them.

S3 and lakeFS store a key such as ``../../x/a.json`` verbatim, but every tool that maps keys
back to files (``aws s3 sync``, ``mc mirror``, ``robolake version read``) either refuses it or
climbs out of its destination. So robolake never writes one: a key or prefix is "/"-separated
segments, none empty, ``.`` or ``..``, with no leading "/" and no control character.
"""

from __future__ import annotations

import re

from robolake.errors import ConfigError

MAX_KEY_BYTES = 1024  # S3's limit on an object key, in UTF-8 bytes
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
KEY_RULE = (
    "use '/'-separated names with no '.' or '..' segment, no leading '/', no empty segment ('//') "
    "and no control character, e.g. datasets/cup"
)


def key_problem(value: str, *, prefix: bool = False) -> str | None:
    """Why `value` is not a usable key (or, with `prefix`, key prefix); None when it is."""
    if prefix and value in ("", "/"):
        return None  # the root
    if not value:
        return "it is empty"
    if _CONTROL.search(value):
        return "it holds a control character (NUL, tab, newline, ...)"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"it is longer than {MAX_KEY_BYTES} bytes"
    if value.startswith("/"):
        return "it starts with '/'"
    body = value[:-1] if prefix and value.endswith("/") else value
    for segment in body.split("/"):
        if segment == "":
            return "it has an empty segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
    return None


def check_key(value: str, what: str = "key") -> str:
    """`value` if it is a usable object key, else ConfigError naming `what`, the value and the rule."""
    problem = key_problem(value)
    if problem:
        raise ConfigError(f"{what} {value!r} is not a usable object key: {problem}; {KEY_RULE}")
    return value


def check_prefix(value: str, what: str = "prefix") -> str:
    """`value` if it is a usable key prefix ("" or "/" is the root; a trailing "/" is allowed)."""
    problem = key_problem(value, prefix=True)
    if problem:
        raise ConfigError(f"{what} {value!r} is not a usable key prefix: {problem}; {KEY_RULE}")
    return value


def check_bucket(value: str, what: str = "bucket") -> str:
    """`value` if it is a valid S3 bucket name (3-63 lowercase letters, digits, '.' and '-')."""
    rule = "is not a valid bucket name: use 3-63 lowercase letters, digits, '.' or '-', starting and ending "
    return _whole_match(_BUCKET, value, f"{what} {value!r} {rule}with a letter or digit, e.g. umi-raw")


def _whole_match(pattern: re.Pattern[str], value: str, refusal: str) -> str:
    if not pattern.fullmatch(value) or ".." in value:
        raise ConfigError(refusal)
    return value


_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_dataset_name(name: str, what: str = "dataset name") -> str:
    """`name` if it is usable as one segment of every key of the layout (pose/<name>/...)."""
    rule = "is not usable in object keys: use 1-128 letters, digits, '.', '_' or '-', starting with a letter"
    return _whole_match(_DATASET_NAME, name, f"{what} {name!r} {rule} or digit, e.g. cup_in_the_wild")
