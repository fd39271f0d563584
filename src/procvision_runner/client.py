"""A Python client of the Runner's HTTP API: inspections through frame leases or raw uploads.

`RunnerClient(url, token=None)`; `inspect(pid, step_index, frame)` leases a shared-memory
buffer from the Runner when the Runner is on this host (the frame is written once, straight
where the worker reads it) and uploads raw pixels otherwise. The management calls mirror the
HTTP routes. Standard library only (http.client), so a station needs nothing beyond numpy.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import itertools
import json
import os
import threading
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from procvision_algorithm_sdk import segment as seg

from .client_wire import Connection, RunnerHTTPError, WireConnection, exchange, http_error

CLIENT_HEADER = "X-ProcVision-Client"


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class FrameBuffer:
    """A leased shared-memory frame buffer: fill `array` (or `write()`), `commit()`, inspect."""

    def __init__(self, client: RunnerClient, description: dict[str, Any]) -> None:
        self.description = description
        self.lease_id: str = description["lease_id"]
        self.height: int = description["height"]
        self.width: int = description["width"]
        self.channels: int = description["channels"]
        self._client = client
        self._shm: Any = seg.attach_segment(description["segment"])
        shape = (self.height, self.width, self.channels)
        self._array: np.ndarray | None = seg.payload_array(self._shm.buf, shape, np.uint8)
        self._seqs = itertools.count(1)
        self.seq = 0
        self.busy = False

    @property
    def segment(self) -> str:
        """The name of the leased segment."""
        return str(self.description["segment"])

    @property
    def array(self) -> np.ndarray:
        """A writable H x W x C view of the segment's payload."""
        if self._array is None:
            raise RuntimeError(f"lease {self.lease_id} was released")
        return self._array

    def write(self, frame: np.ndarray) -> int:
        """Copy `frame` into the buffer and commit it; returns the committed sequence number."""
        array = np.asarray(frame)
        if array.dtype != np.uint8:
            raise ValueError(f"frames are uint8, not {array.dtype}")
        target = self.array
        if array.ndim == 2:
            array = array[:, :, None]
        if array.shape != target.shape:
            raise ValueError(f"frame shape {array.shape} does not fit lease {target.shape}")
        seg.set_sequence(self._shm.buf, 0)  # a reader never sees a half-written frame as whole
        np.copyto(target, array)
        return self.commit()

    def commit(self) -> int:
        """Publish what was written into `array` under a fresh sequence number."""
        self.seq = next(self._seqs)
        seg.set_sequence(self._shm.buf, self.seq)
        return self.seq

    def close(self) -> None:
        """Drop this process's mapping (the Runner unlinks the segment)."""
        self._array = None
        if self._shm is not None:
            seg.close_quietly(self._shm)
            self._shm = None

    def release(self) -> None:
        """Give the lease back to the Runner and unmap it."""
        self.close()
        self._client._release_lease(self.lease_id)


class RunnerClient:
    """Client of one Runner service (thread-safe: one keep-alive connection per thread)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8765",
        token: str | None = None,
        *,
        timeout: float = 120.0,
        transport: str = "auto",
        client_id: str | None = None,
        leases_per_shape: int = 4,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if transport not in ("auto", "lease", "raw"):
            raise ValueError("transport must be 'auto', 'lease' or 'raw'")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._scheme = parsed.scheme
        self._netloc = parsed.netloc
        self._base = parsed.path.rstrip("/")
        self.client_id = client_id or f"py-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.same_host = _is_loopback_host(parsed.hostname)
        self.transport = transport if transport != "auto" else "lease" if self.same_host else "raw"
        self._local = threading.local()
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._free: dict[tuple[int, int, int], list[FrameBuffer]] = {}
        self._all: list[FrameBuffer] = []
        self._leases_per_shape = leases_per_shape
        self._closed = False

    # ------------------------------------------------------------------ HTTP

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._scheme == "https":
                conn = http.client.HTTPSConnection(self._netloc, timeout=self.timeout)
            else:
                conn = WireConnection(self._host, self._port, self.timeout, self._netloc)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        query: dict[str, Any] | None = None,
        expect_json: bool = True,
    ) -> Any:
        """One HTTP call; returns the decoded JSON (or text); RunnerHTTPError on non-2xx."""
        target = self._base + path
        if query:
            items = {k: _query_value(v) for k, v in query.items() if v is not None}
            target += "?" + urllib.parse.urlencode(items)
        headers = {CLIENT_HEADER: self.client_id, "Connection": "keep-alive"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (0, 1):
            conn = self._connection()
            try:
                status, data = exchange(conn, method, target, headers, body)
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed meanwhile: reconnect once.
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        if status >= 300:
            raise http_error(status, data)
        if not expect_json:
            return data.decode("utf-8", "replace")
        return json.loads(data) if data else None

    # ------------------------------------------------------------------ inspection

    def inspect(
        self,
        pid: str,
        step_index: int,
        frame: np.ndarray | FrameBuffer,
        *,
        phase: str = "step",
        user_params: dict[str, Any] | None = None,
        session_id: str | None = None,
        session_context: dict[str, Any] | None = None,
        color_space: str | None = None,
        camera_id: str | None = None,
        timestamp_ms: int | None = None,
    ) -> dict[str, Any]:
        """Inspect one frame: through a lease on this host, a raw upload otherwise."""
        fields: dict[str, Any] = {
            "pid": pid,
            "step_index": step_index,
            "phase": phase,
            "user_params": None if user_params is None else json.dumps(user_params),
            "session_id": session_id,
            "session_context": None if session_context is None else json.dumps(session_context),
            "color_space": color_space,
            "camera_id": camera_id,
            "timestamp_ms": timestamp_ms,
        }
        if isinstance(frame, FrameBuffer):
            return self._inspect_lease(frame, fields)
        array = np.asarray(frame)
        if self.transport == "lease":
            buffer = self._take_buffer(array.shape)
            try:
                buffer.write(array)
                return self._inspect_lease(buffer, fields)
            finally:
                self._give_buffer(buffer)
        return self.inspect_raw(array, fields)

    def _inspect_lease(self, buffer: FrameBuffer, fields: dict[str, Any]) -> dict[str, Any]:
        if buffer.seq == 0:
            raise ValueError(f"lease {buffer.lease_id} holds no committed frame: write() first")
        form = {k: _query_value(v) for k, v in fields.items() if v is not None}
        form.update(frame=buffer.lease_id, frame_seq=str(buffer.seq))
        body = urllib.parse.urlencode(form).encode("ascii")
        result: dict[str, Any] = self.request(
            "POST", "/inspect", body=body, content_type="application/x-www-form-urlencoded"
        )
        return result

    def inspect_raw(self, frame: np.ndarray, fields: dict[str, Any]) -> dict[str, Any]:
        """Upload raw pixels as the body of `POST /inspect/raw` (fields in the query)."""
        array = np.ascontiguousarray(frame)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError("frames are H x W or H x W x C uint8 arrays")
        channels = 1 if array.ndim == 2 else int(array.shape[2])
        query = dict(fields, height=array.shape[0], width=array.shape[1], channels=channels)
        result: dict[str, Any] = self.request(
            "POST",
            "/inspect/raw",
            body=array.data.cast("B"),  # type: ignore[arg-type]
            content_type="application/octet-stream",
            query=query,
        )
        return result

    # ------------------------------------------------------------------ leases

    def lease(self, height: int, width: int, channels: int = 3) -> FrameBuffer:
        """Lease a frame buffer of this geometry from the Runner (same host only)."""
        body = json.dumps(
            {"height": height, "width": width, "channels": channels, "client_pid": os.getpid()}
        ).encode()
        description = self.request("POST", "/frames", body=body, content_type="application/json")
        buffer = FrameBuffer(self, description)
        with self._lock:
            self._all.append(buffer)
        return buffer

    def _take_buffer(self, shape: tuple[int, ...]) -> FrameBuffer:
        if len(shape) == 2:
            key = (int(shape[0]), int(shape[1]), 1)
        elif len(shape) == 3:
            key = (int(shape[0]), int(shape[1]), int(shape[2]))
        else:
            raise ValueError(f"a frame is H x W or H x W x C, got shape {shape}")
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
        return self.lease(*key)

    def _give_buffer(self, buffer: FrameBuffer) -> None:
        key = (buffer.height, buffer.width, buffer.channels)
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self._leases_per_shape and not self._closed:
                free.append(buffer)
                return
        buffer.release()

    def _release_lease(self, lease_id: str) -> None:
        with self._lock:
            self._all = [b for b in self._all if b.lease_id != lease_id]
        with contextlib.suppress(RunnerHTTPError, OSError):
            self.request("DELETE", f"/frames/{lease_id}")

    # ------------------------------------------------------------------ management

    def health(self) -> dict[str, Any]:
        """GET /healthz."""
        return dict(self.request("GET", "/healthz"))

    def ready(self) -> dict[str, Any]:
        """GET /readyz (a 503 answer raises RunnerHTTPError)."""
        return dict(self.request("GET", "/readyz"))

    def algorithms(self) -> list[dict[str, Any]]:
        """GET /algorithms: the installed versions."""
        return list(self.request("GET", "/algorithms"))

    def active(self) -> dict[str, dict[str, Any]]:
        """GET /algorithms/active: pid -> active version."""
        return dict(self.request("GET", "/algorithms/active"))

    def algorithm(self, name: str, version: str) -> dict[str, Any]:
        """GET /algorithms/{name}/{version}: manifest, steps and parameter specs."""
        path = f"/algorithms/{_segment(name)}/{_segment(version)}"
        return dict(self.request("GET", path))

    def pid_info(self, pid: str) -> dict[str, Any]:
        """GET /pids/{pid}: the active package of a pid and its steps."""
        return dict(self.request("GET", f"/pids/{_segment(pid)}"))

    def install(
        self,
        zip_path: str | Path,
        *,
        replace: bool = False,
        keep_bundled_sdk: bool = False,
        background: bool = False,
    ) -> dict[str, Any]:
        """POST /algorithms/install with the zip as the `file` part (background: 202, a job)."""
        boundary = uuid.uuid4().hex
        data = Path(zip_path).read_bytes()
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="package.zip"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode() + data
        body += f"\r\n--{boundary}--\r\n".encode()
        flags = {"replace": replace, "keep_bundled_sdk": keep_bundled_sdk, "async": background}
        query = {k: "true" for k, on in flags.items() if on} or None
        return dict(
            self.request(
                "POST",
                "/algorithms/install",
                body=body,
                content_type=f"multipart/form-data; boundary={boundary}",
                query=query,
            )
        )

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /jobs/{job_id}: a job's status, phase, log, and at the end result or error."""
        return dict(self.request("GET", f"/jobs/{_segment(job_id)}"))

    def activate(self, name: str, version: str, pids: list[str]) -> dict[str, Any]:
        """POST /algorithms/activate."""
        return self._post_json("/algorithms/activate", name=name, version=version, pids=pids)

    def switch(self, name: str, version: str, pids: list[str]) -> dict[str, Any]:
        """POST /algorithms/switch."""
        return self._post_json("/algorithms/switch", name=name, version=version, pids=pids)

    def rollback(self, pid: str) -> dict[str, Any]:
        """POST /algorithms/rollback."""
        return self._post_json("/algorithms/rollback", pid=pid)

    def deactivate(self, pid: str) -> dict[str, Any]:
        """POST /algorithms/deactivate."""
        return self._post_json("/algorithms/deactivate", pid=pid)

    def uninstall(self, name: str, version: str, *, force: bool = False) -> dict[str, Any]:
        """DELETE /algorithms/{name}/{version}."""
        path = f"/algorithms/{_segment(name)}/{_segment(version)}"
        return dict(self.request("DELETE", path, query={"force": "true"} if force else None))

    def reset_session(self, session_id: str) -> dict[str, Any]:
        """POST /sessions/{id}/reset."""
        return dict(self.request("POST", f"/sessions/{_segment(session_id)}/reset"))

    def close_session(self, session_id: str) -> dict[str, Any]:
        """DELETE /sessions/{id}."""
        return dict(self.request("DELETE", f"/sessions/{_segment(session_id)}"))

    def _post_json(self, path: str, **fields: Any) -> dict[str, Any]:
        body = json.dumps(fields).encode()
        return dict(self.request("POST", path, body=body, content_type="application/json"))

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Release every lease and close the connections; idempotent."""
        with self._lock:
            self._closed = True
            buffers, self._all = list(self._all), []
            self._free.clear()
        for buffer in buffers:
            buffer.close()
            with contextlib.suppress(RunnerHTTPError, OSError):
                self.request("DELETE", f"/frames/{buffer.lease_id}")
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> RunnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _segment(text: str) -> str:
    return urllib.parse.quote(str(text), safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["CLIENT_HEADER", "FrameBuffer", "RunnerClient", "RunnerHTTPError"]
