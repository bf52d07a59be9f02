"""Iterators: start, steer and run iterator jobs (the steps), and read their status."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from batchyard import payloads
from batchyard.clock import seconds, to_datetime
from batchyard.errors import Conflict, InvalidInput, LeaseLost, NotFound
from batchyard.failures import error_text, log_failure, traceback_text
from batchyard.iterator.errors import ErrorHistory
from batchyard.iterator.pacing import Pacing
from batchyard.iterator.records import (
    ACTIVE,
    IteratorState,
    IteratorStatus,
    Page,
    PageContext,
    as_page,
)
from batchyard.retry import RetryPolicy
from batchyard.store import Tx
from batchyard.store.filters import under_prefix
from batchyard.supervision import is_transient
from batchyard.tasks import Task, TaskKind

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

STEP_TASK = "iterator.step"
log = logging.getLogger("batchyard.iterator")
COMPLETE_TASK = "iterator.complete"
# a failed step is retried after 1 s, 2 s, 4 s ... at most 30 s, `max_retries` times
STEP_RETRY = RetryPolicy(base_delay=1.0, max_delay=30.0, jitter=0.0)
_WAIT_FOR_OLDER_STEP = 0.2
STEP_BUDGET = 1.0  # seconds of back-to-back pages in one task before it yields its slot


class Iterators:
    """Iterator jobs on one yard. Reached through `Yard` methods."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.errors = ErrorHistory(runtime.store)
        runtime.kinds.add(
            TaskKind(STEP_TASK, self.run_step), TaskKind(COMPLETE_TASK, self.run_complete)
        )

    def start(
        self,
        job_id: str,
        *,
        batch_size: int,
        get_next_batch: str | Callable[..., Any],
        process_batch: str | Callable[..., Any],
        on_complete: str | Callable[..., Any] | None = None,
        delay_between_batches: float = 0.1,
        max_retries: int = 5,
        transactional: bool = False,
        throttle: str | Callable[..., Any] | None = None,
        target_batch_seconds: float | None = None,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
    ) -> IteratorStatus:
        if not isinstance(job_id, str) or not job_id:
            raise InvalidInput("job_id must be a non-empty string", field="job_id")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInput("batch_size must be a positive integer", field="batch_size")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidInput("max_retries must be an integer >= 0", field="max_retries")
        delay = seconds(delay_between_batches)
        if delay < 0:
            raise InvalidInput("delay_between_batches must be >= 0", field="delay_between_batches")
        pacing = Pacing.checked(batch_size, target_batch_seconds, min_batch_size, max_batch_size)
        names = self.runtime.handlers
        params = {
            "job_id": job_id,
            "batch_size": batch_size,
            "delay": delay,
            "max_retries": max_retries,
            "transactional": int(bool(transactional)),
            "get_next_batch": names.name_of(get_next_batch, "get_next_batch"),
            "process_batch": names.name_of(process_batch, "process_batch"),
            "on_complete": None
            if on_complete is None
            else names.name_of(on_complete, "on_complete"),
            "throttle": None if throttle is None else names.name_of(throttle, "throttle"),
            "target": pacing.target_seconds,
            "min_size": pacing.min_size,
            "max_size": pacing.max_size,
        }
        with self.store.transaction(self.runtime.now()) as tx:
            inserted = tx.execute(
                "INSERT INTO batchyard_iterators (job_id, status, batch_size, get_next_batch, "
                "process_batch, on_complete, delay, max_retries, transactional, throttle, "
                "target_batch_seconds, min_batch_size, max_batch_size, started_at, "
                "updated_at) VALUES (:job_id, 'pending', :batch_size, :get_next_batch, "
                ":process_batch, :on_complete, :delay, :max_retries, :transactional, "
                ":throttle, :target, :min_size, :max_size, {now}, {now}) "
                "ON CONFLICT (job_id) DO NOTHING",
                params,
            ).rowcount
            if inserted != 1:
                raise Conflict(f"iterator job {job_id!r} already exists", job_id=job_id)
            self._schedule(tx, job_id, generation=1, delay=0.0)
        return self.status(job_id)

    def _schedule(self, tx: Tx, job_id: str, generation: int, delay: float) -> None:
        self.tasks.enqueue(
            tx,
            STEP_TASK,
            {"job_id": job_id, "generation": generation},
            delay=delay,
            key=f"{_step_keys(job_id)}{generation}",
            max_attempts=1_000_000,
        )  # the job counts its own retries

    # -- control ----------------------------------------------------------------------------

    def pause(self, job_id: str) -> IteratorStatus:
        return self._transition(
            job_id, ACTIVE, IteratorState.PAUSED, "pause", already={IteratorState.PAUSED}
        )

    def resume(self, job_id: str) -> IteratorStatus:
        return self._transition(
            job_id,
            {IteratorState.PAUSED, IteratorState.FAILED},
            IteratorState.RUNNING,
            "resume",
            already=ACTIVE,
        )

    def cancel(self, job_id: str) -> IteratorStatus:
        return self._transition(
            job_id,
            ACTIVE | {IteratorState.PAUSED, IteratorState.FAILED},
            IteratorState.CANCELLED,
            "cancel",
            already={IteratorState.CANCELLED},
        )

    def _transition(
        self,
        job_id: str,
        allowed: frozenset[IteratorState] | set[IteratorState],
        target: IteratorState,
        verb: str,
        already: frozenset[IteratorState] | set[IteratorState],
    ) -> IteratorStatus:
        with self.store.transaction(self.runtime.now()) as tx:
            row = self._row(tx, job_id, lock=True)
            if row["status"] in already:
                return self._status_of(row, tx.clock())  # pausing twice is not an error
            if row["status"] not in allowed:
                raise Conflict(
                    f"cannot {verb} iterator job {job_id!r}: it is {row['status']}",
                    job_id=job_id,
                    status=row["status"],
                )
            generation = int(row["generation"]) + 1
            tx.execute(
                "UPDATE batchyard_iterators SET status = :status, generation = :g, "
                "last_error = CASE WHEN :status = 'running' THEN NULL "
                "ELSE last_error END, last_traceback = CASE WHEN :status = 'running' "
                "THEN NULL ELSE last_traceback END, updated_at = {now} "
                "WHERE job_id = :job_id",
                {"job_id": job_id, "status": str(target), "g": generation},
            )
            # queued steps of older generations will find themselves stale; drop them now
            self.tasks.cancel_queued(tx, STEP_TASK, _step_keys(job_id))
            if target == IteratorState.RUNNING:
                self._schedule(tx, job_id, generation, delay=0.0)
            row = self._row(tx, job_id)
            return self._status_of(row, tx.clock())

    def delete(self, job_id: str) -> None:
        with self.store.transaction(self.runtime.now()) as tx:
            row = self._row(tx, job_id, lock=True)
            if row["status"] in ACTIVE:
                raise Conflict(
                    f"iterator job {job_id!r} is {row['status']}: pause or cancel "
                    "it before deleting",
                    job_id=job_id,
                )
            tx.execute("DELETE FROM batchyard_iterators WHERE job_id = :job_id", {"job_id": job_id})
            self.errors.forget(tx, job_id)

    # -- the step ---------------------------------------------------------------------------

    def run_step(self, task: Task) -> None:
        job_id, generation = task.payload["job_id"], task.payload["generation"]
        with self.store.transaction(self.runtime.now()) as tx:
            row = self._current(tx, job_id, generation)
            if row is None:
                self.tasks.complete(tx, task)  # stale: paused, cancelled or deleted since
                return
            if self._older_step_running(tx, job_id, task):
                # a pause and resume while a batch was in flight: that runner has lost the
                # cursor, but its handler call may still be going - wait it out, so the job
                # never has two handler calls at once
                self.tasks.postpone(tx, task, _WAIT_FOR_OLDER_STEP)
                return
            if row["status"] == IteratorState.PENDING:
                tx.execute(
                    "UPDATE batchyard_iterators SET status = 'running' WHERE job_id = :job_id",
                    {"job_id": job_id},
                )
        handlers = self.runtime.handlers
        cursor = None if row["cursor"] is None else orjson.loads(row["cursor"])
        batch = int(row["batches"])
        # pages follow one another in this task while there is no delay between them, up to
        # a time budget: no claim, no new task per page - only the fenced checkpoint
        budget = time.monotonic() + STEP_BUDGET
        pacing = Pacing.of(row)
        size = int(row["page_size"] or row["batch_size"])
        while True:
            context = PageContext(
                job_id=job_id,
                page=batch,
                attempt=task.attempts,
                idempotency_key=f"{job_id}:{batch}",
            )
            step_started = time.perf_counter()
            page_started = self.runtime.clock.time()  # the clock tests move, for page sizes
            try:
                if row["throttle"] is not None:
                    wait = _throttle_wait(handlers.call(row["throttle"], job_id), row["throttle"])
                    if wait:
                        self._throttled(task, job_id, generation, wait)
                        return
                page = as_page(handlers.call(row["get_next_batch"], cursor, size))
                cursor_text = _cursor_text(page.cursor, row["get_next_batch"])
                if page.items and not row["transactional"]:
                    handlers.call(row["process_batch"], page.items, context)
            except Exception as exc:
                if is_transient(exc):
                    raise  # the store is away, not the job at fault: the worker gives it back
                self._failed(task, row, exc, batch, time.perf_counter() - step_started)
                return
            finished = page.done or not page.items
            # a retried task hands over to a fresh one after its first good page, so that
            # its attempts never count against a later page
            more = (
                not finished
                and float(row["delay"]) == 0
                and task.attempts == 1
                and time.monotonic() < budget
            )
            try:
                with self.store.transaction(self.runtime.now()) as tx:
                    if more:
                        self.tasks.fence(tx, task)
                    else:
                        self.tasks.complete(tx, task)
                    if self._current(tx, job_id, generation, lock=True) is None:
                        if more:
                            self.tasks.complete(tx, task)
                        return  # paused or cancelled while the batch ran: drop the result
                    if page.items and row["transactional"]:
                        handlers.call(
                            row["process_batch"],
                            page.items,
                            PageContext(**{**context.__dict__, "tx": tx}),
                        )
                    if not finished:  # (a last page is short: it says nothing of the next)
                        size = pacing.next_size(size, self.runtime.clock.time() - page_started)
                    self._checkpoint(tx, row, page, cursor_text, size)
                    if finished:
                        self._finish(tx, row)
                    elif not more:
                        self._schedule(tx, job_id, generation, delay=float(row["delay"]))
            except Exception as exc:
                if row["transactional"] and not (isinstance(exc, LeaseLost) or is_transient(exc)):
                    self._failed(task, row, exc, batch, time.perf_counter() - step_started)
                    return
                raise
            if not more:
                return
            cursor, batch = page.cursor, batch + 1

    def _throttled(self, task: Task, job_id: str, generation: int, wait: float) -> None:
        """The throttle asked for a wait: the next page is a step `wait` seconds from now."""
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.complete(tx, task)
            if self._current(tx, job_id, generation, lock=True) is None:
                return  # paused or cancelled meanwhile
            tx.execute(
                "UPDATE batchyard_iterators SET throttled_seconds = throttled_seconds + :wait, "
                "updated_at = {now} WHERE job_id = :job_id",
                {"job_id": job_id, "wait": wait},
            )
            self._schedule(tx, job_id, generation, delay=wait)

    def _older_step_running(self, tx: Tx, job_id: str, task: Task) -> bool:
        """Another step of this job holds a live lease (an expired one is a dead runner)."""
        return self.tasks.running(tx, STEP_TASK, _step_keys(job_id), besides=task.id)

    def _checkpoint(self, tx: Tx, row: Any, page: Page, cursor_text: str, next_size: int) -> None:
        tx.execute(
            "UPDATE batchyard_iterators SET cursor = :cursor, processed = processed + :n, "
            "page_size = :size, "
            "batches = batches + 1, total = COALESCE(:total, total), last_error = NULL, "
            "last_traceback = NULL, "
            "updated_at = {now} WHERE job_id = :job_id",
            {
                "job_id": row["job_id"],
                "cursor": cursor_text,
                "size": next_size,
                "n": len(page.items),
                "total": page.total,
            },
        )

    def _finish(self, tx: Tx, row: Any) -> None:
        tx.execute(
            "UPDATE batchyard_iterators SET status = 'completed', completed_at = {now} "
            "WHERE job_id = :job_id",
            {"job_id": row["job_id"]},
        )
        if row["on_complete"] is not None:
            # durable: a task of its own, retried if the callback fails
            self.tasks.enqueue(
                tx,
                COMPLETE_TASK,
                {"job_id": row["job_id"]},
                key=f"iterator-complete:{row['job_id']}",
                max_attempts=5,
            )

    def _failed(self, task: Task, row: Any, exc: Exception, batch: int, duration: float) -> None:
        error = error_text(exc)
        delay = STEP_RETRY.next_delay(task.attempts, max_attempts=int(row["max_retries"]) + 1)
        final = delay is None
        with self.store.transaction(self.runtime.now()) as tx:
            if self._current(tx, row["job_id"], task.payload["generation"], lock=True) is None:
                self.tasks.complete(tx, task)
                return
            tx.execute(
                "UPDATE batchyard_iterators SET last_error = :error, "
                "last_traceback = :traceback, updated_at = {now} WHERE job_id = :job_id",
                {"job_id": row["job_id"], "error": error, "traceback": traceback_text(exc)},
            )
            self.errors.record(tx, row["job_id"], batch, task.attempts, final, error)
            if final:
                self.tasks.complete(tx, task)
                tx.execute(
                    "UPDATE batchyard_iterators SET status = 'failed' WHERE job_id = :job_id",
                    {"job_id": row["job_id"]},
                )
            else:
                self.tasks.retry(tx, task, error, delay or 0.0)
        # after the commit: the line says what the books say (retried, or failed)
        log_failure(
            log,
            f"step {batch} of iterator job {row['job_id']}",
            exc,
            final=final,
            job_id=row["job_id"],
            batch=batch,
            attempt=task.attempts,
            max_attempts=int(row["max_retries"]) + 1,
            handler=row["process_batch"],
            source=row["get_next_batch"],
            duration_seconds=round(duration, 6),
        )

    def run_complete(self, task: Task) -> None:
        with self.store.transaction(write=False) as tx:
            row = self._row(tx, task.payload["job_id"])
        self.runtime.handlers.call(row["on_complete"], row["job_id"], int(row["processed"]))
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.complete(tx, task)

    # -- reading ----------------------------------------------------------------------------

    def status(self, job_id: str) -> IteratorStatus:
        with self.store.transaction(self.runtime.now(), write=False) as tx:
            return self._status_of(self._row(tx, job_id), tx.clock())

    def list(
        self,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
        prefix: str | None = None,
    ) -> list[IteratorStatus]:
        with self.store.transaction(self.runtime.now(), write=False) as tx:
            now = tx.clock()
            rows = tx.all(
                "SELECT * FROM batchyard_iterators WHERE "
                f"(CAST(:status AS TEXT) IS NULL OR status = :status) AND {under_prefix('job_id')} "
                "ORDER BY updated_at DESC, job_id LIMIT :limit OFFSET :offset",
                {"status": status, "limit": limit, "offset": offset, "prefix": prefix},
            )
        return [self._status_of(row, now) for row in rows]

    def _row(self, tx: Tx, job_id: str, lock: bool = False) -> Any:
        row = tx.one(
            "SELECT * FROM batchyard_iterators WHERE job_id = :job_id"
            + (" {for_update}" if lock else ""),
            {"job_id": job_id},
        )
        if row is None:
            raise NotFound(f"no iterator job {job_id!r}", job_id=job_id)
        return row

    def _current(self, tx: Tx, job_id: str, generation: int, lock: bool = False) -> Any:
        """The job if this generation may still act on it, else None."""
        return tx.one(
            "SELECT * FROM batchyard_iterators WHERE job_id = :job_id "
            "AND generation = :g AND status IN ('pending', 'running')"
            + (" {for_update}" if lock else ""),
            {"job_id": job_id, "g": generation},
        )

    @staticmethod
    def _status_of(row: Any, now: float) -> IteratorStatus:
        end = row["completed_at"] or now
        elapsed = max(1e-9, end - row["started_at"])
        processed = int(row["processed"])
        rate = processed / elapsed if processed else None
        total = None if row["total"] is None else int(row["total"])
        eta = None
        if rate and total is not None and row["status"] in ACTIVE:
            eta = max(0.0, (total - processed) / rate)
        return IteratorStatus(
            job_id=row["job_id"],
            status=row["status"],
            processed=processed,
            batches=int(row["batches"]),
            cursor=None if row["cursor"] is None else orjson.loads(row["cursor"]),
            total=total,
            rate_per_second=rate,
            eta_seconds=eta,
            last_error=row["last_error"],
            started_at=to_datetime(row["started_at"]),
            updated_at=to_datetime(row["updated_at"]),
            completed_at=to_datetime(row["completed_at"]),
            last_traceback=row["last_traceback"],
            batch_size=int(row["page_size"] or row["batch_size"]),
            throttled_seconds=float(row["throttled_seconds"]),
            get_next_batch=row["get_next_batch"],
            process_batch=row["process_batch"],
        )


def _step_keys(job_id: str) -> str:
    """The prefix of every step key of this job and of no other job's: the id's length
    comes first, so that job "a"'s prefix is not also job "a:1"'s."""
    return f"iterator:{len(job_id)}:{job_id}:"


def _throttle_wait(value: Any, name: str) -> float:
    """What a throttle returned, as seconds to wait (0: go on)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise TypeError(
            f"throttle handler {name!r} must return None or seconds to wait, not {value!r}"
        )
    return float(value)


def _cursor_text(cursor: Any, source: str) -> str:
    """The cursor as the JSON it is kept as - checked before its page is handed over, so a
    cursor that would not read back equal (an integer past 64 bits, NaN, a datetime) fails
    that step with the reason, instead of every later step failing to read it."""
    try:
        return payloads.encode(cursor)
    except payloads.NotStorable as exc:
        raise InvalidInput(
            f"get_next_batch handler {source!r} returned a cursor that cannot be stored "
            f"exactly: {exc.at('cursor')}",
            field="cursor",
        ) from None
