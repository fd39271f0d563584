"""The operator page in a real headless Chromium against a real `procvision-runner serve`.

Real zips installed into a real store, real workers, real HTTP; the browser is Debian's chromium
driven through chromedriver. `.ci/run` installs both and sets PROCVISION_REQUIRE_BROWSER=1, so
there the test fails instead of skipping when the browser is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from helpers.package_zips import EXAMPLE
from helpers.server import RunnerServer

if TYPE_CHECKING:
    from helpers.station import Stations

pytestmark = pytest.mark.slow

NAME = "algorithm-example"
IMAGES = EXAMPLE / "images"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser_or_skip() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if os.environ.get("PROCVISION_REQUIRE_BROWSER") == "1":
        pytest.fail("chromium and chromedriver are required (apt-get install chromium-driver)")
    pytest.skip("chromium/chromedriver are not installed (.ci/run installs them)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, stations: Stations) -> Iterator[RunnerServer]:
    _browser_or_skip()
    # the example's 1.0.0 (active on p001 and p002) and 1.0.1 installed: a copy of the run's
    # template store (installing over HTTP is tests/service/test_service_flow.py's part)
    store = stations.copy("1.0.0+1.0.1", tmp_path_factory.mktemp("page") / "store")
    with RunnerServer(store) as srv:
        srv.wait_ready(120)
        yield srv


@pytest.fixture(scope="module")
def browser(server: RunnerServer) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="pv-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy (deadline: a loaded box is slow)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the DOM is being re-rendered under us
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")


def inspect(url: str, image: str, step: int, session: str) -> dict[str, Any]:
    data = (IMAGES / image).read_bytes()
    with httpx.Client(base_url=url, timeout=120.0) as c:
        r = c.post(
            "/inspect",
            data={"pid": "p001", "step_index": str(step), "session_id": session},
            files={"image": (image, data, "image/png")},
        )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def leaving(urls: list[str], base: str) -> list[str]:
    """Network requests to anywhere but this Runner (the browser's own chrome:// pages aside)."""
    network = [u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp")]
    return [u for u in network if not u.startswith(base + "/")]


_CARD_JS = """
const c = document.querySelector(".live-card[data-pid='p001']");
if (!c) return null;
return {verdict: c.dataset.verdict, seq: c.dataset.seq,
        banner: c.querySelector('.banner').textContent,
        package: c.querySelector('.package').textContent,
        defects: c.querySelectorAll('svg rect.defect_rects').length,
        labels: Array.from(c.querySelectorAll('svg text')).map(t => t.textContent)};
"""


def card(driver: Any) -> dict[str, Any] | None:
    """The p001 card as one snapshot (read in one script: the page re-renders cards)."""
    shown: dict[str, Any] | None = driver.execute_script(_CARD_JS)
    return shown


def test_page_shows_live_results_archive_and_switches_from_the_page(
    server: RunnerServer, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    wait_for(lambda: "ready" in browser.find_element(By.ID, "ready").get_attribute("class"))

    # an NG inspection made outside the page appears on it with its verdict and its boxes
    out = inspect(server.url, "ng_missing_1.png", 2, "board-1")
    execute = out["execute"]
    assert execute["data"]["result_status"] == "NG"
    shown = wait_for(lambda: card(browser))
    assert shown["verdict"] == "NG"
    assert execute["data"]["ng_reason"] in shown["banner"]
    assert shown["defects"] == len(execute["data"]["defect_rects"])
    assert "algorithm-example 1.0.0" in shown["package"]
    assert any("missing_screw" in label for label in shown["labels"])

    # the NG archive lists the frame, on the page and through the API
    archived = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#archive li[data-verdict='NG']")
    )
    entry_id = archived[0].get_attribute("data-id")
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        listed = c.get("/results").json()
        assert [e["id"] for e in listed][:1] == [entry_id]
        record = c.get(f"/results/{entry_id}").json()
        assert record["verdict"] == "NG" and record["pid"] == "p001"
        image = c.get(f"/results/{entry_id}/image")
        assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.get("/results/0000000000000-000000").status_code == 404
        metrics = c.get("/metrics").text
    assert 'result_status="NG"' in metrics and "procvision_verdicts_total" in metrics
    assert "_created" not in metrics

    # a switch done through the page (with its confirmation) moves the pid
    row = browser.find_element(By.CSS_SELECTOR, "#installed tr[data-version='1.0.1']")
    row.find_element(By.CSS_SELECTOR, "input.pids").send_keys("p001")
    row.find_element(By.CSS_SELECTOR, "button[data-action='switch']").click()
    wait_for(lambda: browser.switch_to.alert).accept()
    wait_for(
        lambda: (
            "1.0.1"
            in browser.find_element(By.CSS_SELECTOR, "#routes tr[data-pid='p001'] .package").text
        ),
        timeout_s=120,
    )
    before = shown["seq"]
    inspect(server.url, "ok_01.png", 1, "board-2")
    after = wait_for(lambda: (c := card(browser)) and c["seq"] != before and c)
    assert "algorithm-example 1.0.1" in after["package"]
    assert after["verdict"] == "OK"

    # nothing the page loaded came from anywhere but this Runner
    urls = requested_urls(browser)
    assert urls, "the performance log recorded no request"
    assert any(u.startswith(server.url + "/page/events") for u in urls)
    assert leaving(urls, server.url) == []


def test_api_docs_are_served_offline(server: RunnerServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get_log("performance")  # drop what the other test left
    browser.get(server.url + "/docs")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
    browser.get(server.url + "/redoc")
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "redoc [role='navigation'], .menu-content")
    )
    urls = requested_urls(browser)
    assert any(u.endswith("/static/docs/swagger-ui-bundle.js") for u in urls)
    assert leaving(urls, server.url) == []
