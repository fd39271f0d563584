"""Real offline package zips for the store tests, built from examples/algorithm-example.

Wheels: this project's own wheel is built from the checkout (`pip wheel --no-deps`), numpy and
Pillow wheels for this interpreter are downloaded ONCE into `<repo>/.cache/wheels` (the versions
installed here, so they are known to work). Both are cached on disk, so every test module and
every run shares them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from importlib.metadata import version as dist_version
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "algorithm-example"
CACHE = REPO / ".cache"
WHEELS = CACHE / "wheels"
PIP_TIMEOUT_S = 600


def _pip(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def dependency_wheels() -> list[Path]:
    """numpy and Pillow wheels for this interpreter, downloaded once into .cache/wheels."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    wanted = {"numpy": dist_version("numpy"), "pillow": dist_version("Pillow")}
    with FileLock(str(CACHE / "wheels.lock")):
        found = _find(wanted)
        if len(found) < len(wanted):
            _pip(
                [
                    "download",
                    "--only-binary=:all:",
                    "--no-deps",
                    "-d",
                    str(WHEELS),
                    *(f"{n}=={v}" for n, v in wanted.items()),
                ]
            )
            found = _find(wanted)
    if len(found) < len(wanted):
        raise RuntimeError(f"wheels for {wanted} not found in {WHEELS}")
    return found


def _find(wanted: dict[str, str]) -> list[Path]:
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename

    supported = set(sys_tags())
    out = []
    for name, ver in wanted.items():
        for whl in sorted(WHEELS.glob("*.whl")):
            n, v, _b, tags = parse_wheel_filename(whl.name)
            if n == name and str(v) == ver and tags & supported:
                out.append(whl)
                break
    return out


def sdk_wheel() -> Path:
    """The SDK wheel `procvision-cli package` ships, built from distributions/sdk (cached)."""
    from procvision_devtools.sdk_wheel import build_sdk_wheel

    return build_sdk_wheel(REPO, CACHE / "sdk-wheel")


def example_files(version: str = "1.0.0") -> dict[str, bytes]:
    """The example package's files (root-relative), with manifest and get_info at `version`."""
    files: dict[str, bytes] = {}
    manifest = json.loads((EXAMPLE / "manifest.json").read_text(encoding="utf-8"))
    manifest["version"] = version
    files["manifest.json"] = json.dumps(manifest, indent=2).encode()
    for src in sorted((EXAMPLE / "algorithm_example").rglob("*.py")):
        rel = src.relative_to(EXAMPLE).as_posix()
        data = src.read_bytes()
        if rel.endswith("main.py"):
            data = data.replace(b'"version": "1.0.0"', f'"version": "{version}"'.encode())
        files[rel] = data
    return files


def requirements_for(wheels: Iterable[Path]) -> str:
    """requirements.txt pinning every given wheel exactly."""
    from packaging.utils import parse_wheel_filename

    lines = []
    for whl in wheels:
        name, ver, _b, _t = parse_wheel_filename(whl.name)
        lines.append(f"{name}=={ver}")
    return "\n".join(sorted(lines)) + "\n"


def make_package_zip(
    out: Path,
    version: str = "1.0.0",
    *,
    nested: bool = False,
    wheels: list[Path] | None = None,
    requirements: str | None = None,
    extra: Iterable[tuple[zipfile.ZipInfo | str, bytes]] = (),
    omit: Iterable[str] = (),
    checksums: bool = False,
    sign_key: object | None = None,
) -> Path:
    """Write an offline package zip of the example (flat, or nested under one folder)."""
    from procvision_runner.store import signing

    wheels = wheels if wheels is not None else [*dependency_wheels(), sdk_wheel()]
    files = example_files(version)
    files["requirements.txt"] = (
        requirements if requirements is not None else requirements_for(wheels)
    ).encode()
    files[".procvision_env.json"] = json.dumps(
        {
            "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "implementation": "cp",
        }
    ).encode()
    for whl in wheels:
        files[f"wheels/{whl.name}"] = whl.read_bytes()
    for name in omit:
        files.pop(name, None)
    if checksums or sign_key is not None:
        text = "".join(
            f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in sorted(files.items())
        )
        files["checksums.sha256"] = text.encode()
        if sign_key is not None:
            files["SIGNATURE"] = signing.sign(sign_key, text.encode()).encode()  # type: ignore[arg-type]
    prefix = f"algorithm-example-{version}/" if nested else ""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            # wheels are zips already; storing them keeps building fast
            method = zipfile.ZIP_STORED if rel.endswith(".whl") else zipfile.ZIP_DEFLATED
            zf.writestr(prefix + rel, data, compress_type=method)
        for info, data in extra:
            zf.writestr(info, data)
    return out


def tiny_wheel(out_dir: Path, name: str, version: str, requires: Iterable[str] = ()) -> Path:
    """A real, installable pure-Python wheel of one empty module, with Requires-Dist lines."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {req}\n" for req in requires
    )
    wheel_meta = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = {
        f"{module}/__init__.py": b"",
        f"{dist_info}/METADATA": meta.encode(),
        f"{dist_info}/WHEEL": wheel_meta.encode(),
    }
    record = "".join(
        f"{rel},sha256={_b64_digest(data)},{len(data)}\n" for rel, data in files.items()
    )
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
    return path


def _b64_digest(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
