"""The dependency-closure check gives the same verdicts on uv's resolver as on pip's (issue 14).

Every case runs both real resolvers over the same real wheels (built here: pure-Python, with the
platform tag or Requires-Python the case needs) and expects the same codes at the same places:
a missing transitive or direct wheel, a wheel for another platform, a conflict, a Python the
wheel refuses, and wheels that do install. uv is what the store picks when it can spell the
target; pip stays for the targets it cannot (and when PROCVISION_INSTALLER=pip).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from procvision_runner.store.closure import check_closure, resolver_for
from procvision_runner.store.closure_uv import uv_platform
from procvision_runner.store.wheels import TargetEnv

HERE = TargetEnv.current()
LINUX = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "linux_x86_64")
LINUX_310 = TargetEnv(python_version="3.10", implementation="cp", abi="cp310", platforms=LINUX)
# what `package` writes for a glibc station: the manylinux ladder, no plain linux_x86_64
STRICT_310 = TargetEnv(
    python_version="3.10", abi="cp310", platforms=("manylinux_2_28_x86_64", "manylinux_2_17_x86_64")
)
WINDOWS = TargetEnv(
    python_version="3.11", implementation="cp", abi="cp311", platforms=("win_amd64",)
)


def _wheel(
    out: Path,
    name: str,
    version: str,
    requires: tuple[str, ...] = (),
    tag: str = "py3-none-any",
    requires_python: str | None = None,
) -> Path:
    """A real wheel of one empty module: its METADATA, WHEEL and RECORD."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += f"Requires-Python: {requires_python}\n" if requires_python else ""
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    wheel = f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    files = {
        f"{module}/__init__.py": b"",
        f"{info}/METADATA": meta.encode(),
        f"{info}/WHEEL": wheel.encode(),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


def _case(name: str, wheels: Path) -> tuple[str, TargetEnv]:
    """Build the wheels of one case; (requirements.txt, target)."""
    if name == "missing transitive":
        _wheel(wheels, "pv-needs-dep", "1.0", ("pv-missing-dep>=2",))
        _wheel(wheels, "pv-missing-dep", "1.5")  # too old: only >=2 would do
        return "pv-needs-dep==1.0\n", HERE
    if name == "missing direct":
        _wheel(wheels, "pv-present", "1.0")
        return "pv-present\npv-absent\n", HERE
    if name == "wrong platform":
        _wheel(wheels, "pv-native", "1.0", tag="cp311-cp311-win_amd64")
        return "pv-native\n", LINUX_310
    if name == "conflict":
        _wheel(wheels, "pv-a", "1.0", ("pv-c>=2",))
        _wheel(wheels, "pv-b", "1.0", ("pv-c<2",))
        _wheel(wheels, "pv-c", "1.0")
        _wheel(wheels, "pv-c", "2.0")
        return "pv-a\npv-b\n", HERE
    if name == "wrong python":
        _wheel(wheels, "pv-new", "1.0", requires_python=">=3.99")
        return "pv-new\n", HERE
    if name == "installs (linux)":
        _wheel(wheels, "pv-a", "1.0", ("pv-c>=2",))
        _wheel(wheels, "pv-c", "2.0", tag="cp310-cp310-manylinux_2_17_x86_64")
        _wheel(wheels, "pv-plain", "1.0", tag="cp310-cp310-linux_x86_64")
        return "pv-a\npv-plain\n", LINUX_310
    if name == "plain linux wheel, manylinux target":
        _wheel(wheels, "pv-a", "1.0", ("pv-plain",))
        _wheel(wheels, "pv-c", "2.0", tag="cp310-cp310-manylinux_2_17_x86_64")
        _wheel(wheels, "pv-plain", "1.0", tag="cp310-cp310-linux_x86_64")
        return "pv-a\npv-c\n", STRICT_310
    if name == "installs (manylinux)":
        _wheel(wheels, "pv-c", "2.0", tag="cp310-cp310-manylinux_2_17_x86_64")
        _wheel(wheels, "pv-both", "1.0", tag="cp310-cp310-manylinux_2_28_x86_64.linux_x86_64")
        return "pv-c\npv-both\n", STRICT_310
    assert name == "installs (windows)"
    _wheel(wheels, "pv-native", "1.0", tag="cp311-cp311-win_amd64")
    return "pv-native\n", WINDOWS


# case -> the (where, code) of every problem both resolvers must report
EXPECTED = {
    "missing transitive": [("wheels/pv-missing-dep>=2", "2004")],
    "missing direct": [("wheels/pv-absent", "2004")],
    "wrong platform": [("wheels/pv-native", "2004")],
    "conflict": [("wheels/", "2004")],
    "wrong python": [("wheels/", "2003")],
    "installs (linux)": [],
    "plain linux wheel, manylinux target": [("wheels/pv-plain", "2004")],
    "installs (manylinux)": [],
    "installs (windows)": [],
}


@pytest.mark.parametrize("resolver", ["pip", "uv"])
@pytest.mark.parametrize("case", list(EXPECTED))
def test_both_resolvers_give_the_same_verdict(tmp_path: Path, case: str, resolver: str) -> None:
    requirements, target = _case(case, tmp_path / "wheels")
    assert resolver_for(target, resolver)[0] == resolver
    problems = check_closure(requirements, tmp_path / "wheels", target, resolver=resolver)
    assert [(p.where, p.code) for p in problems] == EXPECTED[case], problems
    text = " ".join(p.message for p in problems)
    if case == "missing transitive":
        assert "pv-missing-dep>=2" in text and "needed by pv-needs-dep" in text
    elif case == "plain linux wheel, manylinux target":
        assert "needed by pv-a" in text and target.describe() in text
    elif case in ("missing direct", "wrong platform"):
        assert "named in requirements.txt" in text and target.describe() in text
    elif case == "conflict":
        # each resolver's own reason: uv names the clash, pip (quiet) says there is one
        assert ("pv-c<2" in text) if resolver == "uv" else ("conflicting dependencies" in text)
    elif case == "wrong python":
        assert "pv-new" in text and "3.99" in text


def test_uv_is_the_default_resolver_and_pip_stays_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolver_for(HERE)[0] == "uv"  # uv is a dependency of the runner distribution
    monkeypatch.setenv("PROCVISION_INSTALLER", "pip")  # the switch venv builds honour, too
    assert resolver_for(HERE) == ("pip", None)
    with pytest.raises(ValueError, match="not installed"):
        resolver_for(HERE, "uv")
    with pytest.raises(ValueError, match="resolver must be"):
        resolver_for(HERE, "poetry")


def test_targets_uv_cannot_spell_are_left_to_pip() -> None:
    assert uv_platform(LINUX_310) == "x86_64-manylinux_2_28"
    # uv is shown wheels/ without plain linux_x86_64 wheels for this one (wheels_for_uv)
    assert uv_platform(STRICT_310) == "x86_64-manylinux_2_28"
    assert uv_platform(WINDOWS) == "x86_64-pc-windows-msvc"
    assert uv_platform(TargetEnv(python_version="3.11", platforms=())) == ""  # this machine
    pypy = TargetEnv(python_version="3.10", implementation="pp", platforms=LINUX)
    free_threaded = TargetEnv(python_version="3.13", abi="cp313t", platforms=LINUX)
    mac = TargetEnv(python_version="3.11", platforms=("macosx_11_0_arm64",))
    musl = TargetEnv(python_version="3.11", platforms=("musllinux_1_2_x86_64",))
    odd_level = TargetEnv(
        python_version="3.11", platforms=("manylinux_2_27_x86_64", "linux_x86_64")
    )
    for target in (pypy, free_threaded, mac, musl, odd_level):
        assert uv_platform(target) is None, target
        assert resolver_for(target) == ("pip", None)
