"""Leases a worker holds beyond the runs on its threads, and the writes it makes behind them.

A slot that holds a place under a limited handler keeps it across calls (see
`batchyard.tasks.handoff`): the next task for the place is claimed ahead while the call
runs, and when the call returns the next one starts at once while the end of the one
before is written behind it, by another thread. Both kinds of task are held by the worker
without a thread running them - a task claimed ahead, waiting for its place; a task whose
end is still being written - and both need their leases kept until that is done: they are
*held* here (counted: a task may be held for its claim and for its end at once), and the
worker's heartbeat keeps the leases of what is held as it does those of its runs.

Starting a call before the end of the one before is committed is safe for the limit only
while the ending task's lease is surely live (nobody else can have taken its place), so
the worker tells when every lease it holds was last surely renewed (`renewed`): at its
start, then at each heartbeat that went through. Without that (no heartbeat, as in
`run_worker(wait=False)`, or one that has not gone through for half a lease), the end is
written first and the next call starts after it (`surely_live`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from batchyard.clock import Clock
from batchyard.daemon_pool import DaemonPool
from batchyard.tasks.records import Task

T = TypeVar("T")


class Leases:
    """The tasks a worker holds without running them, and the thread that writes behind."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._held: dict[int, tuple[Task, int]] = {}  # id -> (task, holds)
        self._renewed: float | None = None  # clock time since which every lease is renewed
        self._pool: DaemonPool | None = None

    def open(self, writers: int) -> None:
        """A worker starts: every lease it will hold is set from now on, and up to `writers`
        writes may go on behind its runs at once."""
        with self._lock:
            self._renewed = self.clock.time()
            self._pool = DaemonPool(writers, name="batchyard-behind")

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._renewed = self._pool, None, None
        if pool is not None:
            pool.shutdown()

    def keep(self, task: Task) -> None:
        """Hold `task` (once more): its lease is kept until it is let go as often."""
        with self._lock:
            _, holds = self._held.get(task.id, (task, 0))
            self._held[task.id] = (task, holds + 1)

    def let_go(self, task: Task) -> None:
        with self._lock:
            found = self._held.get(task.id)
            if found is None:
                return
            if found[1] > 1:
                self._held[task.id] = (found[0], found[1] - 1)
            else:
                del self._held[task.id]

    def held(self) -> list[Task]:
        with self._lock:
            return [task for task, _ in self._held.values()]

    def renewed(self, since: float) -> None:
        """The heartbeat that started at `since` (clock time) renewed every lease held."""
        with self._lock:
            if self._renewed is not None:
                self._renewed = max(self._renewed, since)

    def surely_live(self, lease: float) -> bool:
        """Whether every lease the worker holds has at least half of `lease` left."""
        with self._lock:
            renewed = self._renewed
        return renewed is not None and self.clock.time() - renewed < lease / 2

    def behind(self, write: Callable[[], T]) -> Future[T]:
        """Run `write` on a thread of its own while the caller goes on (at once, on this
        thread, when the worker has none: the mode that runs what is due and returns)."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(write())
            except BaseException as exc:  # the caller reads it from the future
                done.set_exception(exc)

        with self._lock:
            pool = self._pool
        if pool is None:
            run()
        else:
            pool.submit(run)
        return done
