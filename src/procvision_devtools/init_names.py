"""The names `init` derives from any human name (pinyin for Chinese), or checks when given."""

from __future__ import annotations

import hashlib
import keyword
import re
import sys

from procvision_algorithm_sdk.contract import is_safe_name
from procvision_algorithm_sdk.errors import INVALID_PARAMS

from ._common import CliError

__all__ = [
    "check_class",
    "check_module",
    "class_name_for",
    "manifest_name_for",
    "module_name_for",
    "romanize",
]

# Module names an algorithm package must not shadow inside its own venv.
_RESERVED_MODULES = {
    "numpy",
    "PIL",
    "procvision_algorithm_sdk",
    "procvision_runner",
    "procvision_devtools",
    "test",
    "tests",
}


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def romanize(name: str) -> str:
    """Chinese characters spelled in pinyin, words apart ("产线检测" -> "chan xian jian ce")."""
    if name.isascii():  # what pypinyin gives back for it, without loading its 1 s of tables
        return name.strip()
    try:
        from pypinyin import lazy_pinyin
    except ImportError:  # the slug then falls back to a hash of the name
        return name
    return " ".join(part.strip() for part in lazy_pinyin(name) if part.strip())


def manifest_name_for(name: str) -> str:
    """Return a store-safe manifest name for any human name (kept as is when already safe)."""
    if is_safe_name(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", romanize(name))
    slug = re.sub(r"-{2,}", "-", slug).strip("-._")[:48].rstrip("-._")
    return f"{slug}-{_short_hash(name)}" if slug else f"algo-{_short_hash(name)}"


def module_name_for(name: str) -> str:
    """Return an importable, non-shadowing Python package name for any human name."""
    slug = re.sub(r"[^a-z0-9]+", "_", romanize(name).lower()).strip("_")[:40].rstrip("_")
    lossy = slug != name
    if not slug:
        return f"algo_{_short_hash(name)}"
    if lossy and len(slug) < 3:
        slug = f"{slug}_{_short_hash(name)}"
    if (
        slug[0].isdigit()
        or keyword.iskeyword(slug)
        or slug in _RESERVED_MODULES
        or slug in getattr(sys, "stdlib_module_names", ())
    ):
        slug = f"algo_{slug}"
    return slug


def class_name_for(module: str) -> str:
    """Return the algorithm class name derived from the module name."""
    return "".join(part[:1].upper() + part[1:] for part in module.split("_") if part) + "Algorithm"


def check_module(module: str) -> str:
    """`module` if it can be the algorithm's package name; CliError 1006 otherwise."""
    if (
        not module.isidentifier()
        or not module.isascii()
        or keyword.iskeyword(module)
        or module in _RESERVED_MODULES
        or module in getattr(sys, "stdlib_module_names", ())
    ):
        raise CliError(
            INVALID_PARAMS,
            f"--module {module!r} must be an ASCII Python identifier that shadows neither the "
            "standard library nor numpy, PIL or the SDK (like blob_detector)",
        )
    return module


def check_class(class_name: str) -> str:
    """`class_name` if it can be the algorithm class's name; CliError 1006 otherwise."""
    if not class_name.isidentifier() or not class_name.isascii() or keyword.iskeyword(class_name):
        raise CliError(
            INVALID_PARAMS,
            f"--class {class_name!r} must be an ASCII Python identifier (like BlobDetector)",
        )
    return class_name
