"""Config files: one reader (JSON or TOML) shared by the Runner, the store CLI and the service."""

from __future__ import annotations

from pathlib import Path

import pytest

from procvision_runner.cli import load_config
from procvision_runner.config import ConfigFileError, RunnerConfig, read_config_file
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
