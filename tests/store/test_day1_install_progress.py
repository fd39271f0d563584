"""Issue 16 item 10: `procvision-runner install` says what it does, step by step, on stderr.

Not a TTY here (captured pipes): the lines must come anyway, and `--json` on stdout must stay one
parseable document. A server that owns the store runs the install as a job and the CLI prints the
server's steps the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.package_zips import make_package_zip
from helpers.server import RunnerServer
from helpers.station import cli

pytestmark = pytest.mark.slow

LINE = re.compile(r"^\[ *\d+\.\d+s\] (\w+): (.+)$")
PHASES = ["check", "unpack", "venv", "smoke", "register", "done"]


def progress_phases(stderr: str) -> list[str]:
    """The phases of the progress lines, in order, one entry per change of phase."""
    phases: list[str] = []
    for line in stderr.splitlines():
        m = LINE.match(line)
        if m and (not phases or phases[-1] != m.group(1)):
            phases.append(m.group(1))
    return phases


def test_install_prints_each_step_on_stderr_and_json_on_stdout(tmp_path: Path) -> None:
    zip_path = make_package_zip(tmp_path / "pkg.zip")
    r = cli(tmp_path / "store", "install", "--json", str(zip_path))
    assert r.returncode == 0, r.stderr
    entry = json.loads(r.stdout)  # nothing but the entry on stdout
    assert (entry["name"], entry["version"]) == ("algorithm-example", "1.0.0")
    assert progress_phases(r.stderr) == PHASES, r.stderr
    assert "installing requirements.txt from wheels/ (3 wheels)" in r.stderr
    assert "installed algorithm-example 1.0.0 (supported pids: p001, p002)" in r.stderr


def test_a_refused_install_shows_the_step_it_stopped_at(tmp_path: Path) -> None:
    zip_path = make_package_zip(tmp_path / "pkg.zip", omit=["manifest.json"])
    r = cli(tmp_path / "store", "install", str(zip_path))
    assert r.returncode == 1
    assert progress_phases(r.stderr) == ["check"], r.stderr
    assert r.stderr.splitlines()[-1].startswith("error 2002: "), r.stderr
    assert r.stdout == ""


def test_install_through_the_owning_server_prints_the_servers_steps(tmp_path: Path) -> None:
    zip_path = make_package_zip(tmp_path / "pkg.zip")
    store = tmp_path / "store"
    with RunnerServer(store):
        r = cli(store, "install", str(zip_path))
    assert r.returncode == 0, r.stderr
    assert progress_phases(r.stderr) == ["queued", *PHASES], r.stderr
    assert r.stdout.startswith("installed algorithm-example 1.0.0"), r.stdout
