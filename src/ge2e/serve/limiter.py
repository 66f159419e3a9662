"""Bounded inference: ``workers`` threads run jobs, at most ``queue`` more wait; anything beyond is refused.

A slot is taken before the request body is read and given back when the answer is ready, so the memory held by
audio requests is bounded by ``(workers + queue) x max upload size``, whatever the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ge2e.serve.errors import ApiError

T = TypeVar("T")


class InferenceLimiter:
    """Admission control plus a fixed thread pool for CPU-bound model work.

    Args:
        workers: threads running inference (>= 1).
        queue: admitted requests that may wait for a thread (>= 0).
        retry_after: seconds suggested to refused clients in the ``Retry-After`` header.
    """

    def __init__(self, workers: int, queue: int, retry_after: int = 1) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"need workers >= 1 and queue >= 0, got workers={workers}, queue={queue}")
        self.capacity = workers + queue
        self.retry_after = retry_after
        self._admitted = 0
        self._running = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ge2e-infer")
        self.rejected = 0

    @property
    def admitted(self) -> int:
        """Requests holding a slot now (running, waiting for a thread, or still uploading)."""
        return self._admitted

    @property
    def running(self) -> int:
        """Jobs executing on a worker thread now."""
        return self._running

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``workers + queue`` slots for the block; raises a 503 ApiError when all are taken."""
        with self._lock:
            if self._admitted >= self.capacity:
                self.rejected += 1
                raise ApiError(
                    503,
                    "overloaded",
                    f"all {self.capacity} inference slots are busy; retry after {self.retry_after} s",
                    headers={"Retry-After": str(self.retry_after)},
                )
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on a worker thread (call inside :meth:`slot`)."""
        return await asyncio.wrap_future(self._pool.submit(self._counted, fn, *args))

    def _counted(self, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            self._running += 1
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._running -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
