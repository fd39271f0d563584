"""The lease lane: a urlencoded `POST /inspect` naming a lease, answered outside FastAPI's stack.

The same request as multipart goes through the framework's route; both must answer alike, and
the lane's answers must be guarded (token), counted and checked against the document like
every other. A real uvicorn server, a Runner with real workers, real shared memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from helpers.station_server import ALGOS, StationServer

from procvision_algorithm_sdk import segment as seg

TOKEN = "lane-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StationServer]:
    root = tmp_path_factory.mktemp("lane")
    with StationServer(root, [ALGOS / "marker"], service={"token": TOKEN}) as srv:
        yield srv


def marked(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A grey frame with a pure red box (x, y, w, h): what the marker algorithm finds."""
    frame = np.full((height, width, 3), 90, np.uint8)
    x, y, w, h = box
    frame[y : y + h, x : x + w] = (255, 0, 0)
    return frame


def leased(http: httpx.Client, who: str, frame: np.ndarray) -> dict:
    """A lease of the frame's geometry with the frame written and committed as seq 1."""
    h, w, c = frame.shape
    r = http.post(
        "/frames",
        json={"height": h, "width": w, "channels": c},
        headers={"X-ProcVision-Client": who},
    )
    assert r.status_code == 200, r.text
    d = r.json()
    shm = seg.attach_segment(d["segment"])
    try:
        view = seg.payload_array(shm.buf, frame.shape)
        np.copyto(view, frame)
        del view
        seg.set_sequence(shm.buf, 1)
    finally:
        seg.close_quietly(shm)
    return d


def post(
    http: httpx.Client, encoding: str, fields: dict[str, str], who: str | None
) -> httpx.Response:
    """POST /inspect with `fields` urlencoded (the lane) or as multipart (the framework's route)."""
    headers = {} if who is None else {"X-ProcVision-Client": who}
    if encoding == "form":
        return http.post("/inspect", data=fields, headers=headers)
    parts = [(k, (None, v)) for k, v in fields.items()]
    return http.post("/inspect", files=parts, headers=headers)


def outcome(r: httpx.Response) -> tuple[int, object]:
    """What must match between the encodings: the status and the error code or the verdicts."""
    body = r.json()
    if r.status_code != 200:
        return r.status_code, body["error_code"]
    phases = [body] if "status" in body else [body["pre_execute"], body["execute"]]
    return 200, [summary(p) for p in phases]


def summary(result: dict | None) -> tuple[object, ...] | None:
    """A phase's status, code, verdict and rects (None for a phase that did not run)."""
    if result is None:
        return None
    data = result["data"]
    return (
        result["status"],
        result.get("error_code"),
        data.get("result_status"),
        data.get("defect_rects"),
    )


@pytest.mark.slow
def lease_cases(lease_id: str) -> dict[str, tuple[dict[str, str], str | None]]:
    """Lease forms by name, each with the client id that sends it (None: no header)."""
    base = {"pid": "m1", "step_index": "1", "frame": lease_id}
    return {
        "ok": (base, "cam-a"),
        "ok with seq, geometry and a session": (
            {**base, "frame_seq": "1", "width": "64", "height": "48", "session_id": "b-1"},
            "cam-a",
        ),
        "forged lease": ({**base, "frame": "fl_" + "q" * 20}, "cam-a"),
        "bad lease id": ({**base, "frame": "../../dev/shm/x"}, "cam-a"),
        "another client's lease": (base, "cam-b"),
        "no client header": (base, None),
        "wrong geometry": ({**base, "width": "65"}, "cam-a"),
        "stale sequence number": ({**base, "frame_seq": "9"}, "cam-a"),
        "bad pid": ({**base, "pid": "p 1"}, "cam-a"),
        "no step": ({"pid": "m1", "frame": lease_id}, "cam-a"),
        "unknown pid": ({**base, "pid": "zz9"}, "cam-a"),
        "user_params not JSON": ({**base, "user_params": "{nope"}, "cam-a"),
        "phase pre only": ({**base, "phase": "pre"}, "cam-a"),
    }


def test_a_lease_form_answers_as_the_multipart_route_does(server: StationServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as http:
        d = leased(http, "cam-a", marked(48, 64, (3, 4, 5, 6)))
        lease_id = d["lease_id"]
        cases = lease_cases(lease_id)
        seen = {}
        for name, (fields, who) in cases.items():
            lane, route = (outcome(post(http, e, fields, who)) for e in ("form", "multipart"))
            assert lane == route, (name, lane, route)
            seen[name] = lane
        rects = [{"x": 3, "y": 4, "width": 5, "height": 6, "label": "marker", "score": 1.0}]
        assert seen["ok"] == (200, [("OK", None, None, None), ("OK", None, "NG", rects)])
        assert seen["forged lease"] == (404, "1006")
        assert seen["another client's lease"] == (403, "1006")
        assert seen["stale sequence number"] == (409, "1002")
        assert seen["bad pid"] == (422, "1006")
        # the pid is checked by the Runner: an answer with a code, not a refusal
        assert seen["unknown pid"] == (200, [("ERROR", "1001", None, None), None])
        assert seen["phase pre only"] == (200, [("OK", None, None, None)])
        r = http.delete(f"/frames/{lease_id}", headers={"X-ProcVision-Client": "cam-a"})
        assert r.status_code == 200, r.text


def test_the_lane_is_guarded_and_counted_and_passes_other_forms_on(server: StationServer) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=60) as http,
        httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as authed,
    ):
        d = leased(authed, "cam-c", marked(8, 8, (1, 1, 2, 2)))
        fields = {"pid": "m1", "step_index": "1", "frame": d["lease_id"]}
        who = {"X-ProcVision-Client": "cam-c"}
        # no token, a wrong token: the guard refuses before the lane reads the form
        r = http.post("/inspect", data=fields, headers=who)
        assert r.status_code == 401 and r.json()["error_code"] == "9999", r.text
        r = http.post("/inspect", data=fields, headers={**who, "Authorization": "Bearer nope"})
        assert r.status_code == 401, r.text
        before = answered(http)
        for _ in range(3):
            r = http.post("/inspect", data=fields, headers={**who, **AUTH})
            assert r.status_code == 200 and r.json()["execute"]["status"] == "OK", r.text
        assert answered(http) == before + 3  # counted under the route's template
        # a form that names no lease is the route's: here, neither image, raw nor frame
        r = http.post("/inspect", data={"pid": "m1", "step_index": "1"}, headers=AUTH)
        assert r.status_code == 422 and r.json()["error_code"] == "1006", r.text
        assert "exactly one of" in r.json()["message"]
        r = http.delete(f"/frames/{d['lease_id']}", headers={**who, **AUTH})
        assert r.status_code == 200, r.text


def answered(http: httpx.Client) -> float:
    """procvision_http_requests_total for POST /inspect answered 200, from GET /metrics."""
    text = http.get("/metrics", headers=AUTH).text
    pattern = (
        r'^procvision_http_requests_total\{(?=[^}]*route="/inspect")(?=[^}]*method="POST")'
        r'(?=[^}]*status="200")[^}]*\} (\S+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0
