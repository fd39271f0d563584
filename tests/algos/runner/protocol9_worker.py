"""A stand-in for the adapter that speaks protocol 9.0: the Runner must refuse it at start.

Started through a wrapper given to Runner.load(python=...); it ignores its arguments, writes
its pid to $PROC_TEST_PID_FILE, sends a hello frame and waits until its stdin closes.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time

with open(os.environ["PROC_TEST_PID_FILE"], "w") as handle:
    handle.write(str(os.getpid()))
hello = {
    "type": "hello",
    "sdk_version": "9.0.0",
    "protocol_version": "9.0",
    "timestamp_ms": int(time.time() * 1000),
    "capabilities": ["ping", "call", "shutdown", "shared_memory:v1"],
}
payload = json.dumps(hello).encode("utf-8")
sys.stdout.buffer.write(struct.pack(">I", len(payload)) + payload)
sys.stdout.buffer.flush()
sys.stdin.buffer.read()
