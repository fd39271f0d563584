"""`procvision-cli package`: build the offline zip of contract section 8 from a project."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.contract import check_manifest
from procvision_algorithm_sdk.errors import INVALID_ZIP, MANIFEST_MISSING, WHEELS_MISSING

from ._common import CliError, load_manifest, print_json, progress, report_error
from ._pip import run_pip
from ._requirements import (
    SDK_PROJECT,
    Requirement,
    Requirements,
    canonical,
    normalise,
    replaced_sdk_pins,
)
from ._target import current_target, expand_platforms
from .package_files import SECRET, manifest_patterns, select_files, summarize
from .sdk_wheel import find_sdk_wheel, sdk_dependencies
from .wheelcheck import check_wheels
from .zipwriter import CHECKSUMS, SIGNATURE, write_zip

ENV_FILE = ".procvision_env.json"

# Files the package step regenerates at the root.
_REGENERATED = {"requirements.txt", ENV_FILE, CHECKSUMS, SIGNATURE}


def download_wheels(
    lines: list[str], dest: Path, target: dict[str, Any], cache: Path | None
) -> None:
    """`pip download --only-binary=:all:` for the target into the empty `dest` directory."""
    if not lines:
        return
    req_file = dest.parent / "download-requirements.txt"
    req_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = [
        "download",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        *(f"--platform={tag}" for tag in expand_platforms(str(target["wheels_platform"]))),
        "--python-version",
        str(target["python_version"]),
        "--implementation",
        str(target["implementation"]),
        "--abi",
        str(target["abi"]),
        "-r",
        str(req_file),
    ]
    if cache is not None and cache.is_dir():
        try:  # everything may already be cached: no registry round trip at all
            run_pip([*base, "--no-index", "--find-links", str(cache)], "pip download (cache)")
            return
        except CliError:
            for stale in dest.iterdir():
                stale.unlink()
        progress("downloading wheels (cache incomplete)")
        run_pip([*base, "--find-links", str(cache)], "pip download")
        cache.mkdir(parents=True, exist_ok=True)
        for wheel in dest.glob("*.whl"):
            if not (cache / wheel.name).exists():
                tmp = cache / f".{wheel.name}.{os.getpid()}.tmp"
                shutil.copyfile(wheel, tmp)
                os.replace(tmp, cache / wheel.name)
        return
    progress("downloading wheels")
    run_pip(base, "pip download")


# ---------------------------------------------------------------------------------------------
# the package


def resolve_target(project: Path, overrides: dict[str, str | None]) -> dict[str, Any]:
    """The target environment: the project's .procvision_env.json, this interpreter, options."""
    target = current_target()
    env_path = project / ENV_FILE
    if env_path.is_file():
        try:
            env = json.loads(env_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError(INVALID_ZIP, f"{env_path} is not valid JSON: {exc}") from None
        if isinstance(env, dict):
            target.update({k: str(v) for k, v in env.items() if k in target and v})
    for key, value in overrides.items():
        if value:
            target[key] = value
    version = str(target["python_version"])
    if re.fullmatch(r"\d{2,3}", version):  # "311" -> "3.11"
        version = f"{version[0]}.{version[1:]}"
    if not re.fullmatch(r"\d+\.\d+", version):
        raise CliError(INVALID_ZIP, f"python version {version!r} must look like 3.11")
    target["python_version"] = version
    impl = str(target["implementation"])
    if overrides.get("python_version") and not overrides.get("abi"):
        target["abi"] = f"{impl}{version.replace('.', '')}"
    for key, value in target.items():
        if not re.fullmatch(r"[A-Za-z0-9._-]+", str(value)):
            raise CliError(INVALID_ZIP, f"target {key} {value!r} is not a valid tag")
    return target


def _checked_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise CliError(MANIFEST_MISSING, f"project directory not found: {root}")
    manifest = load_manifest(root)
    problems = check_manifest(manifest)
    if problems:
        raise CliError(problems[0].code, f"{problems[0].where}: {problems[0].message}")
    return manifest


def _read_requirements(
    root: Path, requirements: str | os.PathLike[str] | None, auto_freeze: bool
) -> tuple[Requirements, list[str]]:
    """The project's requirements, normalised, and the notes of an auto-freeze that wrote them."""
    req_path = Path(requirements) if requirements else root / "requirements.txt"
    freeze_notes: list[str] = []
    if auto_freeze and not req_path.is_file():
        from ._freeze import freeze_requirements

        freeze_notes = freeze_requirements(req_path)
    if requirements and not req_path.is_file():
        raise CliError(WHEELS_MISSING, f"requirements file not found: {req_path}")
    req_text = req_path.read_text(encoding="utf-8") if req_path.is_file() else ""
    return normalise(req_text, req_path.name), freeze_notes


def build_package(
    project: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    requirements: str | os.PathLike[str] | None = None,
    *,
    platform: str | None = None,
    python_version: str | None = None,
    implementation: str | None = None,
    abi: str | None = None,
    skip_download: bool = False,
    sign_key: str | os.PathLike[str] | None = None,
    wheel_cache: str | os.PathLike[str] | None = None,
    sdk_wheel: str | None = None,
    auto_freeze: bool = False,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> dict[str, Any]:
    """Build the offline zip; return a summary. CliError with a code on any failure.

    `auto_freeze` (the original `-a`): with no requirements file, write one from pip freeze.
    `include` / `exclude`: .gitignore-style patterns added to the manifest's `package` lists.
    """
    started = time.monotonic()
    root = Path(project)
    manifest = _checked_manifest(root)
    reqs, freeze_notes = _read_requirements(root, requirements, auto_freeze)
    target = resolve_target(
        root,
        {
            "wheels_platform": platform,
            "python_version": python_version,
            "implementation": implementation,
            "abi": abi,
        },
    )
    cache = Path(wheel_cache).resolve() if wheel_cache else None
    sdk = find_sdk_wheel(sdk_wheel, cache)
    out = Path(output) if output else Path.cwd() / f"{manifest['name']}-{manifest['version']}.zip"
    out = out.resolve()

    user = [r for r in reqs.items if r.name != canonical(SDK_PROJECT)]
    with tempfile.TemporaryDirectory(prefix="pv-package-") as tmp:
        wheels_dir = Path(tmp) / "wheels"
        wheels_dir.mkdir()
        if skip_download:
            source = root / "wheels"
            for wheel in sorted(source.glob("*.whl")) if source.is_dir() else []:
                shutil.copyfile(wheel, wheels_dir / wheel.name)
        else:
            lines = [r.line() for r in user]
            if not reqs.hash_mode:
                lines += [d for d in sdk_dependencies(sdk) if _dep_name(d) not in reqs.names()]
            progress(f"resolving {len(lines)} requirement(s) for {target['wheels_platform']}")
            download_wheels(lines, wheels_dir, target, cache)
        for stale in wheels_dir.glob("procvision_algorithm_sdk-*.whl"):
            stale.unlink()
        shutil.copyfile(sdk, wheels_dir / sdk.name)
        sdk_hash = hashlib.sha256(sdk.read_bytes()).hexdigest()
        sdk_req = Requirement(
            canonical(SDK_PROJECT),
            f"{SDK_PROJECT}=={_wheel_version(sdk.name)}",
            (f"sha256:{sdk_hash}",) if reqs.hash_mode else (),
        )
        final = Requirements([*user, sdk_req], reqs.notes)
        req_out = (
            "# Generated by procvision-cli package; installed offline from wheels/.\n"
            + "".join(r.line() + "\n" for r in final.items)
        )
        wheel_note = check_wheels(
            req_out,
            sdk_dependencies(sdk),
            sorted(p.name for p in wheels_dir.glob("*.whl")),
            target,
            wheels_dir,
        )
        progress("writing the zip")
        m_include, m_exclude = manifest_patterns(manifest)
        patterns = ([*m_include, *(include or [])], [*m_exclude, *(exclude or [])])
        entries = _write_zip(root, out, patterns, req_out, target, wheels_dir, sign_key)
    notes = freeze_notes + list(final.notes) + ([wheel_note] if wheel_note else [])
    notes += replaced_sdk_pins(reqs, _wheel_version(sdk.name))
    notes += _secrets_note(entries["left_out"])
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    return {
        "status": "OK",
        "zip": str(out),
        "name": manifest["name"],
        "version": manifest["version"],
        "size": out.stat().st_size,
        "sha256": digest,
        "files": entries["files"],
        "wheels": entries["wheels"],
        "left_out": entries["left_out"],
        "requirements": [r.line() for r in final.items],
        "target": target,
        "signed": sign_key is not None,
        "notes": notes,
        "seconds": round(time.monotonic() - started, 2),
    }


def _secrets_note(left_out: dict[str, str]) -> list[str]:
    secrets = [rel for rel, why in left_out.items() if why == SECRET]
    if not secrets:
        return []
    return [
        "left out of the package (signing key or secret-looking files: *.pem, *.key, "
        ".env, .env.*, id_rsa*): " + ", ".join(secrets)
    ]


def _dep_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return canonical(match.group(0)) if match else requirement


def _wheel_version(filename: str) -> str:
    return filename.split("-")[1]


def _write_zip(
    root: Path,
    out: Path,
    patterns: tuple[list[str], list[str]],
    requirements_text: str,
    target: dict[str, Any],
    wheels_dir: Path,
    sign_key: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """Write the zip atomically (temp file + rename); return its files, wheels, what stayed out."""
    generated: dict[str, bytes] = {
        "requirements.txt": requirements_text.encode("utf-8"),
        ENV_FILE: (json.dumps(target, indent=2) + "\n").encode("utf-8"),
    }
    skip = {out}
    if sign_key is not None:
        skip.add(Path(sign_key).resolve())
    chosen = select_files(root, skip, patterns[0], patterns[1], _REGENERATED)
    sources = {rel: root / rel for rel in chosen.files}
    wheels = sorted(p.name for p in wheels_dir.glob("*.whl"))
    for name in wheels:
        sources[f"wheels/{name}"] = wheels_dir / name
    names = write_zip(out, sources, generated, sign_key)
    return {"files": names, "wheels": wheels, "left_out": chosen.left_out}


def add_parser(subparsers: Any) -> None:
    """Register the package command."""
    parser = subparsers.add_parser(
        "package",
        help="build the offline package zip",
        description="Build the offline zip: manifest, requirements.txt, wheels/ for the target "
        "platform (with the SDK's own wheel), the source, checksums.sha256, optional SIGNATURE.",
    )
    parser.add_argument("project", help="project directory")
    parser.add_argument("-o", "--output", help="zip path (default: ./<name>-<version>.zip)")
    parser.add_argument("-r", "--requirements", help="requirements file (default: project's)")
    parser.add_argument(
        "-w",
        "--platform",
        "--wheels-platform",  # the original tool's name
        dest="platform",
        help="wheel platform tag, e.g. manylinux2014_x86_64",
    )
    parser.add_argument("-p", "--python-version", help="target python, e.g. 3.10")
    parser.add_argument("-i", "--implementation", help="target implementation, e.g. cp")
    parser.add_argument("-b", "--abi", help="target ABI, e.g. cp310")
    parser.add_argument(
        "-s",
        "--skip-download",
        action="store_true",
        help="do not download: ship the wheels already in <project>/wheels",
    )
    parser.add_argument(
        "-a",
        "--auto-freeze",
        action="store_true",
        help="no requirements file: write one from `pip freeze` of this interpreter (original -a)",
    )
    parser.add_argument("--sign", metavar="KEY", help="Ed25519 private key (PEM) to sign with")
    parser.add_argument(
        "--wheel-cache", metavar="DIR", help="reuse and fill this directory of downloaded wheels"
    )
    parser.add_argument("--sdk-wheel", metavar="WHL", help="ship this SDK wheel")
    parser.add_argument(
        "--no-validate",
        action="store_true",
        help="do not run the quick validate first (default: a FAIL stops the packaging)",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="ship only project files matching these .gitignore-style patterns (repeatable; "
        "added to manifest package.include; overrides .gitignore)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="leave out files matching these .gitignore-style patterns (repeatable; added to "
        "manifest package.exclude)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list every file that went in or stayed out"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    try:
        if not args.no_validate:
            from .validate import require_pass

            progress(f"validating {args.project}")
            progress(f"validate passed ({require_pass(args.project)} checks)")
        summary = build_package(
            args.project,
            args.output,
            args.requirements,
            platform=args.platform,
            python_version=args.python_version,
            implementation=args.implementation,
            abi=args.abi,
            skip_download=args.skip_download,
            sign_key=args.sign,
            wheel_cache=args.wheel_cache,
            sdk_wheel=args.sdk_wheel,
            auto_freeze=args.auto_freeze,
            include=args.include,
            exclude=args.exclude,
        )
    except CliError as exc:
        return report_error(exc.code, exc.message, args.json)
    if args.json:
        print_json(summary)
        return 0
    print(f"package {summary['zip']} ({summary['size']} bytes, sha256 {summary['sha256'][:16]})")
    print(
        f"  {len(summary['files'])} files, {len(summary['wheels'])} wheels"
        f"{', signed' if summary['signed'] else ''}"
    )
    _print_contents(summary, args.verbose)
    for note in summary["notes"]:
        print(f"  note: {note}")
    return 0


def _print_contents(summary: dict[str, Any], verbose: bool) -> None:
    """What went in and what stayed out: by top-level entry, or every file with -v."""
    files = [f for f in summary["files"] if not f.startswith("wheels/")]
    print("  in:  " + (", ".join(summarize(files)) if not verbose else ""))
    if verbose:
        for rel in files:
            print(f"    {rel}")
    left_out = summary["left_out"]
    if not left_out:
        return
    if verbose:
        print("  out:")
        for rel, why in sorted(left_out.items()):
            print(f"    {rel} ({why})")
        return
    by_reason: dict[str, list[str]] = {}
    for rel, why in left_out.items():
        by_reason.setdefault(why, []).append(rel)
    parts = [f"{why}: {', '.join(summarize(rels))}" for why, rels in sorted(by_reason.items())]
    print("  out: " + "; ".join(parts) + " (-v lists every file)")
