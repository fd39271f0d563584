"""Store helpers of the store and service tests: traceless refusals, a lock holder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from procvision_runner.store import PackageManager, PackageStore, StoreConfig, StoreError


def snapshot(root: Path) -> dict[str, int]:
    """Every path under `root` with its size (-1 for a directory)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1)
        for p in sorted(root.rglob("*"))
    }


def refuse_install(
    store: PackageStore, outside: Path, zip_path: Path, code: str, **cfg
) -> StoreError:
    """Install `zip_path` expecting error `code`; nothing but one audit line may change."""
    manager = PackageManager(store, config=StoreConfig(**cfg))
    before_store = snapshot(store.root)
    before_out = snapshot(outside)
    audit_before = len(store.audit.read())
    with pytest.raises(StoreError) as err:
        manager.install(zip_path)
    assert err.value.error_code == code, err.value.message
    after = snapshot(store.root)
    audit_rel = "logs/audit.jsonl"
    changed = {k for k in set(before_store) | set(after) if before_store.get(k) != after.get(k)}
    assert changed <= {audit_rel}, changed
    assert snapshot(outside) == before_out
    lines = store.audit.read()
    assert len(lines) == audit_before + 1
    assert lines[-1]["action"] == "install" and lines[-1]["outcome"] == "refused"
    assert lines[-1]["error_code"] == code
    return err.value


def hold_store_lock(root: Path) -> subprocess.Popen:
    """Another process holding the store lock (as a CLI install does) until its stdin closes."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, filelock; lock = filelock.FileLock(sys.argv[1]); lock.acquire();"
            " print('held', flush=True); sys.stdin.read()",
            str(root / ".lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc
