"""Opening the store from a config file: how the CLI, `inspect` and `serve` get a PackageManager."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_PARAMS

from ..config import ConfigFileError, load_config
from .layout import PackageStore, default_root
from .lock import StoreError
from .manager import PackageManager, StoreConfig

__all__ = ["configs_from", "load_configs", "open_manager", "read_document"]


def read_document(path: str | Path | None) -> Any:
    """Read the config file once (a ConfigDocument); StoreError 1006 when it is not usable."""
    try:
        return load_config(path)
    except ConfigFileError as exc:
        raise StoreError(INVALID_PARAMS, str(exc)) from exc


def configs_from(doc: Any) -> tuple[Any, StoreConfig]:
    """The RunnerConfig (None without a `runner` table) and StoreConfig of a ConfigDocument."""
    return doc.runner_config(), StoreConfig.from_dict(doc.store or {})


def load_configs(path: str | Path | None) -> tuple[Any, StoreConfig]:
    """Read a JSON or TOML config: `runner` table -> RunnerConfig, `store` table -> StoreConfig."""
    return configs_from(read_document(path))


def open_manager(
    root: str | Path | None,
    runner: Any = None,
    configs: tuple[Any, StoreConfig] | None = None,
    *,
    config_path: str | Path | None = None,
    role: str = "runner",
    query: bool = False,
) -> PackageManager:
    """Open the store at `root` (default: default_root()) and return its PackageManager.

    `configs` are the (RunnerConfig, StoreConfig) already read; without them `config_path` is
    read. query: a command that changes nothing never waits on a store a server owns (no
    reconcile).
    """
    from .owner import live_owner

    runner_cfg, store_cfg = configs or load_configs(config_path)
    store = PackageStore(
        Path(root) if root else default_root(), lock_timeout_s=store_cfg.lock_timeout_s
    )
    store.open(reconcile=not (query and live_owner(store.root) is not None))
    return PackageManager(store, runner, config=store_cfg, runner_config=runner_cfg, role=role)
