"""A node's store provisioned from another node's: a copy taken under the source's store lock.

Files under deployed/ (venvs and package files) and zips/ are hard links: the store writes
neither a deployed file nor a stored zip in place (installs build elsewhere and rename, removals
unlink), so the copy and its source cannot change each other's packages. Everything else
(registry, bindings, audit log) is copied. `copy_store` leaves the `.lock` file out: the copy
makes its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procvision_runner.store import PackageStore

__all__ = ["copy_store", "link_copy"]


def _link_deployed(src: str, dst: str) -> None:
    if f"{os.sep}deployed{os.sep}" in src or f"{os.sep}zips{os.sep}" in src:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def link_copy(source: Path, dest: Path, ignore: Callable[..., Any] | None = None) -> Path:
    """Copy the store tree at `source` to `dest`, hard-linking deployed/ and zips/ files."""
    shutil.copytree(source, dest, symlinks=True, copy_function=_link_deployed, ignore=ignore)
    return dest


def copy_store(source: Path, dest: Path) -> Path:
    """Copy the store at `source` to `dest` (which must not exist) while nothing installs."""
    with PackageStore(source).lock.held(timeout_s=120):
        return link_copy(source, dest, ignore=shutil.ignore_patterns(".lock"))
