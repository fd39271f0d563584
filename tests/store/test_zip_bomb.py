"""Zip bombs below the per-member ratio check: the archive's total and the store's free disk.

Real archives with tight limits passed in keep this test's own disk and time small; the one
test at the default limits uses an archive that only declares a huge size (thousands of tiny
members whose central directory says 1 MiB - 1 each), which is what `check_zip` reads.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest
from helpers.package_zips import make_package_zip
from helpers.store import refuse_install as _refuse

from procvision_runner.store import PackageStore
from procvision_runner.store.zipcheck import ZipLimits, check_zip, extract_zip

MEMBER = 1024 * 1024 - 1  # just under ratio_min_bytes: the per-member ratio never looks


@pytest.fixture
def env(tmp_path: Path) -> tuple[Path, PackageStore]:
    outside = tmp_path / "outside"
    outside.mkdir()
    return outside, PackageStore(tmp_path / "store").open()


def _zeros_package(out: Path, members: int, size: int = MEMBER) -> Path:
    extra = [(f"assets/pad/{i:05d}.bin", bytes(size)) for i in range(members)]
    return make_package_zip(out, wheels=[], extra=extra)


def _declare_sizes(path: Path, prefix: bytes, size: int) -> None:
    """Rewrite the central directory's uncompressed size of every member under `prefix`."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + name_len].startswith(prefix):
            data[at + 24 : at + 28] = size.to_bytes(4, "little")
        at = data.find(b"PK\x01\x02", at + 46 + name_len)
    path.write_bytes(bytes(data))


def test_many_members_under_the_member_ratio_are_refused_by_the_total_ratio(env) -> None:
    outside, store = env
    z = _zeros_package(outside / "bomb.zip", 48)  # 48 MiB of zeros in ~60 KB
    limits = ZipLimits(total_ratio_min_bytes=1024 * 1024)  # the default ratio, a smaller floor
    layout, problems = check_zip(z, limits)
    assert layout is None and [p.code for p in problems] == ["2001"], problems
    assert "exceeds 100:1" in problems[0].message
    err = _refuse(store, outside, z, "2001", limits=limits)  # nothing written to the store
    assert "zip bomb" in err.message


def test_default_limits_refuse_what_a_tiny_archive_declares(tmp_path: Path) -> None:
    """The issue's bomb (3000 x (1 MiB - 1) bytes) as declared sizes, at the default limits."""
    z = _zeros_package(tmp_path / "declared.zip", 3000, size=1)
    assert check_zip(z)[1] == []  # as built, it is a harmless package
    _declare_sizes(z, b"assets/pad/", MEMBER)
    with zipfile.ZipFile(z) as zf:
        declared = sum(i.file_size for i in zf.infolist())
    assert declared > 3 * 10**9 and z.stat().st_size < 2 * 1024**2
    layout, problems = check_zip(z)
    assert layout is None and [p.code for p in problems] == ["2001"], problems
    assert "zip bomb" in problems[0].message


def test_the_total_is_bounded_by_the_stores_free_disk(env) -> None:
    outside, store = env
    z = _zeros_package(outside / "fat.zip", 3, size=4096)
    layout, _ = check_zip(z)
    assert layout is not None
    free = 2 * layout.total_bytes - 2  # half of it is one byte short
    layout, problems = check_zip(z, free_bytes=free)
    assert layout is None and [p.code for p in problems] == ["2001"], problems
    assert f"0.5 of the store's free disk, {free} bytes free" in problems[0].message
    assert check_zip(z, free_bytes=free + 2)[1] == []
    # Through the store: a share of its real free disk too small for any package.
    err = _refuse(store, outside, z, "2001", limits=ZipLimits(max_disk_fraction=1e-12))
    assert "free disk" in err.message


def test_extraction_counts_real_bytes_against_the_bounds(tmp_path: Path) -> None:
    z = _zeros_package(tmp_path / "p.zip", 4, size=300_000)
    layout, problems = check_zip(z)
    assert layout is not None, problems
    # A layout whose declared total lies low: the count stops it while it writes.
    lying = dataclasses.replace(layout, total_bytes=layout.total_bytes - 500_000)
    with pytest.raises(ValueError, match="the declared total"):
        extract_zip(z, tmp_path / "out1", lying)
    written = sum(p.stat().st_size for p in (tmp_path / "out1").rglob("*") if p.is_file())
    assert written <= lying.total_bytes
    # The free disk is measured again when unpacking starts (it may have shrunk since check).
    with pytest.raises(ValueError, match="free disk"):
        extract_zip(z, tmp_path / "out2", layout, ZipLimits(max_disk_fraction=1e-12))
    assert [p for p in (tmp_path / "out2").rglob("*") if p.is_file() and p.stat().st_size] == []
    extract_zip(z, tmp_path / "out3", layout)
    assert (tmp_path / "out3" / "assets" / "pad" / "00003.bin").stat().st_size == 300_000
