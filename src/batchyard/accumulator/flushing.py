"""Flushing: closing a batch, running its flush task, recording the outcome, dead letters.

Each batch has one flush task, keyed by its id, so a size trigger racing the timer still
gives one flush. A flush's outcome is written under the task's fencing token: a stale
runner's result is refused, which keeps the books exact however often a handler is called.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from batchyard import metrics, tracing
from batchyard.accumulator import sql
from batchyard.accumulator.places import Places
from batchyard.accumulator.recording import Ending, Recorder, outcome_of
from batchyard.accumulator.records import (
    FLUSH_TASK,
    BatchStatus,
    FlushContext,
    FlushReason,
    FlushResult,
    split_base,
)
from batchyard.accumulator.starting import FlushStarts
from batchyard.errors import Conflict, NotFound
from batchyard.failures import error_text, log_failure, traceback_text
from batchyard.signals import ItemFailures
from batchyard.store import Tx
from batchyard.tasks import Task, TaskKind, TaskQueue
from batchyard.tasks.queue import Queued

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

log = logging.getLogger("batchyard.accumulator")


def flush_task(batch_id: str, ordered: bool) -> Queued:
    """A batch's flush task, keyed by the batch id (one per batch). In an ordered base it
    waits for the flush task of the batch before, which waits for its own: the claim hands
    the batches over one after another, each once the one before completed or was
    discarded (a dead one holds the rest until it is redriven and completes, or discarded)."""
    base, sequence = split_base(batch_id)
    after = f"flush:{base}::{sequence - 1}" if ordered and sequence else None
    return (f"flush:{batch_id}", {"batch_id": batch_id}, after)


def schedule_flush(
    tasks: TaskQueue,
    tx: Tx,
    batch: Mapping[str, Any],
    delay: float = 0.0,
) -> None:
    """Queue the flush task of `batch` (its id, handler, max attempts and whether its base
    is ordered); the task keeps its handler's limits."""
    tasks.enqueue_many(
        tx,
        FLUSH_TASK,
        [flush_task(batch["batch_id"], bool(batch["ordered"]))],
        delay=delay,
        max_attempts=batch["max_attempts"],
        handler=batch["handler"],
    )


def _open_batch(tx: Tx, base: str) -> dict[str, Any] | None:
    row = tx.one(sql.LOCK_OPEN_BATCH, {"base": base})
    return None if row is None else dict(row)


class Flusher:
    """Closes batches, runs their flushes and keeps their books. The worker runs its task
    kind; `Yard.flush`, `trigger_interval_flushes` and `redrive_batch` reach it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.starts = FlushStarts(self.store, self.tasks)
        self.places = Places(runtime, self.starts)
        self.recorder = Recorder(runtime, self.starts, self.places)
        runtime.kinds.add(
            TaskKind(
                FLUSH_TASK,
                self.run_flush,
                on_dead=self.on_dead_flush,
                start_ahead=self.starts.start_directed,
            )
        )

    def flush(self, batch_id: str, reason: FlushReason = FlushReason.MANUAL) -> FlushResult:
        """Close a batch (the open batch of a base id, or a batch id) and flush it now."""
        base, sequence = split_base(batch_id)
        with self.store.transaction(self.runtime.now()) as tx:
            if sequence is None:
                row = _open_batch(tx, base)
                if row is None:
                    return FlushResult(
                        batch_id=None,
                        item_count=0,
                        flushed=False,
                        status=None,
                        reason="no accumulating batch",
                    )
                batch_id = row["batch_id"]
            batch = self.close(tx, batch_id, reason)
            if batch is None:
                raise NotFound(f"no batch {batch_id!r}", batch_id=batch_id)
            if batch["status"] != BatchStatus.FLUSHING:
                return FlushResult(
                    batch_id=batch_id,
                    item_count=batch["item_count"],
                    flushed=False,
                    status=batch["status"],
                    reason=f"batch is {batch['status']}",
                )
            schedule_flush(self.tasks, tx, batch)
            return FlushResult(
                batch_id=batch_id,
                item_count=batch["item_count"],
                flushed=True,
                status=BatchStatus.FLUSHING,
                reason=batch["flush_reason"],
            )

    def trigger_interval_flushes(self) -> list[str]:
        """Close and schedule every batch whose interval, or idle time, has passed (for
        cron-driven use); return their ids. `run_worker(wait=False)` then runs the flushes."""
        interval_passed = "flush_interval IS NOT NULL AND created_at + flush_interval <= {now}"
        with self.store.transaction(self.runtime.now()) as tx:
            due = tx.all(
                "SELECT batch_id, max_attempts, handler, ordered, "
                f"CASE WHEN {interval_passed} THEN 'interval' ELSE 'idle' END AS reason "
                "FROM batchyard_batches "
                f"WHERE status = 'accumulating' AND ({interval_passed} OR {sql.IDLE_PASSED}) "
                "ORDER BY created_at"
            )
            for row in due:
                self.close(tx, row["batch_id"], row["reason"])
                schedule_flush(self.tasks, tx, row)
        return [row["batch_id"] for row in due]

    def close(self, tx: Tx, batch_id: str, reason: str) -> Any:
        """Close an accumulating batch for `reason` (the caller schedules its flush); the
        batch's row as it is then (None when there is no such batch)."""
        tx.execute(
            "UPDATE batchyard_batches SET status = 'flushing', flush_reason = :reason, "
            "flush_requested_at = {now}, updated_at = {now} "
            "WHERE batch_id = :batch_id AND status = 'accumulating'",
            {"batch_id": batch_id, "reason": str(reason)},
        )
        return tx.one(
            f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b WHERE b.batch_id = :batch_id",
            {"batch_id": batch_id},
        )

    # -- the flush task -------------------------------------------------------------------

    def run_flush(self, task: Task) -> Task | None:
        """Run one attempt of a batch's flush (the worker calls this for FLUSH_TASK); the
        task its end handed over to run next on the same slot, if any (see `recording`)."""
        try:
            return self._run_flush(task)
        finally:
            self.places.done(task)

    def _run_flush(self, task: Task) -> Task | None:
        batch_id = task.payload["batch_id"]
        if task.attempts > task.max_attempts:
            # every attempt so far died with its worker: stop, or a poison batch loops forever
            self._give_up(
                task,
                f"gave up after {task.max_attempts} attempts whose worker "
                f"was lost (last error: {task.last_error})",
            )
            return None
        batch, rows = self.starts.start(task, self.runtime.now())
        if batch is None:
            held = self._hold_back(task)
            if held is not None:
                # closed, or its idle time passed, since: flush it after all
                return None if held else self._run_flush(task)
            # deleted, completed or dead: nothing to do (a task may wait for this one)
            with self.store.transaction(self.runtime.now(), pipeline=True) as tx:
                self.tasks.complete(tx, task, release=True)
                self.store.notify_work(tx)
            return None
        if not rows:  # every item already delivered (a partial flush's last retry raced)
            with self.store.transaction(self.runtime.now(), pipeline=True) as tx:
                self.tasks.complete(tx, task, release=True)
                self.recorder.finish(tx, batch_id)
                self.store.notify_work(tx)
            return None
        context = FlushContext(
            batch_id=batch_id,
            base_id=batch["base_id"],
            sequence=int(batch["sequence"]),
            attempt=int(batch["attempts"]),
            idempotency_key=batch["idempotency_key"],
            reason=batch["flush_reason"],
        )
        attributes = {
            "batchyard.batch_id": batch_id,
            "batchyard.base": context.base_id,
            "batchyard.sequence": context.sequence,
            "batchyard.attempt": context.attempt,
            "batchyard.item_count": len(rows),
            "batchyard.reason": context.reason,
        }
        # a span of its own trace, linked to the adds of the items it delivers
        links = (row["trace_context"] for row in rows)
        with tracing.span("batchyard.flush", attributes, links) as span:
            return self._deliver(task, batch, context, rows, span)

    def _deliver(
        self, task: Task, batch: Any, context: FlushContext, rows: list[Any], span: Any
    ) -> Task | None:
        """Call the handler with the pending items, record the outcome, log a failure; the
        task handed over by the recording, if any."""
        batch_id = context.batch_id
        items = [orjson.loads(row["payload"]) for row in rows]
        # the next flush for the place this one holds, if any, is claimed while it runs
        claim = self.places.ahead(task, batch["handler"])
        started_wall, started = self.runtime.clock.time(), time.perf_counter()
        failures: dict[int, str] = {}
        error: str | None = None
        raised: Exception | None = None
        try:
            self.runtime.handlers.call(batch["handler"], items, context)
        except ItemFailures as signal:
            raised = signal
            bad = [i for i in signal.failures if not 0 <= i < len(items)]
            if bad:
                error = f"ItemFailures named indexes outside the batch: {bad}"
            else:
                failures = signal.failures
                error = f"{len(failures)} of {len(items)} items failed"
        except Exception as exc:
            raised = exc
            error = error_text(exc)
        duration = time.perf_counter() - started
        outcome = outcome_of(error, failures)
        delay = (
            None
            if outcome == "completed"
            else self.runtime.retry.next_delay(task.attempts, max_attempts=task.max_attempts)
        )
        dead = outcome != "completed" and delay is None
        tracing.record_outcome(span, outcome, raised, **{"batchyard.dead": dead})

        def recorded() -> None:
            delivered = 0 if error is not None and not failures else len(rows) - len(failures)
            metrics.flush_recorded(context.reason, outcome, delivered, duration)
            if raised is not None:
                # after the commit: the line says what the books say (retried, or dead)
                log_failure(
                    log,
                    f"flush of {batch_id}",
                    raised,
                    final=dead,
                    batch_id=batch_id,
                    attempt=context.attempt,
                    max_attempts=task.max_attempts,
                    handler=batch["handler"],
                    duration_seconds=round(duration, 6),
                )

        traceback = None if raised is None else traceback_text(raised)
        ending = Ending(task, batch, context, rows, failures, error, traceback, delay)
        following = None if claim is None else claim.take()
        if following is not None and self.places.at_once():
            # the next call starts now; this end is written behind it, then logged
            def write() -> Task | None:
                handed = self.recorder.write(ending, started_wall, duration, following, True)
                recorded()
                return handed

            return self.places.behind(task, following, write)
        try:
            handed = self.recorder.write(ending, started_wall, duration, following)
        except BaseException:
            if following is not None:  # not in its place: it runs elsewhere, later
                self.places.give_back(following)
            raise
        recorded()
        return handed

    def _hold_back(self, task: Task) -> bool | None:
        """A flush task found its batch open and held back by its debounce (an item came
        within its flush_after_idle): it waits again, until that long after the last add or
        the batch's longest wait (flush_interval), whichever comes first - not an attempt.
        True when it does; False when the batch is to be flushed now after all (closed, or
        its idle time passed, since); None when there is no batch to flush. The batch's row
        is locked meanwhile: an add that closes it waits, then brings the task forward."""
        with self.store.transaction(self.runtime.now()) as tx:
            row = tx.one(sql.IDLE_WAIT, {"batch_id": task.payload["batch_id"]})
            if row is None or row["status"] not in (BatchStatus.ACCUMULATING, BatchStatus.FLUSHING):
                return None
            if row["status"] == BatchStatus.FLUSHING or not row["waiting"]:
                return False
            self.tasks.postpone(tx, task, max(0.0, float(row["wait"])))
            return True

    def _give_up(self, task: Task, error: str) -> None:
        log.error(
            "flush of %s is dead: %s",
            task.payload["batch_id"],
            error,
            extra={
                "batch_id": task.payload["batch_id"],
                "attempt": task.attempts,
                "max_attempts": task.max_attempts,
                "final": True,
            },
        )
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.dead_letter(tx, task, error)
            self.on_dead_flush(tx, task, error)

    def on_dead_flush(self, tx: Tx, task: Task, error: str) -> None:
        """The books of a flush task that went to the dead letters other than by its own
        recording (the worker's failure path: an exception in the runner, an undecodable
        item; or workers lost on every attempt): its batch is dead, listed among the dead
        batches, with the error in its history - never left `flushing` with no task."""
        params = {
            "batch_id": task.payload["batch_id"],
            "error": error,
            "worker_id": self.runtime.worker_id,
        }
        moved = tx.execute(
            "UPDATE batchyard_batches SET status = 'dead', last_error = :error, "
            "updated_at = {now} WHERE batch_id = :batch_id "
            "AND status = 'flushing'",
            params,
        ).rowcount
        if moved:
            tx.execute(
                sql.RECORD_DEAD_FLUSH,
                params,
            )

    # -- dead letters ---------------------------------------------------------------------

    def redrive_batch(self, batch_id: str) -> FlushResult:
        """Flush a dead batch again, with a fresh set of attempts."""
        split_base(batch_id)
        with self.store.transaction(self.runtime.now()) as tx:
            batch = tx.one(
                f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b WHERE b.batch_id = :batch_id",
                {"batch_id": batch_id},
            )
            if batch is None:
                raise NotFound(f"no batch {batch_id!r}", batch_id=batch_id)
            if batch["status"] != BatchStatus.DEAD:
                raise Conflict(
                    f"batch {batch_id!r} is {batch['status']}, not dead", batch_id=batch_id
                )
            tx.execute(
                "UPDATE batchyard_batches SET status = 'flushing', "
                "flush_reason = 'redrive', updated_at = {now} "
                "WHERE batch_id = :batch_id",
                {"batch_id": batch_id},
            )
            self.tasks.redrive(tx, key=f"flush:{batch_id}")
        return FlushResult(
            batch_id=batch_id,
            item_count=batch["pending_count"],
            flushed=True,
            status=BatchStatus.FLUSHING,
            reason=FlushReason.REDRIVE,
        )

    # -- reading --------------------------------------------------------------------------
