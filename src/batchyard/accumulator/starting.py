"""Starting a flush: its batch marked flushing for one more attempt and its pending items read.

A flush claimed by the claim loop starts in one round trip of its own. Three claims start it
in their own transaction instead, one commit fewer before the handler runs: a hand-off at
the end of another flush (`batchyard.tasks.handoff`: the next batch of an ordered base, or a
place under a limited handler, or a claim ahead for a place that a slot keeps across calls,
`accumulator.places`), and a directed claim of the flushes an add of this process
just queued (`batchyard.tasks.directed`). What that start read travels with the claimed task
(`Task.ahead`) to the thread that runs it; a flush given back instead (the worker stopping)
leaves it behind, and its next run starts it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from batchyard.accumulator import sql
from batchyard.accumulator.records import FLUSH_TASK, FlushReason
from batchyard.store import Store, Tx
from batchyard.store.base import Rows
from batchyard.tasks import Task, TaskQueue

# (the batch's row, its pending items), or (None, []) when it cannot start
Started = tuple[Any, list[Any]]
Sent = tuple[Rows, Rows]  # the two statements of a start, their rows read after the commit


def _send_start(tx: Tx, batch_id: str, sql_text: str = sql.START_FLUSH, **params: Any) -> Sent:
    """Both statements sent at once (their rows read after the commit): the start
    (`sql_text`, one of the START_*_FLUSH statements) and the pending items."""
    started = tx.later(
        sql_text, {"batch_id": batch_id, "reason": str(FlushReason.INTERVAL), **params}
    )
    return started, tx.later(sql.PENDING_ITEMS_OF_FLUSHING, {"batch_id": batch_id})


def _read(started: Rows, pending: Rows) -> Started:
    [batch] = started.all() or [None]
    return (None, []) if batch is None else (batch, pending.all())


class FlushStarts:
    """Starts flushes, in a transaction of their own or in the one that claimed them."""

    def __init__(self, store: Store, tasks: TaskQueue) -> None:
        self.store = store
        self.tasks = tasks

    def start(self, task: Task, now: float | None) -> Started:
        """Start the flush of `task`'s batch, unless the transaction that claimed it did
        already (then what that start read)."""
        if task.ahead is not None and task.ahead[0] is not None:
            return task.ahead  # type: ignore[no-any-return]
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
        transaction committed: the task handed over, with what its start read."""
        if handing is None or worker_id is None:
            return lambda: None
        handed = None
        if next_batch is None:
            handed = self.tasks.handed(handing)
            if handed is not None and handed.kind == FLUSH_TASK:
                next_batch = handed.payload["batch_id"]
        sent = None
        if next_batch is not None:
            sent = _send_start(tx, next_batch, sql.START_HANDED_FLUSH, worker_id=worker_id)

        def committed() -> Task | None:
            task = handed if handed is not None else self.tasks.handed(handing)
            if task is not None and sent is not None and task.payload.get("batch_id") == next_batch:
                return replace(task, ahead=_read(*sent))
            return task

        return committed

    def start_ahead(self, tx: Tx, task: Task) -> Callable[[], Started]:
        """In the transaction that claimed `task` ahead for a place (`accumulator.places`):
        start its flush, sent without waiting; what gives, after the commit, what it read."""
        sent = _send_start(tx, task.payload["batch_id"])
        return lambda: _read(*sent)

    def start_directed(
        self, tx: Tx, payloads: list[Mapping[str, Any]]
    ) -> Callable[[Task], Started | None]:
        """In the transaction of a directed claim, before its claim (`TaskKind.start_ahead`):
        start the flushes of these payloads' batches, each only while its task is one the
        claim takes (`sql.START_DIRECTED_FLUSH`). Returns what gives, after the commit, what
        the start of a claimed task read."""
        sent = {
            payload["batch_id"]: _send_start(tx, payload["batch_id"], sql.START_DIRECTED_FLUSH)
            for payload in payloads
        }

        def read(task: Task) -> Started | None:
            started = sent.get(task.payload["batch_id"])
            return None if started is None else _read(*started)

        return read
