"""Issue 16 item 13: `serve` writes one structured log: JSON lines of one schema, to stderr or to
a rotating file (`[service] log_file` or `--log-file`), access lines included."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers.server import RUNNER_CLI, RunnerServer

SCHEMA = ("time", "level", "logger", "message")
ACCESS = ("method", "path", "status", "duration_ms")


class LogFileServer(RunnerServer):
    """The server with `--log-file FILE` on its command line."""

    def __init__(self, store: Path, log_file: Path, **kw: object) -> None:
        super().__init__(store, **kw)  # type: ignore[arg-type]
        self.log_file = log_file

    def command(self) -> list[str]:
        """`serve ... --log-file FILE`."""
        return [*super().command(), "--log-file", str(self.log_file)]


def records(text: str) -> list[dict]:
    """Every line of a log as JSON, checked against the schema."""
    out = []
    for line in text.splitlines():
        record = json.loads(line)  # every line is JSON
        assert all(key in record for key in SCHEMA), record
        assert record["level"] in ("debug", "info", "warning", "error"), record
        assert record["time"].endswith("+00:00"), record
        out.append(record)
    return out


def access_lines(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["logger"] == "procvision_runner.access"]


@pytest.mark.slow
def test_serve_logs_json_lines_to_a_file_and_rotates_it(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "runner.log"
    config = {"service": {"log_file": str(log_file), "log_max_bytes": 4000, "log_backup_count": 2}}
    with (
        RunnerServer(tmp_path / "store", config=config) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        for i in range(60):
            assert http.get("/healthz").status_code == 200
            assert http.get(f"/algorithms/nope/{i}.0").status_code == 404
        out = server.log()
    files = [log_file, log_file.with_name("runner.log.1"), log_file.with_name("runner.log.2")]
    assert all(f.exists() for f in files), sorted(p.name for p in log_file.parent.iterdir())
    assert not log_file.with_name("runner.log.3").exists()  # backup_count bounds the files
    assert all(f.stat().st_size <= 4000 for f in files)
    recs = [r for f in reversed(files) for r in records(f.read_text(encoding="utf-8"))]
    hits = access_lines(recs)
    assert hits and all(all(k in r for k in ACCESS) for r in hits), hits[:3]
    miss = [r for r in hits if r["status"] == 404]
    assert miss and miss[-1]["method"] == "GET" and miss[-1]["path"] == "/algorithms/nope/59.0"
    assert all(isinstance(r["duration_ms"], (int, float)) and r["duration_ms"] >= 0 for r in hits)
    # uvicorn's text access lines (on stdout until now) are gone
    assert "GET /healthz HTTP/1.1" not in out, out[-2000:]


@pytest.mark.slow
def test_log_file_flag_and_stderr_by_default(tmp_path: Path) -> None:
    log_file = tmp_path / "flag.log"
    with (
        LogFileServer(tmp_path / "store", log_file) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert http.get("/healthz").status_code == 200
    recs = records(log_file.read_text(encoding="utf-8"))
    assert "/healthz" in {r["path"] for r in access_lines(recs)}, recs
    assert any(r["message"] == "serving" for r in recs)  # the banner's facts, as a record
    assert any(r["logger"] == "uvicorn.error" for r in recs)

    with (
        RunnerServer(tmp_path / "store2") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        assert http.get("/healthz").status_code == 200
    lines = server.log().splitlines()
    banner = [x for x in lines if x.startswith(("procvision-runner ", "  "))]
    assert banner, lines  # the banner stays text for the person who started the server
    recs = records("\n".join(x for x in lines if x not in banner))
    assert "/healthz" in {r["path"] for r in access_lines(recs)}, recs


@pytest.mark.slow
def test_a_log_file_that_cannot_be_opened_is_a_coded_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    serve = ["serve", "--port", "0", "--log-file", str(blocker / "runner.log")]
    r = subprocess.run(
        [*RUNNER_CLI, "--store", str(tmp_path / "store"), *serve],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("error 1006: log file: "), r.stderr
