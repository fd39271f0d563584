"""The session idle TTL, directly on SessionStore and through a Runner's supervisor.

No clock is injectable, so the TTLs are short and every wait polls with a deadline; nothing
asserts that a session is still present after some time has passed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers.runner_kit import FAULTY, FRAME, Tracked, ok, wait_for

from procvision_runner.sessions import SessionStore


def test_the_sweep_drops_an_idle_session_with_its_state_and_logs() -> None:
    store = SessionStore(ttl_s=0.2, log_lines=4)
    store.touch("s", {"line": "A"})
    version = store.apply("s", {"set": {"count": 3}})
    assert version is not None
    store.add_log("s", {"message": "kept with the session"})

    swept: list[str] = []
    assert wait_for(lambda: swept.extend(store.expire()) or swept == ["s"], 10)
    assert len(store) == 0 and store.get("s") is None
    assert store.logs("s") == [] and store.recent(10) == []
    assert store.snapshot("s") == ({}, 0)

    again = store.touch("s", {"line": "B"})  # the same id starts a new run
    state, new_version = store.snapshot("s")
    assert state == {} and new_version > version and again.context == {"line": "B"}


def test_get_forgets_an_expired_session_before_any_sweep() -> None:
    store = SessionStore(ttl_s=0.05, log_lines=4)
    store.touch("s", None)
    assert wait_for(lambda: store.get("s") is None, 10)
    assert len(store) == 0  # get() removed it; expire() has nothing left to do
    assert store.expire() == []
    assert store.restore("s", None, {"carried": 1}) is True  # adopted as a new session


@pytest.mark.slow
def test_the_runner_supervisor_expires_idle_sessions(make_runner: Callable[..., Tracked]) -> None:
    tracked = make_runner(session_ttl_s=0.3)
    runner = tracked.runner
    runner.load(FAULTY)
    out = runner.run_step(
        "f1", 1, FRAME, user_params={"mode": "remember", "tag": "kept"}, session_id="idle"
    )
    ok(out["execute"])
    # Nobody asks for the session: only the supervisor's sweep can make the count drop.
    assert wait_for(lambda: runner.stats()["sessions"] == 0, 20)
    assert runner.recent_sessions() == [] and runner.session_state("idle") is None
    again = runner.run_step("f1", 2, FRAME, session_id="idle")
    assert ok(again["execute"])["data"]["recalled"] is None  # the worker got no old state
