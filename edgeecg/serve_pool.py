"""A bounded pool of inference workers for the server, each with its own model session.

Decoding, cropping and ONNX Runtime all release the GIL, so worker threads use
the cores while the event loop keeps accepting requests. The pool admits at
most `workers + queue` jobs; one more is refused at once (the server answers
429) rather than queued without bound, and a caller stops waiting after
`timeout_s` (a job not yet started is then dropped).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from .backends import Backend

T = TypeVar("T")


class PoolFull(Exception):
    """Every worker is busy and the queue is full."""


class PoolTimeout(Exception):
    """A job did not finish within the time limit."""


class WorkerPool:
    """`workers` threads, each running jobs with a backend of its own."""

    def __init__(self, open_backend: Callable[[], Backend], workers: int, queue_size: int, timeout_s: float) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.timeout_s = timeout_s
        opened = [open_backend() for _ in range(workers)]
        self.model = opened[0]  # describes the model served; every worker's backend loads the same file
        self.backends: queue.SimpleQueue[Backend] = queue.SimpleQueue()
        for backend in opened:
            self.backends.put(backend)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="edgeecg-worker")
        self._lock = threading.Lock()
        self._admitted = 0  # waiting + running
        self._running = 0

    @property
    def queue_depth(self) -> int:
        """Jobs admitted but not yet running."""
        return self._admitted - self._running

    @property
    def busy(self) -> int:
        """Jobs running now."""
        return self._running

    async def run(self, job: Callable[[Backend], T]) -> T:
        """Run `job(backend)` on a worker; PoolFull when there is no room, PoolTimeout past the limit."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise PoolFull()
            self._admitted += 1
        future = self._executor.submit(self._call, job)
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except asyncio.TimeoutError:
            raise PoolTimeout() from None

    def close(self) -> None:
        """Finish the jobs in flight, then stop the worker threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _call(self, job: Callable[[Backend], T]) -> T:
        backend = self.backends.get()
        with self._lock:
            self._running += 1
        try:
            return job(backend)
        finally:
            with self._lock:
                self._running -= 1
            self.backends.put(backend)

    def _release(self, _future) -> None:
        with self._lock:
            self._admitted -= 1
