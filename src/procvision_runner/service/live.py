"""The operator page's live feed: recent results with thumbnails, verdict counts, the NG archive.

A call's route hands its answer (and the frame it decoded) to `LiveFeed.publish`, which only puts
a reference on a bounded queue: thumbnails, the archive's PNG and JSON are made by one background
thread, never on the call's path. When the queue is full the result is dropped from the page (and
counted), never waited for. A result with nothing to render while no page looks is only noted:
waking the render thread costs the call a thread wake-up (about 0.2 ms on a 2-vCPU station),
so that thread takes such results at its next wake (within 0.5 s, or when a page looks).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..archive import ResultArchive
from ..results import CallRecord

__all__ = ["LiveFeed", "VerdictCounts", "step_verdict"]

log = logging.getLogger("procvision_runner.service.live")

THUMB_WIDTH = 320
_RECT_KEYS = ("defect_rects", "position_rects", "calibration_rects")
_WATCH_S = 30.0  # a page that polled within this is "watching": thumbnails are made for it
_HOUR_S = 3600
_DRAIN = "drain"  # on the render queue: render the noted results now


def step_verdict(answer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """("OK" | "NG" | "ERROR", the deciding phase's result) of a step's or one phase's answer."""
    if "pre_execute" in answer or "execute" in answer:
        final = answer.get("execute") or answer.get("pre_execute") or {}
    else:
        final = answer
    if final.get("status") != "OK":
        return "ERROR", final
    raw_data = final.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    status = data.get("result_status")
    return (status if status in ("OK", "NG") else "OK"), final


@dataclass
class _Pending:
    pid: str
    step_index: int
    session_id: str | None
    answer: dict[str, Any]
    frame: np.ndarray | None
    finished_ms: int
    archive_it: bool
    order: int = 0  # publication order, so noted results are rendered before later queued ones


class VerdictCounts:
    """OK / NG / ERROR per pid and package version, since start and over the last hour."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: Counter[tuple[str, str, str, str]] = Counter()
        self._minutes: deque[tuple[int, Counter[tuple[str, str, str, str]]]] = deque()
        self._errors: Counter[str] = Counter()
        self.started = time.time()

    def observe(self, record: CallRecord) -> None:
        """Count one answered phase: executes by verdict, failed phases as errors."""
        if record.status == "OK" and record.phase != "execute":
            return
        if record.status == "OK":
            verdict = record.result_status if record.result_status in ("OK", "NG") else "OK"
        else:
            verdict = "ERROR"
        key = (record.pid, record.name or "", record.version or "", verdict)
        minute = int(time.time() // 60)
        with self._lock:
            self._total[key] += 1
            if not self._minutes or self._minutes[-1][0] != minute:
                self._minutes.append((minute, Counter()))
                while self._minutes and self._minutes[0][0] <= minute - _HOUR_S // 60:
                    self._minutes.popleft()
            self._minutes[-1][1][key] += 1
            if verdict == "ERROR":
                self._errors[record.error_code or "unknown"] += 1

    def snapshot(self) -> dict[str, Any]:
        """Rows per (pid, name, version) with since-start and last-hour counts, errors by code."""
        horizon = int(time.time() // 60) - _HOUR_S // 60
        with self._lock:
            total = Counter(self._total)
            hour: Counter[tuple[str, str, str, str]] = Counter()
            for minute, counts in self._minutes:
                if minute > horizon:
                    hour.update(counts)
            errors = dict(self._errors)
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        for source, suffix in ((total, ""), (hour, "_hour")):
            for (pid, name, version, verdict), n in source.items():
                row = rows.setdefault(
                    (pid, name, version),
                    {"pid": pid, "name": name, "version": version}
                    | {f"{v}{s}": 0 for v in ("ok", "ng", "error") for s in ("", "_hour")},
                )
                row[f"{verdict.lower()}{suffix}"] += n
        for row in rows.values():
            for s in ("", "_hour"):
                judged = row[f"ok{s}"] + row[f"ng{s}"]
                row[f"ng_rate{s}"] = round(row[f"ng{s}"] / judged, 4) if judged else None
        ordered = [rows[k] for k in sorted(rows)]
        return {"since": self.started, "rows": ordered, "errors_by_code": errors}


def _thumbnail(frame: np.ndarray) -> tuple[bytes, int, int]:
    """A JPEG of at most THUMB_WIDTH pixels across, and its size."""
    from PIL import Image

    step = max(1, frame.shape[1] // (THUMB_WIDTH * 2))
    small = frame[::step, ::step]
    image = Image.fromarray(np.ascontiguousarray(small if small.ndim == 3 else small.squeeze()))
    image.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4))
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=80)
    return out.getvalue(), image.width, image.height


class LiveFeed:
    """Recent results for the page (newest last) and the one thread that renders them."""

    def __init__(self, archive: ResultArchive | None, recent: int = 100, backlog: int = 16) -> None:
        self.archive = archive
        self.counts = VerdictCounts()
        self.dropped = 0
        self._queue: queue.Queue[_Pending | str | None] = queue.Queue(maxsize=backlog)
        self._noted: deque[_Pending] = deque(maxlen=recent)  # frameless, published unwatched
        self._order = itertools.count(1)
        self._events: deque[dict[str, Any]] = deque(maxlen=recent)
        self._thumbs: dict[int, bytes] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._last_watch = 0.0
        self._closed = False
        self._thread = threading.Thread(
            target=self._render_loop, name="procvision-live", daemon=True
        )
        self._thread.start()

    # -- the call's side: O(1), never blocks

    def observe(self, record: CallRecord) -> None:
        """The Runner's call observer: count verdicts."""
        self.counts.observe(record)

    def watched(self) -> bool:
        """Whether a page looked recently (thumbnails are made only then, or for the archive)."""
        return time.monotonic() - self._last_watch < _WATCH_S

    def touch(self) -> None:
        """A page is looking (results noted while nobody looked are rendered now)."""
        self._last_watch = time.monotonic()
        if self._noted:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_DRAIN)

    def publish(
        self,
        pid: str,
        step_index: int,
        session_id: str | None,
        answer: dict[str, Any],
        frame: np.ndarray | None,
    ) -> None:
        """Queue one answered inspection; `frame` must not change afterwards (or be None)."""
        if self._closed:
            return
        archive_it = (
            frame is not None
            and self.archive is not None
            and self.archive.wants(step_verdict(answer)[0])
        )
        watching = self.watched()
        keep_frame = archive_it or (frame is not None and watching)
        pending = _Pending(
            pid,
            step_index,
            session_id,
            answer,
            frame if keep_frame else None,
            _now_ms(),
            archive_it,
            next(self._order),
        )
        if not keep_frame and not watching:
            self._noted.append(pending)  # no wake-up: see the module's docstring
            return
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            self.dropped += 1

    # -- the page's side

    def since(self, seq: int) -> list[dict[str, Any]]:
        """Events newer than `seq` (oldest first)."""
        with self._lock:
            return [e for e in self._events if e["seq"] > seq]

    def wait(self, seq: int, timeout_s: float) -> list[dict[str, Any]]:
        """Events newer than `seq`, waiting up to `timeout_s` for one."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not self._closed:
                events = [e for e in self._events if e["seq"] > seq]
                left = deadline - time.monotonic()
                if events or left <= 0:
                    return events
                self._changed.wait(left)
        return []

    def thumbnail(self, seq: int) -> bytes | None:
        """The JPEG thumbnail of a recent event."""
        with self._lock:
            return self._thumbs.get(seq)

    @property
    def closed(self) -> bool:
        """Whether close() ran."""
        return self._closed

    def close(self) -> None:
        """Stop the render thread (pending results are dropped)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(5.0)

    # -- the render thread

    def _render_loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._closed:
                    return
                self._render_noted(None)
                continue
            if item is None or self._closed:
                return
            if isinstance(item, str):  # _DRAIN: a page looks
                self._render_noted(None)
                continue
            self._render_noted(item.order)
            self._render_safely(item)

    def _render_noted(self, before: int | None) -> None:
        """Render the noted results published before `before` (all when None), oldest first."""
        while self._noted and (before is None or self._noted[0].order < before):
            self._render_safely(self._noted.popleft())

    def _render_safely(self, item: _Pending) -> None:
        try:
            self._render(item)
        except Exception:
            log.exception("rendering a live result failed")

    def _render(self, item: _Pending) -> None:
        verdict, final = step_verdict(item.answer)
        event = _event(item, verdict, final)
        thumb: bytes | None = None
        if item.frame is not None:
            thumb, event["thumb_width"], event["thumb_height"] = _thumbnail(item.frame)
            event["height"], event["width"] = int(item.frame.shape[0]), int(item.frame.shape[1])
            if item.archive_it and self.archive is not None:
                event["archive_id"] = self.archive.add(dict(event), item.frame, thumb)
        with self._changed:
            event["seq"] = next(self._seq)
            self._events.append(event)
            if thumb is not None:
                self._thumbs[event["seq"]] = thumb
            live = {e["seq"] for e in self._events}
            for old in [s for s in self._thumbs if s not in live]:
                del self._thumbs[old]
            self._changed.notify_all()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _event(item: _Pending, verdict: str, final: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one inspection."""
    phases = [p for p in (item.answer.get("pre_execute"), item.answer.get("execute")) if p] or [
        item.answer
    ]
    raw_data = final.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    rects: dict[str, list[Any]] = {}
    for phase in phases:
        pdata = phase.get("data") if isinstance(phase.get("data"), dict) else {}
        for key in _RECT_KEYS:
            if isinstance(pdata.get(key), list):
                rects[key] = [r for r in pdata[key] if isinstance(r, dict)]
    timings = {"queue_ms": 0.0, "transfer_ms": 0.0, "algorithm_ms": 0.0, "total_ms": 0.0}
    for phase in phases:
        for key in timings:
            value = (phase.get("timings") or {}).get(key)
            if isinstance(value, (int, float)):
                timings[key] = round(timings[key] + float(value), 3)
    package = final.get("package") if isinstance(final.get("package"), dict) else None
    return {
        "time_ms": item.finished_ms,
        "pid": item.pid,
        "step_index": item.step_index,
        "session_id": item.session_id,
        "package": package,
        "verdict": verdict,
        "ng_reason": data.get("ng_reason") if verdict == "NG" else None,
        "message": final.get("message") or "",
        "error_code": final.get("error_code"),
        "rects": rects,
        "timings": timings,
        "width": None,
        "height": None,
    }
