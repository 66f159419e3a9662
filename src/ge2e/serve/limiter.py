"""Bounded inference and per-key rate limits.

Inference: ``workers`` threads run jobs, at most ``queue`` more wait; anything beyond is refused with 503. A slot is
taken only once the request body has been read in full, so a slow or stalled upload costs a connection, never a
slot: inference capacity goes to requests that are ready to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
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
        """Requests holding a slot now (running, or waiting for a thread)."""
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


class RateLimiter:
    """Per-key token buckets: ``rate`` requests per minute on average, bursts of up to ``BURST_SECONDS`` of it.

    Args:
        default_per_minute: the rate of keys without their own; 0 turns limiting off for them.
    """

    BURST_SECONDS = 10

    def __init__(self, default_per_minute: int) -> None:
        self.default = default_per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, monotonic time of that count)
        self._lock = threading.Lock()
        self.limited = 0

    def take(self, key_id: str, per_minute: int | None = None) -> None:
        """Spend one token of ``key_id``'s bucket; raises a 429 ApiError with ``Retry-After`` when it is empty."""
        rate = (per_minute or self.default) / 60
        if rate <= 0:
            return
        burst = max(1.0, rate * self.BURST_SECONDS)
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (burst, now))
            tokens = min(burst, tokens + (now - then) * rate)
            if tokens < 1:
                self.limited += 1
                self._buckets[key_id] = (tokens, now)
                wait = math.ceil((1 - tokens) / rate)
                raise ApiError(
                    429,
                    "rate_limited",
                    f"this key is over its rate limit of {rate * 60:g} requests per minute; retry after {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            self._buckets[key_id] = (tokens - 1, now)
