"""Normalising a project's requirements.txt for an offline package (no network at install)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from procvision_algorithm_sdk.errors import WHEELS_MISSING

from ._common import CliError

SDK_PROJECT = "procvision-algorithm-sdk"

_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
# Options that only say where pip looks; the offline install never looks anywhere but wheels/.
_DROPPED_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "-f",
    "--find-links",
    "--trusted-host",
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
)


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One normalised requirement line: `spec` plus its `--hash=` options."""

    name: str
    spec: str
    hashes: tuple[str, ...] = ()

    def line(self) -> str:
        """The requirement as one requirements.txt line."""
        return " ".join([self.spec, *(f"--hash={h}" for h in self.hashes)])


@dataclass
class Requirements:
    """The normalised requirements and what was dropped on the way."""

    items: list[Requirement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def hash_mode(self) -> bool:
        """True when any requirement pins hashes (pip then needs hashes for all)."""
        return any(r.hashes for r in self.items)

    def names(self) -> set[str]:
        """Canonical names of every requirement."""
        return {r.name for r in self.items}


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations and drop comments; return (first line number, text)."""
    out: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "" if raw.lstrip().startswith("#") else re.split(r"\s+#", raw, maxsplit=1)[0]
        if not buffer:
            start = number
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            out.append((start, " ".join(buffer.split())))
        buffer = ""
    if buffer.strip():
        out.append((start, " ".join(buffer.split())))
    return out


def normalise(text: str, source: str = "requirements.txt") -> Requirements:
    """Parse requirements text; CliError 2004 for lines an offline install cannot honour."""
    result = Requirements()
    for number, line in _logical_lines(text):
        where = f"{source}:{number}"
        lowered = line.lower()
        head = line.split()[0]
        option = head.split("=", 1)[0]
        if option in ("-e", "--editable"):
            raise CliError(
                WHEELS_MISSING,
                f"{where}: editable requirement {line!r} cannot go into an offline package; "
                "build it as a wheel and require it by name",
            )
        if "file:" in lowered:
            raise CliError(
                WHEELS_MISSING,
                f"{where}: local file requirement {line!r} cannot go into an offline package; "
                "require the project by name and version",
            )
        if option in ("-r", "--requirement", "-c", "--constraint"):
            raise CliError(
                WHEELS_MISSING,
                f"{where}: nested requirement files ({head}) are not supported; list the "
                "requirements directly",
            )
        if option in _DROPPED_OPTIONS:
            result.notes.append(f"{where}: dropped {head} (the offline install uses wheels/ only)")
            continue
        if line.startswith("-"):
            raise CliError(WHEELS_MISSING, f"{where}: unsupported pip option {head!r}")
        if line.startswith((".", "/", "~")) or "://" in line or re.search(r"\s@\s|^\S+@", line):
            raise CliError(
                WHEELS_MISSING,
                f"{where}: URL or path requirement {line!r} cannot go into an offline package",
            )
        match = _NAME.match(line)
        if not match:
            raise CliError(WHEELS_MISSING, f"{where}: not a requirement: {line!r}")
        tokens = line.split(" ")
        spec_tokens: list[str] = []
        hashes: list[str] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.startswith("--hash="):
                hashes.append(token.split("=", 1)[1])
            elif token == "--hash" and index + 1 < len(tokens):
                index += 1
                hashes.append(tokens[index])
            elif token.startswith("-"):
                result.notes.append(f"{where}: dropped the option {token!r}")
            else:
                spec_tokens.append(token)
            index += 1
        name = canonical(match.group(1))
        if name in result.names():
            raise CliError(WHEELS_MISSING, f"{where}: {match.group(1)} is listed twice")
        result.items.append(Requirement(name, " ".join(spec_tokens), tuple(hashes)))
    return result


def replaced_sdk_pins(reqs: Requirements, ours: str) -> list[str]:
    """A pin on another SDK version (the original 0.0.x/0.3.x) stays visible as a note."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Parsed

    notes = []
    for req in reqs.items:
        if req.name != canonical(SDK_PROJECT):
            continue
        try:
            wanted = Parsed(req.spec).specifier
        except InvalidRequirement:
            continue
        if wanted and not wanted.contains(ours, prereleases=True):
            notes.append(
                f"requirements pin {req.spec} (the original SDK); the package ships "
                f"{SDK_PROJECT}=={ours} in its place (its API is a superset)"
            )
    return notes
