"""Config files: one reader (JSON or TOML) shared by the Runner, the store CLI and the service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from procvision_runner.cli import configs_from, load_config
from procvision_runner.config import ConfigFileError, RunnerConfig, read_config_file
from procvision_runner.config import load_config as load_config_document
from procvision_runner.service import ServiceConfig
from procvision_runner.store import StoreError

TOML = """
[runner]
execute_timeout_ms = 1234
workers_per_package = 2

[store]
keep_versions = 5

[service]
port = 9911
"""


def test_one_toml_document_configures_every_part(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(TOML, encoding="utf-8")
    assert read_config_file(path)["runner"]["execute_timeout_ms"] == 1234
    runner_cfg = RunnerConfig.from_file(path)
    assert (runner_cfg.execute_timeout_ms, runner_cfg.workers_per_package) == (1234, 2)
    from_cli, store_cfg = load_config(path)
    assert from_cli is not None and from_cli.execute_timeout_ms == 1234
    assert store_cfg.keep_versions == 5
    assert ServiceConfig.load(path, environ={}).port == 9911


def test_json_without_tables_is_a_runner_config(tmp_path: Path) -> None:
    path = tmp_path / "runner.json"
    path.write_text('{"execute_timeout_ms": 777}', encoding="utf-8")
    assert RunnerConfig.from_file(path).execute_timeout_ms == 777


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("bad.json", "{not json", "does not parse"),
        ("bad.toml", "[runner\nx=", "does not parse"),
        ("list.json", "[1, 2]", "must be an object/table"),
        ("latin1.json", None, "cannot read config"),
        ("missing.json", "", "cannot read config"),
    ],
)
def test_unusable_files_are_1006(tmp_path: Path, name: str, text: str | None, words: str) -> None:
    path = tmp_path / name
    if text is None:
        path.write_bytes(b'{"k": "\xff"}')
    elif name != "missing.json":
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigFileError, match=words) as caught:
        read_config_file(path)
    assert caught.value.error_code == "1006"
    with pytest.raises(StoreError, match=words) as refused:
        load_config(path)
    assert refused.value.error_code == "1006"


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        (
            "[runner]\nexecute_timout_ms = 5\n",
            "RunnerError",
            "'execute_timout_ms' (did you mean 'execute_timeout_ms'?)",
        ),
        (
            "[store]\nkeep_version = 2\n",
            "StoreError",
            "'keep_version' (did you mean 'keep_versions'?)",
        ),
        (
            "[store.limits]\nmax_entrys = 9\n",
            "StoreError",
            "'max_entrys' (did you mean 'max_entries'?)",
        ),
        ("[service]\nprot = 1\n", "ValueError", "'prot' (did you mean 'port'?)"),
        ("[servce]\nport = 1\n", "StoreError", "'servce' (did you mean 'service'?)"),
        ("[runner]\nzzz = 1\n", "RunnerError", "unknown runner config key: 'zzz'"),
    ],
)
def test_a_typo_in_any_table_is_refused_by_name(
    tmp_path: Path, text: str, error: str, words: str
) -> None:
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(Exception) as caught:
        load_config(path)
        ServiceConfig.load(path, environ={})
    assert type(caught.value).__name__ == error
    assert words in str(caught.value)
    assert getattr(caught.value, "error_code", "1006") == "1006"


def test_the_file_is_read_once_into_every_table(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(TOML + "\n[store.limits]\nmax_entries = 77\n", encoding="utf-8")
    doc = load_config_document(path)
    assert (doc.runner, doc.service) == (
        {"execute_timeout_ms": 1234, "workers_per_package": 2},
        {"port": 9911},
    )
    path.unlink()  # everything below works on the document alone
    runner_cfg, store_cfg = configs_from(doc)
    assert runner_cfg is not None and runner_cfg.workers_per_package == 2
    assert (store_cfg.keep_versions, store_cfg.limits.max_entries) == (5, 77)
    assert ServiceConfig.from_document(doc, environ={"PROCVISION_TOKEN": "t"}).token == "t"


@pytest.mark.slow
def test_serve_refuses_a_typo_in_the_service_table_with_an_error_line(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text("[service]\nprot = 8766\n", encoding="utf-8")
    args = ["--store", str(tmp_path / "store"), "--config", str(path), "serve"]
    proc = subprocess.run(
        [sys.executable, "-m", "procvision_runner.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error 1006: unknown service config key: 'prot'"), proc.stderr
    assert "did you mean 'port'?" in proc.stderr and "Traceback" not in proc.stderr
