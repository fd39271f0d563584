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
import json
import os
import socket
import threading
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .client_frames import FrameBuffer
from .client_wire import Connection, RunnerHTTPError, WireConnection, exchange, http_error

CLIENT_HEADER = "X-ProcVision-Client"


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        local_socket: bool = True,
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
        # Lease calls go through the Runner's local socket when it offers one (learnt from a
        # lease's description): the same request and answer, fewer wake-ups than over TCP.
        self.local_socket = local_socket and hasattr(socket, "AF_UNIX")
        self._socket_path: str | None = None

    @property
    def socket_path(self) -> str | None:
        """The Runner's local socket that lease calls go through now (None: over TCP)."""
        return self._socket_path

    # ------------------------------------------------------------------ HTTP

    def _connection(self, via_socket: bool = False) -> tuple[str, Connection]:
        """(which, connection) of this thread: "socket" (the local socket) or "tcp"."""
        path = self._socket_path if via_socket else None
        which = "tcp" if path is None else "socket"
        conn: Connection | None = getattr(self._local, which, None)
        if conn is None:
            if path is not None:
                conn = WireConnection(
                    self._host, self._port, self.timeout, "localhost", unix_path=path
                )
            elif self._scheme == "https":
                conn = http.client.HTTPSConnection(self._netloc, timeout=self.timeout)
            else:
                conn = WireConnection(self._host, self._port, self.timeout, self._netloc)
            setattr(self._local, which, conn)
            with self._lock:
                self._connections.append(conn)
        return which, conn

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        query: dict[str, Any] | None = None,
        expect_json: bool = True,
        via_socket: bool = False,
    ) -> Any:
        """One HTTP call; returns the decoded JSON (or text); RunnerHTTPError on non-2xx.

        `via_socket`: through the Runner's local socket when one is known (else over TCP).
        """
        target = self._base + path
        if query:
            items = {k: _query_value(v) for k, v in query.items() if v is not None}
            target += "?" + urllib.parse.urlencode(items)
        headers = {CLIENT_HEADER: self.client_id, "Connection": "keep-alive"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        retried = False
        while True:
            which, conn = self._connection(via_socket)
            try:
                status, data = exchange(conn, method, target, headers, body)
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed meanwhile: reconnect once.
                conn.close()
                setattr(self._local, which, None)
                if retried:
                    raise
                retried = True
            except (FileNotFoundError, ConnectionRefusedError, PermissionError):
                if which != "socket":
                    raise
                # the local socket is gone or not ours to use: TCP from now on (nothing sent)
                conn.close()
                setattr(self._local, which, None)
                self._socket_path = None
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
            "POST",
            "/inspect",
            body=body,
            content_type="application/x-www-form-urlencoded",
            via_socket=True,
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
        offered = description.get("local_socket")
        if self.local_socket and isinstance(offered, str) and offered:
            self._socket_path = offered
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
