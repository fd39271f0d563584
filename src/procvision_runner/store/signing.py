"""checksums.sha256 and the Ed25519 SIGNATURE over it.

`checksums.sha256` lists `<sha256 hex>  <path>` for every file of the package (paths relative
to the package root, `/`-separated), except itself and SIGNATURE. SIGNATURE is the hex of the
raw 64-byte Ed25519 signature of the exact bytes of checksums.sha256, checked against the PEM
public keys in `<store>/trusted_keys/*.pub`.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import INVALID_ZIP

from .zipcheck import CHECKSUMS, SIGNATURE, ZipLayout, entry_name_problem

if TYPE_CHECKING:  # cryptography is imported where a key is used: the store opens without it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

POLICIES = ("strict", "lenient")


def parse_checksums(text: str) -> tuple[dict[str, str], list[Problem]]:
    """Parse sha256sum-style lines into {path: hex}."""
    out: dict[str, str] = {}
    problems: list[Problem] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{CHECKSUMS}:{lineno}"
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            problems.append(Problem(where, INVALID_ZIP, "expected '<sha256 hex>  <path>'"))
            continue
        digest, path = parts[0].lower(), parts[1].lstrip("*")
        try:
            bytes.fromhex(digest)
        except ValueError:
            problems.append(Problem(where, INVALID_ZIP, "digest is not hex"))
            continue
        why = entry_name_problem(path)
        if why:
            problems.append(Problem(where, INVALID_ZIP, f"{path!r}: {why}"))
            continue
        out[path] = digest
    return out, problems


def make_checksums(root: str | Path, files: Iterable[str] | None = None) -> str:
    """Checksums text for every file under `root` (or the given root-relative files)."""
    base = Path(root)
    if files is None:
        files = sorted(
            p.relative_to(base).as_posix()
            for p in base.rglob("*")
            if p.is_file() and p.name not in (CHECKSUMS, SIGNATURE)
        )
    lines = []
    for rel in files:
        h = hashlib.sha256()
        with open(base / rel, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        lines.append(f"{h.hexdigest()}  {rel}")
    return "\n".join(lines) + "\n"


def sign(private_key: Ed25519PrivateKey, checksums: bytes) -> str:
    """The SIGNATURE file's content for these checksums bytes."""
    return private_key.sign(checksums).hex() + "\n"


def load_trusted_keys(keys_dir: Path) -> tuple[list[Ed25519PublicKey], list[Problem]]:
    """Every `*.pub` Ed25519 PEM key in the directory (unreadable keys are problems)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    keys: list[Ed25519PublicKey] = []
    problems: list[Problem] = []
    if not keys_dir.is_dir():
        return keys, problems
    for path in sorted(keys_dir.glob("*.pub")):
        try:
            key = load_pem_public_key(path.read_bytes())
        except (ValueError, OSError) as exc:
            problems.append(Problem(f"trusted_keys/{path.name}", INVALID_ZIP, f"unreadable: {exc}"))
            continue
        if isinstance(key, Ed25519PublicKey):
            keys.append(key)
        else:
            problems.append(Problem(f"trusted_keys/{path.name}", INVALID_ZIP, "not Ed25519"))
    return keys, problems


def verify_package(
    zip_path: str | Path, layout: ZipLayout, keys_dir: Path, policy: str = "lenient"
) -> tuple[bool, list[Problem]]:
    """Verify checksums and signature of a checked zip; returns (signed_and_valid, problems).

    strict: an unsigned package is refused. Both policies refuse a signature that does not
    verify against a trusted key, and checksums that do not match the files.
    """
    if policy not in POLICIES:
        raise ValueError(f"signature_policy must be one of {POLICIES}, not {policy!r}")
    problems: list[Problem] = []
    if not layout.has_signature and policy == "strict":
        problems.append(
            Problem(SIGNATURE, INVALID_ZIP, "the package is not signed (signature_policy strict)")
        )
    if layout.has_signature and not layout.has_checksums:
        problems.append(Problem(SIGNATURE, INVALID_ZIP, "SIGNATURE without checksums.sha256"))
    if problems or not layout.has_checksums:
        return False, problems
    with zipfile.ZipFile(zip_path) as zf:
        checksums_bytes = zf.read(layout.members[CHECKSUMS])
        listed, problems = parse_checksums(checksums_bytes.decode("utf-8", "replace"))
        present = {f for f in layout.files if f not in (CHECKSUMS, SIGNATURE)}
        for rel in sorted(set(listed) - present):
            problems.append(Problem(rel, INVALID_ZIP, "listed in checksums.sha256 but missing"))
        for rel in sorted(present - set(listed)):
            problems.append(Problem(rel, INVALID_ZIP, "not listed in checksums.sha256"))
        for rel in sorted(set(listed) & present):
            h = hashlib.sha256()
            with zf.open(layout.members[rel]) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != listed[rel]:
                problems.append(Problem(rel, INVALID_ZIP, "sha256 does not match checksums"))
        signature_text = zf.read(layout.members[SIGNATURE]) if layout.has_signature else None
    if signature_text is None:
        return False, problems
    try:
        signature = bytes.fromhex(signature_text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return False, [*problems, Problem(SIGNATURE, INVALID_ZIP, "SIGNATURE is not hex")]
    keys, key_problems = load_trusted_keys(keys_dir)
    if not keys:
        return False, [
            *problems,
            *key_problems,
            Problem(SIGNATURE, INVALID_ZIP, f"no trusted Ed25519 keys in {keys_dir}"),
        ]
    from cryptography.exceptions import InvalidSignature

    for key in keys:
        try:
            key.verify(signature, checksums_bytes)
        except InvalidSignature:
            continue
        return not problems, problems
    return False, [
        *problems,
        Problem(SIGNATURE, INVALID_ZIP, "the signature does not verify against any trusted key"),
    ]
