"""A reader process for the shared-memory tests (run as a script; holds no tests itself).

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout.
  {"op": "read", "id", "meta", "strict"?, "hold"?, "digest"?: "sha"|"sum"}
  {"op": "attach_rw", "name"}      attach through segment.attach_segment and close again
  {"op": "stats"}                  open fds, mapping count, cached segment names
  {"op": "drop"}                   forget held images
  {"op": "exit"}
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from procvision_algorithm_sdk import segment
from procvision_algorithm_sdk.errors import ProcVisionError
from procvision_algorithm_sdk.shared_memory import (
    cached_segment_names,
    read_image_from_shared_memory,
)


def _owns_memory(array: np.ndarray) -> bool:
    """Whether any ndarray in the base chain owns its data (a view over a mapping does not)."""
    node: Any = array
    while isinstance(node, np.ndarray):
        if node.flags.owndata:
            return True
        node = node.base
    return False


def _describe(image: Any, digest: str) -> dict[str, Any]:
    if image is None:
        return {"none": True}
    answer: dict[str, Any] = {
        "none": False,
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "writeable": bool(image.flags.writeable),
        "owns_memory": _owns_memory(image),
        "strides": list(image.strides),
    }
    if digest == "sha":
        answer["sha"] = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    else:
        answer["sum"] = int(image.sum(dtype=np.uint64))
        answer["first"] = [int(v) for v in image[0, 0]]
    try:
        image.flags.writeable = True
        answer["could_make_writeable"] = True
    except ValueError:
        answer["could_make_writeable"] = False
    try:
        image[0, 0, 0] = 1
        answer["assignment_failed"] = False
    except ValueError:
        answer["assignment_failed"] = True
    return answer


def _stats() -> dict[str, Any]:
    with open("/proc/self/maps") as maps:
        mapping_count = sum(1 for _ in maps)
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "maps": mapping_count,
        "cached": cached_segment_names(),
        "pid": os.getpid(),
    }


def main() -> None:
    """Serve requests until stdin closes or "exit" arrives."""
    held: list[Any] = []
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        answer: dict[str, Any] = {"ok": True}
        if op == "read":
            captured = io.StringIO()
            real_stderr, sys.stderr = sys.stderr, captured
            try:
                image = read_image_from_shared_memory(
                    request["id"], request["meta"], strict=request.get("strict")
                )
                answer.update(_describe(image, request.get("digest", "sha")))
                if request.get("hold"):
                    held.append(image)
            except ProcVisionError as exc:
                answer.update(ok=False, error=type(exc).__name__, code=exc.error_code)
            finally:
                sys.stderr = real_stderr
            answer["warnings"] = [json.loads(x) for x in captured.getvalue().splitlines() if x]
        elif op == "attach_rw":
            shm = segment.attach_segment(request["name"])
            answer["size"] = shm.size
            shm.close()
        elif op == "stats":
            answer.update(_stats())
        elif op == "drop":
            held.clear()
        elif op == "exit":
            print(json.dumps(answer), flush=True)
            return
        print(json.dumps(answer), flush=True)


class ReaderProcess:
    """Parent-side handle on a reader child process (every wait has a deadline)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.stderr = b""

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.proc.pid

    def ask(self, timeout: float = 60.0, **request: Any) -> dict[str, Any]:
        """Send one request and wait for its answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.kill()
            raise TimeoutError(f"reader did not answer {request['op']} within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(f"reader died: {self.stderr.decode(errors='replace')}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def close(self) -> int:
        """Ask the child to exit, reap it, keep its stderr; returns the exit code."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "exit"}\n')
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        return self._reap()

    def _reap(self) -> int:
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
        self.stderr += err or b""
        return int(self.proc.returncode)


if __name__ == "__main__":
    main()
