"""Refusals before anything is unpacked, signatures, registry recovery and reconcile.

Each refusal is checked for its code, for nothing written outside the store, and for nothing
written inside it but one audit line. No venv is built here: these stay fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from helpers.package_zips import dependency_wheels, make_package_zip, sdk_wheel
from helpers.runner_kit import alive
from helpers.store import hold_store_lock, refuse_install

from procvision_runner.store import PackageManager, PackageStore, StoreConfig, StoreError, venv
from procvision_runner.store.registry import Registry
from procvision_runner.store.wheels import TargetEnv, check_requirements
from procvision_runner.store.zipcheck import check_zip, extract_zip


@pytest.fixture(scope="module")
def small_wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The real wheel list (no venv is built from them in this module)."""
    return [*dependency_wheels(), sdk_wheel()]


@pytest.fixture
def env(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = PackageStore(tmp_path / "store").open()
    return outside, store


def _symlink_entry(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("label", "extra"),
    [
        ("zip-slip", [("../evil.py", b"x")]),
        ("deep zip-slip", [("algorithm_example/../../evil.py", b"x")]),
        ("absolute", [("/tmp/evil.py", b"x")]),
        ("drive letter", [("C:/evil.py", b"x")]),
        ("backslash", [("..\\evil.py", b"x")]),
        ("symlink", [(_symlink_entry("assets/link", "/etc/passwd"), b"/etc/passwd")]),
    ],
)
def test_unsafe_entries_refused(env, small_wheels, label: str, extra) -> None:
    outside, store = env
    z = make_package_zip(outside / "p.zip", wheels=small_wheels, extra=extra)
    err = refuse_install(store, outside, z, "2001")
    assert err.message


def _bump_version_needed(data: bytes, version: int = 71) -> bytes:
    """Set every central-directory entry's "version needed to extract" (7.1: not supported)."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at != -1:
        out[at + 6 : at + 8] = version.to_bytes(2, "little")
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def test_unsupported_zip_version_refused(env, small_wheels) -> None:
    outside, store = env
    z = make_package_zip(outside / "v.zip", wheels=small_wheels)
    z.write_bytes(_bump_version_needed(z.read_bytes()))
    layout, problems = check_zip(z)
    assert layout is None and [p.code for p in problems] == ["2001"], problems
    err = refuse_install(store, outside, z, "2001")
    assert "7.1" in err.message
    report = PackageManager(store).validate_zip(z)
    assert report["summary"]["status"] == "FAIL"
    assert report["checks"][0]["error_code"] == "2001"


@pytest.mark.parametrize(
    "extra",
    [
        [("assets/a", b"file"), ("assets/a/b", b"x")],
        [("assets/a/b", b"x"), ("assets/a", b"file")],
        [("assets/A", b"file"), ("assets/a/b", b"x")],  # one path on a case-insensitive disk
        [("assets/dup.txt", b"1"), ("assets/DUP.txt", b"2")],
    ],
    ids=["file-then-dir", "dir-then-file", "case-clash", "case-duplicate"],
)
def test_entries_that_clash_on_disk_refused(env, small_wheels, extra) -> None:
    outside, store = env
    z = make_package_zip(outside / "c.zip", wheels=small_wheels, extra=extra)
    layout, problems = check_zip(z)
    assert layout is None and problems and {p.code for p in problems} == {"2001"}, problems
    refuse_install(store, outside, z, "2001")


def test_extract_turns_disk_clashes_into_refusals(tmp_path: Path, small_wheels) -> None:
    # check_zip refuses these; extract_zip must not trust that and fail with OSError anyway
    z = make_package_zip(tmp_path / "ok.zip", wheels=small_wheels[:0], requirements="")
    layout, problems = check_zip(z)
    assert layout is not None, problems
    first = next(iter(layout.members))
    clash = dataclasses.replace(
        layout, members={first: layout.members[first], f"{first}/inner": layout.members[first]}
    )
    with pytest.raises(ValueError, match="inner"):
        extract_zip(z, tmp_path / "out", clash)


def test_zip_bomb_refused(env, small_wheels) -> None:
    outside, store = env
    z = make_package_zip(
        outside / "bomb.zip", wheels=small_wheels, extra=[("assets/blob.bin", b"\0" * (64 << 20))]
    )
    err = refuse_install(store, outside, z, "2001")
    assert "ratio" in err.message


def test_corrupt_member_refused(env, small_wheels) -> None:
    outside, store = env
    z = make_package_zip(outside / "c.zip", wheels=small_wheels)
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("algorithm_example/main.py")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 10
    data[start] ^= 0xFF
    z.write_bytes(bytes(data))
    refuse_install(store, outside, z, "2001")


def test_missing_manifest_refused(env, small_wheels) -> None:
    outside, store = env
    z = make_package_zip(outside / "m.zip", wheels=small_wheels, omit=["manifest.json"])
    refuse_install(store, outside, z, "2002")


def test_missing_wheel_refused(env, small_wheels) -> None:
    outside, store = env
    no_numpy = [w for w in small_wheels if not w.name.startswith("numpy-")]
    z = make_package_zip(
        outside / "w.zip",
        wheels=no_numpy,
        requirements="numpy\npillow\nprocvision-algorithm-sdk\n",
    )
    err = refuse_install(store, outside, z, "2004")
    assert "numpy" in err.message


def test_wheel_for_another_abi_refused(env, small_wheels, tmp_path: Path) -> None:
    outside, store = env
    other = tmp_path / "numpy-2.0.0-cp39-cp39-manylinux_2_28_x86_64.whl"
    other.write_bytes(b"not really a wheel")
    wheels = [*(w for w in small_wheels if not w.name.startswith("numpy-")), other]
    z = make_package_zip(outside / "abi.zip", wheels=wheels)
    err = refuse_install(store, outside, z, "2003")
    assert "numpy" in err.message


def _trust(store: PackageStore) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (store.trusted_keys / "station.pub").write_bytes(pem)
    return key


def test_signature_policy(env, small_wheels) -> None:
    outside, store = env
    _trust(store)
    stranger = Ed25519PrivateKey.generate()
    bad = make_package_zip(outside / "bad.zip", wheels=small_wheels, sign_key=stranger)
    err = refuse_install(store, outside, bad, "2001", signature_policy="strict")
    assert "signature" in err.message
    # lenient still refuses a bad signature, but lets an unsigned package through the checks
    refuse_install(store, outside, bad, "2001", signature_policy="lenient")
    unsigned = make_package_zip(outside / "unsigned.zip", wheels=small_wheels)
    err = refuse_install(store, outside, unsigned, "2001", signature_policy="strict")
    assert "not signed" in err.message
    lenient = PackageManager(store, config=StoreConfig(signature_policy="lenient"))
    _layout, problems, signed = lenient.check(unsigned)
    assert problems == [] and signed is False


def test_good_signature_and_tampered_checksums(env, small_wheels) -> None:
    outside, store = env
    key = _trust(store)
    good = make_package_zip(outside / "good.zip", wheels=small_wheels, sign_key=key)
    strict = PackageManager(store, config=StoreConfig(signature_policy="strict"))
    _layout, problems, signed = strict.check(good)
    assert problems == [] and signed is True
    # a file changed after signing: its checksum no longer matches
    tampered = outside / "tampered.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "algorithm_example/main.py":
                data += b"\n# changed\n"
            dst.writestr(info, data)
    err = refuse_install(store, outside, tampered, "2001", signature_policy="strict")
    assert "sha256" in err.message


def test_check_zip_accepts_nested_and_reports_layout(tmp_path: Path, small_wheels) -> None:
    z = make_package_zip(tmp_path / "n.zip", wheels=small_wheels, nested=True)
    layout, problems = check_zip(z)
    assert problems == [] and layout is not None
    assert layout.prefix == "algorithm-example-1.0.0/"
    assert (layout.name, layout.version) == ("algorithm-example", "1.0.0")
    assert "manifest.json" in layout.files and len(layout.wheels) == 3


def test_check_requirements_codes() -> None:
    here = TargetEnv.current()
    wheels = ["numpy-2.0.0-cp39-cp39-manylinux_2_28_x86_64.whl", "pillow-10.0.0-py3-none-any.whl"]
    problems = check_requirements("numpy\npillow>=11\nscipy\n", wheels, here)
    assert [(p.where, p.code) for p in problems] == [
        ("requirements.txt:numpy", "2003"),
        ("requirements.txt:pillow", "2004"),
        ("requirements.txt:scipy", "2004"),
    ]
    assert check_requirements("pillow; python_version < '3'\n", [], here) == []
    assert [p.code for p in check_requirements("--index-url http://x\n", [], here)] == ["2004"]
    pinned = "pillow==10.0.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
    assert check_requirements(pinned, wheels[1:], here) == []
    old = TargetEnv.from_env_json({"python_version": "3.9", "abi": "cp39"})
    assert check_requirements("numpy\n", wheels[:1], old) == []


def test_corrupt_registry_recovered_from_backup(env) -> None:
    _outside, store = env
    reg = Registry(packages=[{"name": "x", "version": "1", "state": "deployed"}])
    store.save_registry(reg)
    store.registry_path.write_text("{ torn", encoding="utf-8")
    reopened = PackageStore(store.root).open()
    # x 1 has no directory: kept, but marked invalid rather than silently dropped
    got = reopened.load_registry()
    assert [(e["name"], e["state"]) for e in got.packages] == [("x", "invalid")]
    assert json.loads(store.registry_path.read_text())["packages"][0]["name"] == "x"
    assert any(a["action"] == "recover-registry" for a in store.audit.read())


def test_corrupt_registry_without_backup_refused(env) -> None:
    _outside, store = env
    store.save_registry(Registry(packages=[{"name": "x", "version": "1"}]))
    store.registry_path.write_text("[]", encoding="utf-8")
    store.backup_path.write_text("nope", encoding="utf-8")
    with pytest.raises(StoreError) as err:
        PackageStore(store.root).open()
    assert "refusing to start with an empty registry" in err.value.message
    assert store.registry_path.read_text() == "[]"  # left for a person to look at


def test_reconcile_removes_leftovers(env) -> None:
    _outside, store = env
    name_dir = store.deployed / "algorithm-example"
    (name_dir / ".tmp-1.0.0-abcd" / "venv").mkdir(parents=True)
    (name_dir / "0.9").mkdir()  # unregistered, no install marker: an interrupted install
    (store.tmp / "scratch").write_text("x")
    (store.zips / ".algorithm-example-1.0.0.zip.tmp-1").write_text("x")
    (store.active_dir / "p404.json").write_text("{}")
    changes = PackageStore(store.root).open().reconcile()
    assert not name_dir.exists()
    assert list(store.tmp.iterdir()) == []
    assert list(store.zips.iterdir()) == []
    assert list(store.active_dir.iterdir()) == []
    assert changes == []  # the open() before already did all of it
    assert any("unfinished install" in a["message"] for a in store.audit.read())


def _fake_installed(store: PackageStore, version: str, pids: list[str]) -> dict:
    """A registered version as an install leaves it (marker, zip), without building a venv."""
    entry = {
        "name": "algo",
        "version": version,
        "supported_pids": ["p1", "p2"],
        "state": "deployed",
        "created_ns": time.time_ns(),
        "sha256": "0" * 64,
    }
    path = store.package_dir("algo", version)
    path.mkdir(parents=True)
    (path / ".procvision_install.json").write_text(json.dumps(entry))
    store.zip_path("algo", version).write_bytes(b"zip of " + version.encode())
    reg = store.load_registry()
    reg.packages.append(entry)
    for pid in pids:
        reg.active[pid] = {"name": "algo", "version": version, "activated_at": "t"}
    store.save_registry(reg)
    return entry


@pytest.mark.parametrize(
    ("point", "gone"), [("uninstall-after-trash", False), ("uninstall-after-registry", True)]
)
def test_uninstall_killed_at_each_point_is_all_or_nothing(
    tmp_path: Path, point: str, gone: bool
) -> None:
    root = tmp_path / "store"
    store = PackageStore(root).open()
    _fake_installed(store, "1.0.0", ["p1"])
    _fake_installed(store, "2.0.0", ["p2"])
    before = json.loads(store.registry_path.read_text())
    cmd = [sys.executable, "-m", "procvision_runner.cli", "--store", str(root)]
    r = subprocess.run(
        [*cmd, "uninstall", "algo", "2.0.0", "--force"],
        env={**os.environ, "PROCVISION_CRASH_AT": point},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    reg = PackageStore(root).open().load_registry()  # the restart
    versions = sorted(p["version"] for p in reg.packages)
    on_disk = sorted(p.name for p in (store.deployed / "algo").iterdir())
    zips = sorted(p.name for p in store.zips.iterdir())
    if gone:
        assert versions == on_disk == ["1.0.0"] and zips == ["algo-1.0.0.zip"]
        assert reg.active == {"p1": before["active"]["p1"]}
    else:  # nothing happened: same registry, same files, the binding kept
        assert reg.to_json() == before
        assert on_disk == ["1.0.0", "2.0.0"] and zips == ["algo-1.0.0.zip", "algo-2.0.0.zip"]
    assert all(p["state"] == "deployed" for p in reg.packages)


def _sleeper(cwd: Path, *, leader_exits: bool = False) -> tuple[subprocess.Popen, int]:
    """A process group of its own, like an install step's; (leader, the sleeping pid)."""
    script = (
        "sleep 120 </dev/null >/dev/null & echo $!; read x"
        if leader_exits
        else "echo $$; exec sleep 120"
    )
    proc = subprocess.Popen(
        ["sh", "-c", script],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _stop(proc: subprocess.Popen, *pids: int) -> None:
    for pid in (proc.pid, *pids):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=10)


@pytest.mark.skipif(venv.boot_id() is None, reason="needs Linux /proc")
def test_reconcile_never_kills_a_group_that_only_shares_the_recorded_number(env) -> None:
    outside, store = env
    proc, sleeper = _sleeper(outside)
    try:
        record = venv.record_group(store.tmp, proc.pid, outside)
        assert record is not None
        doc = json.loads(record.read_text())
        for wrong in ({"start": doc["start"] + 1}, {"boot_id": "another-boot"}, {"pgid": 1}):
            record.write_text(json.dumps({**doc, **wrong}))
            PackageStore(store.root).open()  # reconcile
            assert not record.exists()
            assert alive(sleeper), wrong
        record.write_text(str(proc.pid))  # the old format names no start time: left alone
        PackageStore(store.root).open()
        assert alive(sleeper)
        # the same record, untouched, is ours: reconcile kills the group
        record.write_text(json.dumps(doc))
        assert venv.kill_recorded_groups(store.tmp) == [proc.pid]
        proc.wait(timeout=10)
        assert not alive(sleeper)
    finally:
        _stop(proc, sleeper)


@pytest.mark.skipif(venv.boot_id() is None, reason="needs Linux /proc")
def test_a_group_whose_leader_died_is_killed_only_in_the_recorded_directory(
    tmp_path: Path,
) -> None:
    records = tmp_path / "records"
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    for d in (records, work, elsewhere):
        d.mkdir()
    ours, our_sleeper = _sleeper(work, leader_exits=True)
    theirs, their_sleeper = _sleeper(elsewhere, leader_exits=True)
    try:
        assert venv.record_group(records, ours.pid, work) is not None
        doc = json.loads((records / f"{ours.pid}.pgid").read_text())
        # the other group is recorded as if it had worked in our directory
        (records / f"{theirs.pid}.pgid").write_text(
            json.dumps({**doc, "pgid": theirs.pid, "start": 0})
        )
        for leader in (ours, theirs):
            leader.communicate("\n", timeout=10)  # the leader exits; its sleep lives on
        assert alive(our_sleeper) and alive(their_sleeper)
        assert venv.kill_recorded_groups(records) == [ours.pid]
        deadline = time.monotonic() + 10
        while alive(our_sleeper) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(our_sleeper)
        assert alive(their_sleeper)
        assert list(records.iterdir()) == []
    finally:
        _stop(ours, our_sleeper)
        _stop(theirs, their_sleeper)


def test_queries_answer_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    store = PackageStore(tmp_path / "store", lock_timeout_s=0.5).open()
    entry = {"name": "algo", "version": "1.0.0", "supported_pids": ["p1"], "state": "deployed"}
    reg = Registry(packages=[entry], active={"p1": {"name": "algo", "version": "1.0.0"}})
    store.save_registry(reg)
    manager = PackageManager(store)
    holder = hold_store_lock(store.root)
    try:
        with pytest.raises(StoreError, match="busy"):
            manager.deactivate("p1")  # a flow still waits for the lock (and gives up here)
        listed = manager.list()
        assert [(e["name"], e["version"], e["state"]) for e in listed] == [
            ("algo", "1.0.0", "running")
        ]
        assert manager.active() == {"p1": {"name": "algo", "version": "1.0.0"}}
        # an unreadable registry.json: the queries read the last good copy and write nothing
        store.registry_path.write_text("{broken")
        assert manager.active() == {"p1": {"name": "algo", "version": "1.0.0"}}
        assert [e["version"] for e in manager.list()] == ["1.0.0"]
        assert store.registry_path.read_text() == "{broken"
    finally:
        holder.communicate("", timeout=10)
    # with the lock free again, a flow repairs registry.json from the copy as before
    assert manager.deactivate("p1")["pid"] == "p1"
    assert json.loads(store.registry_path.read_text())["active"] == {}
