"""Requirement and wheel checks: can `pip install --no-index` succeed from `wheels/` alone?

The check answers before any venv is built: every requirement (after its environment marker)
must be satisfied by a wheel in the package whose version matches and whose tags the TARGET
interpreter supports. No match by name or version is 2004; matches only for another Python,
ABI or platform is 2003.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, sys_tags
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from procvision_algorithm_sdk.contract import Problem
from procvision_algorithm_sdk.errors import INCOMPATIBLE_PYTHON, WHEELS_MISSING

_PROBE = (
    "import json, sys, platform\n"
    "from packaging.tags import sys_tags\n"
    "print(json.dumps({'v': '%d.%d' % sys.version_info[:2],"
    " 'full': platform.python_version(),"
    " 'impl': sys.implementation.name,"
    " 'tags': [str(t) for t in sys_tags()]}))\n"
)
# The target interpreter may lack `packaging`; then ask it for the facts and build tags here.
_PROBE_BARE = (
    "import json, sys, sysconfig, platform\n"
    "print(json.dumps({'v': '%d.%d' % sys.version_info[:2],"
    " 'full': platform.python_version(),"
    " 'impl': sys.implementation.name,"
    " 'soabi': sysconfig.get_config_var('SOABI') or '',"
    " 'platform': sysconfig.get_platform()}))\n"
)
_IMPL_ABBR = {"cpython": "cp", "pypy": "pp"}


@dataclass(frozen=True)
class TargetEnv:
    """The interpreter a package will be installed for: version, implementation, ABI, platforms."""

    python_version: str  # "3.11"
    implementation: str = "cp"  # "cp", "pp"
    abi: str | None = None  # "cp311"; None: the implementation's default
    platforms: tuple[str, ...] = ()  # e.g. ("manylinux_2_28_x86_64", ..., "linux_x86_64")
    tags: frozenset[Tag] | None = field(default=None, compare=False)  # exact, when probed
    full_version: str | None = None

    @classmethod
    def current(cls) -> TargetEnv:
        """The interpreter running this code."""
        tags = list(sys_tags())
        return cls._from_tags(
            f"{sys.version_info[0]}.{sys.version_info[1]}",
            _IMPL_ABBR.get(sys.implementation.name, sys.implementation.name),
            tags,
            default_environment()["python_full_version"],
        )

    @classmethod
    def for_python(cls, python: str | None, timeout_s: float = 60.0) -> TargetEnv:
        """Probe another interpreter (None or this one's path: `current()`)."""
        if python is None or python == sys.executable:
            return cls.current()
        out = _run_probe(python, _PROBE, timeout_s)
        if out is not None and "tags" in out:
            tags = [_parse_tag(t) for t in out["tags"]]
            return cls._from_tags(
                out["v"], _IMPL_ABBR.get(out["impl"], out["impl"]), tags, out.get("full")
            )
        out = _run_probe(python, _PROBE_BARE, timeout_s)
        if out is None:
            raise RuntimeError(f"cannot run the target interpreter {python!r}")
        impl = _IMPL_ABBR.get(out["impl"], out["impl"])
        plat = str(out["platform"]).replace("-", "_").replace(".", "_")
        major, minor = out["v"].split(".")
        here = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        # Same machine, same platform: the manylinux/musllinux levels are this host's.
        platforms = cls.current().platforms if plat == here else (plat,)
        return cls(
            python_version=out["v"],
            implementation=impl,
            abi=f"{impl}{major}{minor}",
            platforms=platforms,
            full_version=out.get("full"),
        )

    @classmethod
    def from_env_json(cls, env: dict, fallback: TargetEnv | None = None) -> TargetEnv:
        """A target described by a package's `.procvision_env.json` (fields missing: fallback)."""
        base = fallback or cls.current()
        version = str(env.get("python_version") or base.python_version)
        version = ".".join(version.split(".")[:2])
        impl = str(env.get("implementation") or base.implementation)
        impl = _IMPL_ABBR.get(impl, impl)
        abi = env.get("abi") or None
        plat = env.get("wheels_platform") or env.get("platform")
        platforms = (str(plat),) if plat else base.platforms
        same = (version, impl) == (base.python_version, base.implementation) and (
            abi in (None, base.abi)
        )
        if same and not plat:
            return base
        return cls(
            python_version=version,
            implementation=impl,
            abi=str(abi) if abi else None,
            platforms=platforms,
        )

    @classmethod
    def _from_tags(cls, version: str, impl: str, tags: list[Tag], full: str | None) -> TargetEnv:
        abis = [t.abi for t in tags if t.abi not in ("none", "abi3")]
        platforms: list[str] = []
        for t in tags:
            if t.platform not in platforms and t.platform != "any":
                platforms.append(t.platform)
        return cls(
            python_version=version,
            implementation=impl,
            abi=abis[0] if abis else None,
            platforms=tuple(platforms),
            tags=frozenset(tags),
            full_version=full,
        )

    def supported_tags(self) -> frozenset[Tag]:
        """Every wheel tag an install for this target accepts."""
        if self.tags is not None:
            return self.tags
        major, minor = (int(x) for x in self.python_version.split(".")[:2])
        platforms = list(self.platforms) or None
        out: set[Tag] = set()
        if self.implementation == "cp":
            abis = [self.abi] if self.abi else None
            out.update(cpython_tags((major, minor), abis=abis, platforms=platforms))
        out.update(
            compatible_tags(
                (major, minor),
                interpreter=f"{self.implementation}{major}{minor}",
                platforms=platforms,
            )
        )
        return frozenset(out)

    def marker_environment(self) -> dict[str, str]:
        """The environment markers in requirements are evaluated against."""
        env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
        env["python_version"] = self.python_version
        env["python_full_version"] = self.full_version or f"{self.python_version}.0"
        env["implementation_name"] = {"cp": "cpython", "pp": "pypy"}.get(
            self.implementation, self.implementation
        )
        return env

    def describe(self) -> str:
        """A short human description ("cp3.11 cp311 manylinux_2_28_x86_64")."""
        plat = self.platforms[0] if self.platforms else "any"
        return f"{self.implementation}{self.python_version} {self.abi or '-'} {plat}"


def _parse_tag(text: str) -> Tag:
    interp, abi, plat = text.split("-")
    return Tag(interp, abi, plat)


def _run_probe(python: str, code: str, timeout_s: float) -> dict | None:
    try:
        proc = subprocess.run(
            [python, "-I", "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return None
    return out if isinstance(out, dict) else None


@dataclass(frozen=True)
class WheelFile:
    """A wheel file name, parsed."""

    filename: str
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]


def parse_wheels(wheel_names: Iterable[str]) -> tuple[list[WheelFile], list[Problem]]:
    """Parse wheel file names; names that are not wheels are problems (2004)."""
    wheels: list[WheelFile] = []
    problems: list[Problem] = []
    for fname in wheel_names:
        if not fname.endswith(".whl"):
            problems.append(
                Problem(f"wheels/{fname}", WHEELS_MISSING, "not a wheel (only .whl files belong)")
            )
            continue
        try:
            name, version, _build, tags = parse_wheel_filename(fname)
        except InvalidWheelFilename as exc:
            problems.append(Problem(f"wheels/{fname}", WHEELS_MISSING, f"bad wheel name: {exc}"))
            continue
        wheels.append(WheelFile(fname, name, version, frozenset(tags)))
    return wheels, problems


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join pip's backslash continuations; each logical line keeps its first line number."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if pending is not None:
            lineno, raw = pending[0], pending[1] + " " + raw.strip()
            pending = None
        if raw.rstrip().endswith("\\"):
            pending = (lineno, raw.rstrip()[:-1].rstrip())
            continue
        out.append((lineno, raw))
    if pending is not None:
        out.append(pending)
    return out


def parse_requirements(requirements_text: str) -> tuple[list[Requirement], list[Problem]]:
    """Parse an offline requirements.txt: plain requirements only (no options, URLs or files)."""
    reqs: list[Requirement] = []
    problems: list[Problem] = []
    for lineno, raw in _logical_lines(requirements_text):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        # `--hash=` pins a requirement to wheel digests; pip checks them at install, not here
        line = re.sub(r"\s+--hash(?:=|\s+)\S+", "", line).strip()
        where = f"requirements.txt:{lineno}"
        if line.startswith("-"):
            problems.append(
                Problem(where, WHEELS_MISSING, f"pip option {line.split()[0]!r} is not allowed")
            )
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            problems.append(Problem(where, WHEELS_MISSING, f"invalid requirement: {exc}"))
            continue
        if req.url:
            problems.append(
                Problem(where, WHEELS_MISSING, f"{req.name}: URL requirements are not allowed")
            )
            continue
        reqs.append(req)
    return reqs, problems


def check_requirements(
    requirements_text: str, wheel_names: Iterable[str], target: TargetEnv
) -> list[Problem]:
    """Check that every requirement resolves from the given wheels alone for `target`.

    2004: a requirement has no wheel of its name or of a matching version, a line uses pip
    options or URLs, or a wheel name is malformed. 2003: wheels of the right name and version
    exist but none is compatible with the target's Python, ABI or platform.
    """
    reqs, problems = parse_requirements(requirements_text)
    wheels, wheel_problems = parse_wheels(wheel_names)
    problems.extend(wheel_problems)
    supported = target.supported_tags()
    env = target.marker_environment()
    for req in reqs:
        where = f"requirements.txt:{req.name}"
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        named = [w for w in wheels if w.name == name]
        if not named:
            problems.append(Problem(where, WHEELS_MISSING, f"no wheel for {req.name} in wheels/"))
            continue
        matching = [w for w in named if req.specifier.contains(w.version, prereleases=True)]
        if not matching:
            have = ", ".join(sorted({str(w.version) for w in named}))
            problems.append(
                Problem(
                    where,
                    WHEELS_MISSING,
                    f"no wheel of {req.name} matches {req.specifier} (have {have})",
                )
            )
            continue
        if not any(w.tags & supported for w in matching):
            got = ", ".join(sorted(w.filename for w in matching))
            problems.append(
                Problem(
                    where,
                    INCOMPATIBLE_PYTHON,
                    f"{req.name}: no wheel for {target.describe()} (have {got})",
                )
            )
    return problems


def check_env_file(env: dict | None, target: TargetEnv) -> list[Problem]:
    """Compare a package's `.procvision_env.json` with the target interpreter (2003)."""
    if not env:
        return []
    problems: list[Problem] = []
    want = env.get("python_version")
    if want:
        want_mm = ".".join(str(want).split(".")[:2])
        if want_mm != target.python_version:
            problems.append(
                Problem(
                    ".procvision_env.json.python_version",
                    INCOMPATIBLE_PYTHON,
                    f"package built for Python {want}, target is {target.python_version}",
                )
            )
    impl = env.get("implementation")
    if impl:
        impl = _IMPL_ABBR.get(str(impl), str(impl))
        if impl != target.implementation:
            problems.append(
                Problem(
                    ".procvision_env.json.implementation",
                    INCOMPATIBLE_PYTHON,
                    f"package built for {impl}, target is {target.implementation}",
                )
            )
    return problems
