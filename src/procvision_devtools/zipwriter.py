"""Writing the package zip: fixed dates and modes, checksums.sha256, optional SIGNATURE.

The zip is written to a temp file beside `out` and renamed into place, so a reader never sees a
half-written package.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from procvision_algorithm_sdk.errors import INVALID_ZIP

from ._common import CliError

CHECKSUMS = "checksums.sha256"
SIGNATURE = "SIGNATURE"
_FIXED_DATE = (2020, 1, 1, 0, 0, 0)


def _entry(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.external_attr = 0o644 << 16
    info.create_system = 3
    info.compress_type = compress
    return info


def load_signing_key(path: str | os.PathLike[str]) -> Any:
    """Read an Ed25519 private key (PEM); CliError 2001 when it is missing or of another kind."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise CliError(
            INVALID_ZIP, "--sign needs the 'cryptography' package: pip install cryptography"
        ) from None
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(INVALID_ZIP, f"cannot read the signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(INVALID_ZIP, f"{path} is not an Ed25519 private key")
    return key


def write_zip(
    out: Path,
    sources: dict[str, Path],
    generated: dict[str, bytes],
    sign_key: str | os.PathLike[str] | None,
) -> list[str]:
    """Write files (`sources` read from disk, `generated` given) atomically; return the names."""
    names = sorted(set(sources) | set(generated))
    signature_key = load_signing_key(sign_key) if sign_key is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        checksum_lines = []
        with zipfile.ZipFile(tmp_name, "w") as zf:
            for name in names:
                data = generated[name] if name in generated else sources[name].read_bytes()
                stored = name.endswith(".whl")
                zf.writestr(
                    _entry(name, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED), data
                )
                checksum_lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}")
            checksums = ("\n".join(checksum_lines) + "\n").encode("utf-8")
            zf.writestr(_entry(CHECKSUMS, zipfile.ZIP_DEFLATED), checksums)
            if signature_key is not None:
                signature = signature_key.sign(checksums).hex() + "\n"
                zf.writestr(_entry(SIGNATURE, zipfile.ZIP_DEFLATED), signature.encode("ascii"))
        os.replace(tmp_name, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return names
