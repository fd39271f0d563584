"""The operator page's live feed (service/live.py) with its real render thread and archive."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from procvision_runner.archive import ResultArchive
from procvision_runner.service.live import LiveFeed

DEADLINE_S = 30.0


def _answer(verdict: str) -> dict[str, Any]:
    execute = {"status": "OK", "data": {"result_status": verdict}, "timings": {"total_ms": 1.0}}
    return {"pre_execute": {"status": "OK", "data": {}}, "execute": execute}


def _events(feed: LiveFeed, count: int) -> list[dict[str, Any]]:
    """The feed's events once `count` are there, as a page sees them (it looks first)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        feed.touch()
        events = feed.wait(0, 0.5)
        if len(events) >= count:
            return events
        assert time.monotonic() < deadline, f"{len(events)} of {count} events: {events}"


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[LiveFeed]:
    made = LiveFeed(ResultArchive(tmp_path / "archive"))
    try:
        yield made
    finally:
        made.close()


def test_results_published_while_no_page_looks_reach_the_page_in_order(feed: LiveFeed) -> None:
    assert not feed.watched()
    for step in range(1, 6):  # frameless (a leased frame): nothing to render, nobody looks
        feed.publish("p001", step, "s1", _answer("OK"), None)
    events = _events(feed, 5)
    assert [e["step_index"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert {e["verdict"] for e in events} == {"OK"}
    assert all("thumb_width" not in e for e in events)


def test_a_queued_result_comes_after_the_noted_ones_published_before_it(
    feed: LiveFeed, tmp_path: Path
) -> None:
    frame = np.full((48, 64, 3), 200, np.uint8)
    feed.publish("p001", 1, None, _answer("OK"), None)
    feed.publish("p001", 2, None, _answer("OK"), frame)  # OK, unwatched: its frame is not kept
    # NG with a frame goes to the archive: queued for the render thread at once
    feed.publish("p001", 3, None, _answer("NG"), frame)
    events = _events(feed, 3)
    assert [(e["step_index"], e["verdict"]) for e in events] == [(1, "OK"), (2, "OK"), (3, "NG")]
    assert "archive_id" in events[2] and "thumb_width" in events[2]
    assert (tmp_path / "archive" / events[2]["archive_id"]).is_dir()
    assert all("archive_id" not in e and "thumb_width" not in e for e in events[:2])


def test_while_a_page_looks_frames_get_thumbnails_at_once(feed: LiveFeed) -> None:
    feed.touch()
    assert feed.watched()
    feed.publish("p002", 1, None, _answer("OK"), np.zeros((40, 60, 3), np.uint8))
    (event,) = feed.wait(0, DEADLINE_S)
    assert event["pid"] == "p002" and event["verdict"] == "OK"
    assert (event["thumb_width"], event["thumb_height"]) == (60, 40)
    thumb = feed.thumbnail(event["seq"])
    assert thumb is not None and thumb[:2] == b"\xff\xd8"  # a JPEG
