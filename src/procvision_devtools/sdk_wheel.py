"""The SDK wheel that `package` ships in wheels/: built from distributions/sdk, SDK only.

Where it comes from, in order: --sdk-wheel / PROCVISION_SDK_WHEEL; a build of
distributions/sdk from the checkout this SDK runs from (editable or installed from the
directory), cached by a digest of its sources; a wheel of this version already in the cache;
the SDK's release from the package index (`pip download`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import procvision_algorithm_sdk
from procvision_algorithm_sdk._version import __version__
from procvision_algorithm_sdk.errors import WHEELS_MISSING

from ._common import CliError, progress
from ._pip import run_pip
from ._requirements import SDK_PROJECT

SDK_BUILD_TIMEOUT_S = 600.0
# The SDK distribution's project directory, relative to the repository root.
SDK_DIST_DIR = Path("distributions") / "sdk"
SDK_PACKAGE_DIR = Path("src") / "procvision_algorithm_sdk"
WHEEL_GLOB = "procvision_algorithm_sdk-*.whl"


def _is_checkout(root: Path) -> bool:
    return (root / SDK_DIST_DIR / "pyproject.toml").is_file() and (root / SDK_PACKAGE_DIR).is_dir()


def sdk_source_root() -> Path | None:
    """The repository checkout the running SDK comes from, if there is one."""
    # Editable installs and a checkout on sys.path: src/procvision_algorithm_sdk/__init__.py
    here = Path(procvision_algorithm_sdk.__file__).resolve().parents[2]
    if _is_checkout(here):
        return here
    # Installed (not editable) from distributions/sdk of a checkout: the install record says where
    import importlib.metadata  # here: the parser of `procvision-cli` imports this module

    with contextlib.suppress(importlib.metadata.PackageNotFoundError, ValueError, AttributeError):
        info = json.loads(
            importlib.metadata.distribution(SDK_PROJECT).read_text("direct_url.json") or ""
        )
        url = urlparse(info.get("url", ""))
        if url.scheme == "file" and "dir_info" in info:
            for root in (Path(unquote(url.path)), *Path(unquote(url.path)).parents[:3]):
                if _is_checkout(root):
                    return root
    return None


def source_files(root: Path) -> list[Path]:
    """The files the SDK wheel is built from: distributions/sdk and src/procvision_algorithm_sdk."""
    files = sorted(p for p in (root / SDK_DIST_DIR).iterdir() if p.is_file())
    for path in sorted((root / SDK_PACKAGE_DIR).rglob("*")):
        if (
            path.is_file()
            and "__pycache__" not in path.parts
            and path.suffix not in (".pyc", ".pyo")
        ):
            files.append(path)
    return files


def _digest(root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    """Per-user cache for SDK wheels built from a source checkout."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "procvision-cli"


def _publish(store: Path, fill: str, source: Path) -> Path:
    """Fill a staging dir next to `store` and rename it into place (a concurrent twin may win)."""
    store.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{store.name}-", dir=store.parent))
    shutil.copy2(source, staging / source.name)
    try:
        staging.rename(store)
    except OSError:  # another build finished first: use its wheel
        shutil.rmtree(staging, ignore_errors=True)
    built = sorted(store.glob(WHEEL_GLOB))
    if not built:
        raise CliError(WHEELS_MISSING, f"SDK wheel cache {store} is empty after {fill}")
    return built[0]


def build_sdk_wheel(root: Path, cache: Path) -> Path:
    """Build (or reuse) the SDK wheel of checkout `root`; the build runs on a copy of its files."""
    files = source_files(root)
    store = cache / f"sdk-{__version__}-{_digest(root, files)}"
    built = sorted(store.glob(WHEEL_GLOB)) if store.is_dir() else []
    if built:
        return built[0]
    progress(f"building the SDK wheel from {root / SDK_DIST_DIR}")
    with tempfile.TemporaryDirectory(prefix="pv-sdk-build-") as tmp:
        for path in files:
            target = Path(tmp) / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        out = Path(tmp) / "out"
        run_pip(
            ["wheel", "--no-deps", "--wheel-dir", str(out), str(Path(tmp) / SDK_DIST_DIR)],
            "building the SDK wheel",
            SDK_BUILD_TIMEOUT_S,
        )
        wheels = sorted(out.glob(WHEEL_GLOB))
        if not wheels:
            raise CliError(WHEELS_MISSING, "building the SDK wheel produced no wheel")
        return _publish(store, "the build", wheels[0])


def download_sdk_wheel(cache: Path) -> Path:
    """Fetch this SDK version's released wheel from the package index into the cache."""
    progress(f"downloading the SDK wheel {SDK_PROJECT}=={__version__}")
    with tempfile.TemporaryDirectory(prefix="pv-sdk-download-") as tmp:
        run_pip(
            [
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                f"{SDK_PROJECT}=={__version__}",
            ],
            "cannot find the SDK wheel: pass --sdk-wheel PATH (procvision_algorithm_sdk-*.whl); "
            f"downloading {SDK_PROJECT}=={__version__}",
        )
        wheels = sorted(Path(tmp).glob(WHEEL_GLOB))
        if not wheels:
            raise CliError(WHEELS_MISSING, f"pip download of {SDK_PROJECT} produced no wheel")
        return _publish(cache / f"sdk-{__version__}-released", "the download", wheels[0])


def find_sdk_wheel(explicit: str | None, cache: Path | None) -> Path:
    """Return the SDK wheel to ship (see the module docstring for the order)."""
    explicit = explicit or os.environ.get("PROCVISION_SDK_WHEEL")
    if explicit:
        path = Path(explicit)
        if not path.is_file() or not path.name.startswith("procvision_algorithm_sdk-"):
            raise CliError(WHEELS_MISSING, f"--sdk-wheel {path} is not an SDK wheel file")
        return path
    cache = cache or default_cache_dir()
    root = sdk_source_root()
    if root is not None:
        return build_sdk_wheel(root, cache)
    candidates = sorted(cache.glob(f"procvision_algorithm_sdk-{__version__}-*.whl")) + sorted(
        cache.glob(f"sdk-{__version__}-*/procvision_algorithm_sdk-{__version__}-*.whl")
    )
    if candidates:
        return candidates[-1]
    return download_sdk_wheel(cache)


def sdk_dependencies(wheel: Path) -> list[str]:
    """Return the SDK wheel's unconditional Requires-Dist lines (numpy, Pillow)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode("utf-8")
    deps = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            value = line.split(":", 1)[1].strip()
            if "extra ==" not in value:
                deps.append(value)
    return deps
