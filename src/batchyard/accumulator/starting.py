"""Starting a flush: its batch marked flushing for one more attempt and its pending items read.

A flush claimed by the claim loop starts in one round trip of its own. A flush handed over
at the end of another (`batchyard.tasks.handoff`: the next batch of an ordered base, or a
place under a limited handler) starts in the transaction that recorded that end, which
claimed it - one commit between the two handler calls instead of two. What that start
read waits for the same thread, which runs the handed flush next; a flush given back
instead (the worker stopping) leaves it behind, and its next run starts it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from batchyard.accumulator import sql
from batchyard.accumulator.records import FLUSH_TASK, FlushReason
from batchyard.store import Store, Tx
from batchyard.store.base import Rows
from batchyard.tasks import Task, TaskQueue

# (the batch's row, its pending items), or (None, []) when it cannot start
Started = tuple[Any, list[Any]]


def _send_start(tx: Tx, batch_id: str, worker_id: str | None = None) -> tuple[Rows, Rows]:
    """Both statements sent at once (their rows read after the commit); with `worker_id`,
    the start of a handed-over flush (`sql.START_HANDED_FLUSH`)."""
    if worker_id is None:
        started = tx.later(
            sql.START_FLUSH, {"batch_id": batch_id, "reason": str(FlushReason.INTERVAL)}
        )
    else:
        started = tx.later(
            sql.START_HANDED_FLUSH,
            {"batch_id": batch_id, "reason": str(FlushReason.INTERVAL), "worker_id": worker_id},
        )
    return started, tx.later(sql.PENDING_ITEMS_OF_FLUSHING, {"batch_id": batch_id})


def _read(started: Rows, pending: Rows) -> Started:
    [batch] = started.all() or [None]
    return (None, []) if batch is None else (batch, pending.all())


class FlushStarts:
    """Starts flushes, and keeps the starts made ahead for handed-over flushes."""

    def __init__(self, store: Store, tasks: TaskQueue) -> None:
        self.store = store
        self.tasks = tasks
        self._ahead = threading.local()  # per thread: (task id, token, sent rows)

    def start(self, task: Task, now: float | None) -> Started:
        """Start the flush of `task`'s batch, unless the transaction that handed it over
        did already (then what it read)."""
        ahead = getattr(self._ahead, "start", None)
        self._ahead.start = None
        if ahead is not None and ahead[:2] == (task.id, task.token):
            batch, rows = _read(*ahead[2])
            if batch is not None:
                return batch, rows
        with self.store.transaction(now, pipeline=True) as tx:
            sent = _send_start(tx, task.payload["batch_id"])
        return _read(*sent)

    def start_handed(
        self, tx: Tx, handing: Rows | None, worker_id: str | None, next_batch: str | None
    ) -> Callable[[], Task | None]:
        """In the transaction of a hand-off (`TaskQueue.hand_off`), after the rest of its
        writes: start the flush of the task it claimed, for this thread to run next. When
        the batch it may claim is known (`next_batch`, the next of an ordered base), the
        start is sent without waiting for the claim; else reading the claim waits for it
        (a round trip more, in the same transaction). Returns what to call once the
        transaction committed: the task handed over, its start kept for this thread."""
        if handing is None or worker_id is None:
            return lambda: None
        handed = None
        if next_batch is None:
            handed = self.tasks.handed(handing)
            if handed is not None and handed.kind == FLUSH_TASK:
                next_batch = handed.payload["batch_id"]
        sent = None if next_batch is None else _send_start(tx, next_batch, worker_id)

        def committed() -> Task | None:
            task = handed if handed is not None else self.tasks.handed(handing)
            if task is not None and sent is not None and task.payload.get("batch_id") == next_batch:
                self._ahead.start = (task.id, task.token, sent)
            return task

        return committed
