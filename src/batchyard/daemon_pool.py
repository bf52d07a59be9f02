"""A pool of daemon threads: the worker's runners, which never hold up the process's exit."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("batchyard.worker")


class DaemonPool:
    """Threads that never hold up the process's exit: once the worker has given back the
    leases of work that did not finish in time, that work is abandoned (its late writes are
    refused by the fencing token), not waited for."""

    def __init__(self, size: int, name: str = "batchyard") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a thread of the pool never dies of one job
                log.exception("a worker thread's job failed")
