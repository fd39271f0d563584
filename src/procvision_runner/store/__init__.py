"""The package store: offline zips installed into isolated venvs, and their lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .lock import StoreError

if TYPE_CHECKING:
    from .layout import PackageStore, default_root
    from .manager import PackageManager, StoreConfig

__all__ = ["PackageManager", "PackageStore", "StoreConfig", "StoreError", "default_root"]


def __getattr__(name: str) -> Any:
    """Load the store's classes on first access (PEP 562).

    Importing a light submodule (the lock, the owner record) must not pull in the package
    checks, signing and the resolver that the manager needs.
    """
    if name in ("PackageStore", "default_root"):
        from . import layout

        value = getattr(layout, name)
    elif name in ("PackageManager", "StoreConfig"):
        from . import manager

        value = getattr(manager, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
