"""The package store: offline zips installed into isolated venvs, and their lifecycle."""

from .layout import PackageStore, default_root
from .lock import StoreError
from .manager import PackageManager, StoreConfig

__all__ = ["PackageManager", "PackageStore", "StoreConfig", "StoreError", "default_root"]
