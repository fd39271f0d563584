"""CallThreads: the threads an inspection's blocking Runner call runs in.

asyncio's `run_in_executor` on a pool of our own rather than Starlette's `run_in_threadpool`
(anyio's `to_thread`): on the lease path at 2 MP the anyio hop, with its capacity limiter and
the extra checkpoints around the call, cost about 0.6 ms more per call than this one (issue 15,
measured side by side in docs/benchmarks.md). The pool is sized like anyio's default limiter:
a call that waits in the Runner's fair queue holds a thread while it waits.
"""

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["CallThreads"]

T = TypeVar("T")


class CallThreads:
    """A bounded thread pool for blocking Runner calls, awaited from the event loop."""

    def __init__(self, max_threads: int = 40) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="pv-call")

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a call thread; a cancelled caller still waits for it to end.

        What the call holds (a lease, the decode budget, a slot) is given back by the caller's
        context managers, so the caller must not leave while the call still uses it.
        """
        future = asyncio.get_running_loop().run_in_executor(self._pool, fn)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await asyncio.wait([future])
            raise

    def close(self) -> None:
        """Stop taking calls; the ones running finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
