"""What a worker writes when a task's run fails: the attempt retried with backoff, or the task
dead-lettered with its capability's books, or - when it was the store that failed, not the
task - given back without counting the attempt.

Each outcome is written until it is: while the store is unavailable the worker tries again
with backoff, the task staying in flight (so the heartbeat keeps its lease once the store is
back), until the write goes through, is refused as stale, or the worker stops and gives its
leases back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from batchyard.errors import LeaseLost
from batchyard.supervision import Backoff, Outage, is_transient
from batchyard.tasks import Task

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

log = logging.getLogger("batchyard.worker")
GIVE_BACK_SECONDS = 1.0  # a task whose runner met an unavailable store runs again after this


class Settling:
    """Writes the outcome of a failed run for a worker (`outage`: the worker's, told of each
    store failure; `stopped`: set once the worker has stopped, which ends the retries)."""

    def __init__(self, runtime: Runtime, outage: Outage, stopped: threading.Event) -> None:
        self.runtime = runtime
        self.outage = outage
        self.stopped = stopped

    def failed(self, task: Task, error: str) -> None:
        """The run of `task` failed with `error`: retried after the retry policy's delay,
        or dead-lettered once its attempts are spent."""
        self._settle(task, lambda: self._fail(task, error))

    def give_back(self, task: Task) -> None:
        """The run of `task` met an unavailable store: it runs again a little later, the
        attempt not counted (not due at once: `run_until_idle` would claim it again and
        again meanwhile)."""
        self._settle(task, lambda: self._postpone(task))

    def _settle(self, task: Task, write: Callable[[], None]) -> None:
        backoff = Backoff()
        while True:
            try:
                write()
            except LeaseLost as exc:
                log.warning("stale outcome refused: %s", exc)
            except Exception as exc:
                if is_transient(exc):
                    self.outage.failed(exc)
                    if not self.stopped.wait(backoff.next()):
                        continue
                else:
                    # anything else leaves the task to run again after its lease
                    log.exception(
                        "the outcome of task %s (%s) could not be written; it runs "
                        "again once its lease expires",
                        task.id,
                        task.kind,
                    )
            return

    def _postpone(self, task: Task) -> None:
        with self.runtime.store.transaction(self.runtime.now()) as tx:
            self.runtime.tasks.postpone(tx, task, GIVE_BACK_SECONDS)

    def _fail(self, task: Task, error: str) -> None:
        runtime = self.runtime
        delay = runtime.retry.next_delay(task.attempts, max_attempts=task.max_attempts)
        with runtime.store.transaction(runtime.now()) as tx:
            if delay is None:
                runtime.tasks.dead_letter(tx, task, error)
                kind = runtime.kinds.get(task.kind)
                if kind is not None and kind.on_dead is not None:
                    kind.on_dead(tx, task, error)  # the capability's books, same commit
            else:
                runtime.tasks.retry(tx, task, error, delay)
