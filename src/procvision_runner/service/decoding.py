"""Decoding uploaded images under a global pixel budget, on one dedicated decode thread.

Every image an /inspect request decodes takes its pixel count (read from the file's header)
from one budget before decoding, and gives it back once its request has its answer (the
decoded frame is held until the Runner copied it). Requests that do not fit wait, first come
first served, until `decode_wait_ms`; then they are answered 503 with `Retry-After`. Decoding
runs on one thread of its own, never on the shared worker pool: freed image memory stays in
each thread's allocator arena, so decodes spread over many pool threads kept ~2 GB resident
where one dedicated thread stayed at ~0.7 GB (issue 13, measured in docs/benchmarks.md).
"""

import asyncio
import contextlib
import io
import math
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from starlette.concurrency import run_in_threadpool

from procvision_algorithm_sdk.errors import TIMEOUT, ImageLoadError

from .errors import ApiError

__all__ = ["HTTP_FORMATS", "Decoder", "PixelBudget", "decode_image", "peek_pixels"]

HTTP_FORMATS = ("PNG", "JPEG", "TIFF")


def decode_image(data: bytes, max_pixels: int) -> tuple[np.ndarray | None, str]:
    """Decode PNG/JPEG/TIFF bytes to an H x W x 3 RGB uint8 array, or (None, why)."""
    from procvision_algorithm_sdk.imagefile import decode_image as decode

    try:
        return decode(data, formats=HTTP_FORMATS, max_pixels=max_pixels), ""
    except ImageLoadError as exc:
        return None, str(exc)


def peek_pixels(data: bytes) -> int:
    """Width x height from the image's header (nothing decoded); 0 when it has none readable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=HTTP_FORMATS) as img:
            width, height = img.size
    except Exception:  # the decoder itself reports why; the budget only needs a size
        return 0
    return max(int(width) * int(height), 0)


class PixelBudget:
    """Pixels in flight, granted in arrival order; used from the event loop thread only."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for pixels now."""
        return len(self._waiters)

    async def acquire(self, pixels: int, timeout_s: float) -> bool:
        """Take `pixels` (at most the whole budget); False when `timeout_s` passed first."""
        if not self._waiters and self.in_use + pixels <= self.total:
            self.in_use += pixels
            return True
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pixels, granted)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(granted), timeout_s)
        except asyncio.TimeoutError:
            return not self._withdraw(entry)  # granted just as the wait ended: keep it
        except asyncio.CancelledError:
            if not self._withdraw(entry):
                self.release(pixels)
            raise
        return True

    def _withdraw(self, entry: tuple[int, "asyncio.Future[None]"]) -> bool:
        """Leave the queue; False when the pixels were granted already."""
        granted = entry[1]
        if granted.done():
            return False
        granted.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)
        self._grant()  # it may have been the head that held the others back
        return True

    def release(self, pixels: int) -> None:
        """Give `pixels` back and wake the waiters that now fit, in order."""
        self.in_use -= pixels
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            pixels, granted = self._waiters[0]
            if self.in_use + pixels > self.total:
                return  # the head waits for room; nobody overtakes it
            self._waiters.popleft()
            self.in_use += pixels
            granted.set_result(None)


class Decoder:
    """The service's image decoding: a pixel budget in front of one dedicated thread."""

    def __init__(
        self,
        budget_pixels: int,
        wait_ms: int,
        max_image_pixels: int,
        *,
        dedicated_thread: bool = True,
    ) -> None:
        self.budget = PixelBudget(budget_pixels)
        self.wait_s = wait_ms / 1000.0
        self.max_image_pixels = max_image_pixels
        # False decodes on the shared pool: only the benchmark's comparison uses it.
        self._thread = (
            ThreadPoolExecutor(1, thread_name_prefix="procvision-decode")
            if dedicated_thread
            else None
        )

    @contextlib.asynccontextmanager
    async def decoded(self, data: bytes) -> AsyncIterator[tuple[np.ndarray | None, str]]:
        """Decode `data` within the budget; the pixels stay taken until the block exits."""
        pixels = await run_in_threadpool(peek_pixels, data)
        # An image refused by its header alone (unreadable, over the pixel limit) costs nothing.
        need = min(pixels, self.budget.total) if 0 < pixels <= self.max_image_pixels else 0
        if need and not await self.budget.acquire(need, self.wait_s):
            retry_s = max(1, math.ceil(self.wait_s))
            raise ApiError(
                503,
                TIMEOUT,
                f"busy: {self.budget.in_use} of {self.budget.total} pixels are being decoded; "
                f"this image ({pixels} pixels) waited {self.wait_s:g} s",
                {"Retry-After": str(retry_s)},
            )
        try:
            if self._thread is None:
                yield await run_in_threadpool(decode_image, data, self.max_image_pixels)
            else:
                loop = asyncio.get_running_loop()
                yield await loop.run_in_executor(
                    self._thread, decode_image, data, self.max_image_pixels
                )
        finally:
            if need:
                self.budget.release(need)

    def close(self) -> None:
        """Stop the decode thread (queued decodes are dropped, a running one finishes)."""
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
