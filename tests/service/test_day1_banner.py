"""Issue 16 item 13 (part): `serve` prints a banner naming its URL, docs, store and packages."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.server import RunnerServer

from procvision_algorithm_sdk._version import __version__


@pytest.mark.slow
def test_serve_prints_a_banner(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with RunnerServer(store) as server:
        log = server.log()
    assert f"procvision-runner {__version__} serving {server.url}" in log, log
    assert f"OpenAPI: {server.url}/docs" in log
    assert f"store: {store}" in log
    assert "packages: none installed" in log
