"""The service's settings: the `service` table of the runner config file, then PROCVISION_TOKEN."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..config import ConfigDocument, load_config, unknown_keys_message

__all__ = ["TOKEN_ENV", "ServiceConfig"]

TOKEN_ENV = "PROCVISION_TOKEN"


@dataclass
class ServiceConfig:
    """HTTP-side settings (the `service` section of the runner config file)."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # when set (here or in PROCVISION_TOKEN) it is always enforced
    require_token: bool = False  # refuse to start without a token even on loopback
    max_upload_bytes: int = 2 * 1024**3  # package zips
    max_inspect_bytes: int = 256 * 1024**2  # one inspect request (image + fields)
    max_request_bytes: int = 1024**2  # every other request
    max_image_pixels: int = 64_000_000  # decoded PNG/JPEG size guard (decompression bombs)
    # Pixels being decoded (or held decoded until the Runner answered) at once, server-wide:
    # two 8000 x 8000 frames; one decodes while the other is held (~0.7 GB peak, benchmarks.md).
    decode_budget_pixels: int = 128_000_000
    decode_wait_ms: int = 10_000  # then 503 + Retry-After
    header_timeout_s: float = 10.0  # a request's headers must be complete within this
    max_connections: int = 256  # open connections; more are answered 503 and closed at once
    keep_alive_s: int = 5  # an idle kept-alive connection is closed after this (whole seconds)
    log_level: str = "info"
    # The one JSON-lines log (time, level, logger, message, fields): stderr, or this file,
    # rotated at log_max_bytes keeping log_backup_count older files (log_file.1, .2, ...).
    log_file: str | None = None
    log_max_bytes: int = 10 * 1024**2
    log_backup_count: int = 5
    lease_max_per_client: int = 8  # frame leases one client id may hold
    lease_max_bytes_per_client: int = 1024**3
    lease_max_total_bytes: int = 4 * 1024**3
    lease_idle_s: float = 300.0  # an unused lease is reclaimed after this
    operator_page: bool = True  # GET /, its live feed and the result archive
    # A Unix socket where same-host clients' lease calls skip the event loop's thread hops
    # (service/local_socket.py): "auto" (<store>/runner.sock when the path fits), "off", or a path.
    local_socket: str = "auto"
    # The operator page's archive of inspected frames (NG always, every Nth OK when set).
    archive_dir: str | None = None  # default: <store>/archive
    archive_max_count: int = 200
    archive_max_bytes: int = 512 * 1024**2
    archive_ok_sample_every: int = 0  # 0: keep NG frames only
    live_recent: int = 100  # results the page's live view keeps
    # Install jobs (POST /algorithms/install?async=true): queued or running at once, finished
    # ones kept (count, seconds), and how long a stop waits for a running one.
    jobs_max_active: int = 4
    jobs_max_kept: int = 100
    jobs_keep_s: float = 3600.0
    jobs_shutdown_wait_s: float = 60.0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "ServiceConfig":
        """Build from a mapping; an unknown key is a ValueError naming it (typos must not pass)."""
        known = {f.name for f in fields(cls)}
        problem = unknown_keys_message("service config", data, known)
        if problem:
            raise ValueError(problem)
        cfg = cls(**dict(data))
        for name in (
            "port",
            "max_upload_bytes",
            "max_inspect_bytes",
            "max_request_bytes",
            "lease_max_per_client",
            "lease_max_bytes_per_client",
            "lease_max_total_bytes",
            "decode_budget_pixels",
            "decode_wait_ms",
            "max_connections",
            "archive_max_count",
            "archive_max_bytes",
            "live_recent",
            "jobs_max_active",
            "jobs_max_kept",
            "log_max_bytes",
            "log_backup_count",
        ):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"service.{name} must be a positive integer")
        for name in ("lease_idle_s", "jobs_keep_s", "jobs_shutdown_wait_s"):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"service.{name} must be a positive number")
        if isinstance(cfg.keep_alive_s, bool) or not isinstance(cfg.keep_alive_s, int):
            raise ValueError("service.keep_alive_s must be a whole number of seconds")
        for name in ("header_timeout_s", "keep_alive_s"):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"service.{name} must be a positive number of seconds")
        if not isinstance(cfg.operator_page, bool):
            raise ValueError("service.operator_page must be true or false")
        every = cfg.archive_ok_sample_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError("service.archive_ok_sample_every must be a whole number >= 0")
        if isinstance(cfg.log_level, str):
            cfg.log_level = cfg.log_level.lower()
        if cfg.log_level not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError("service.log_level must be debug, info, warning, error or critical")
        if cfg.log_file is not None and not (isinstance(cfg.log_file, str) and cfg.log_file):
            raise ValueError("service.log_file must be a path string")
        if not isinstance(cfg.local_socket, str) or not cfg.local_socket:
            raise ValueError('service.local_socket must be "auto", "off" or a path string')
        if cfg.archive_dir is not None and not isinstance(cfg.archive_dir, str):
            raise ValueError("service.archive_dir must be a path string")
        if cfg.token is not None and not isinstance(cfg.token, str):
            raise ValueError("service.token must be a string")
        return cfg

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> "ServiceConfig":
        """Read the `service` table of a JSON/TOML config file, then PROCVISION_TOKEN."""
        return cls.from_document(load_config(path), environ)

    @classmethod
    def from_document(
        cls, doc: ConfigDocument, environ: Mapping[str, str] | None = None
    ) -> "ServiceConfig":
        """The `service` table of a config file already read, then PROCVISION_TOKEN."""
        cfg = cls.from_mapping(doc.service or {})
        env = os.environ if environ is None else environ
        if not cfg.token and env.get(TOKEN_ENV):
            cfg.token = env[TOKEN_ENV]
        if cfg.token == "":
            cfg.token = None
        return cfg
