"""A node's store provisioned from another node's: a copy taken under the source's store lock.

Files under deployed/ (venvs and package files) are hard links: the store never writes a
deployed file in place (installs build elsewhere and rename, removals unlink), so the copy and
its source cannot change each other's packages. Everything else (registry, bindings, zips,
audit log) is copied. The `.lock` file itself is left out: the copy makes its own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from procvision_runner.store import PackageStore

__all__ = ["copy_store"]


def _link_deployed(src: str, dst: str) -> None:
    if f"{os.sep}deployed{os.sep}" in src:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def copy_store(source: Path, dest: Path) -> Path:
    """Copy the store at `source` to `dest` (which must not exist) while nothing installs."""
    with PackageStore(source).lock.held(timeout_s=120):
        shutil.copytree(
            source,
            dest,
            symlinks=True,
            copy_function=_link_deployed,
            ignore=shutil.ignore_patterns(".lock"),
        )
    return dest
