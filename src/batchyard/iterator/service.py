"""Iterators: start and steer iterator jobs, and read their status (the steps that run
them are in `steps`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from batchyard import tracing
from batchyard.clock import seconds
from batchyard.errors import Conflict, InvalidInput, NotFound
from batchyard.iterator.errors import ErrorHistory
from batchyard.iterator.pacing import Pacing
from batchyard.iterator.reading import status_of
from batchyard.iterator.records import ACTIVE, IteratorState, IteratorStatus
from batchyard.iterator.slices import Slices, checked_parallelism
from batchyard.iterator.steps import COMPLETE_TASK, STEP_TASK, Steps, step_keys
from batchyard.store import Tx
from batchyard.store.filters import under_prefix
from batchyard.tasks import TaskKind

if TYPE_CHECKING:
    from batchyard.runtime import Runtime


class Iterators:
    """Iterator jobs on one yard. Reached through `Yard` methods."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.slices = Slices()
        self.errors = ErrorHistory(runtime.store)
        self.steps = Steps(runtime, self.slices, self.errors)
        runtime.kinds.add(
            TaskKind(STEP_TASK, tracing.traced("batchyard.iterator.step", self.steps.run_step)),
            TaskKind(COMPLETE_TASK, self.steps.run_complete),
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
        parallelism: int = 1,
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
        source = names.name_of(get_next_batch, "get_next_batch")
        params = {
            "job_id": job_id,
            "batch_size": batch_size,
            "delay": delay,
            "max_retries": max_retries,
            "transactional": int(bool(transactional)),
            "get_next_batch": source,
            "parallelism": checked_parallelism(self.runtime, parallelism, source),
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
                "target_batch_seconds, min_batch_size, max_batch_size, parallelism, "
                "started_at, updated_at) VALUES (:job_id, 'pending', :batch_size, "
                ":get_next_batch, :process_batch, :on_complete, :delay, :max_retries, "
                ":transactional, :throttle, :target, :min_size, :max_size, :parallelism, "
                "{now}, {now}) "
                "ON CONFLICT (job_id) DO NOTHING",
                params,
            ).rowcount
            if inserted != 1:
                raise Conflict(f"iterator job {job_id!r} already exists", job_id=job_id)
            self.steps.schedule(tx, job_id, 1, 0.0)
        return self.status(job_id)

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
                return self._status(tx, row, tx.clock())  # pausing twice is not an error
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
            self.tasks.cancel_queued(tx, STEP_TASK, step_keys(job_id))
            if target == IteratorState.RUNNING:
                self.steps.schedule_all(tx, job_id, generation)
            row = self._row(tx, job_id)
            return self._status(tx, row, tx.clock())

    def delete(self, job_id: str) -> None:
        with self.store.transaction(self.runtime.now()) as tx:
            row = self._row(tx, job_id, lock=True)
            if row["status"] in ACTIVE:
                raise Conflict(
                    f"iterator job {job_id!r} is {row['status']}: pause or cancel "
                    "it before deleting",
                    job_id=job_id,
                )
            self.slices.delete(tx, job_id)
            tx.execute("DELETE FROM batchyard_iterators WHERE job_id = :job_id", {"job_id": job_id})
            self.errors.forget(tx, job_id)

    # -- the step ---------------------------------------------------------------------------

    # -- reading ----------------------------------------------------------------------------

    def status(self, job_id: str) -> IteratorStatus:
        # the clock, the job and its slices sent at once: one round trip on PostgreSQL
        with self.store.transaction(self.runtime.now(), write=False, pipeline=True) as tx:
            clock = tx.clock_later()
            jobs = tx.later(
                "SELECT * FROM batchyard_iterators WHERE job_id = :job_id", {"job_id": job_id}
            )
            parts = self.slices.rows_later(tx, job_id)
        rows = jobs.all()
        if not rows:
            raise _not_found(job_id)
        now, slices = clock(), self.slices.statuses_of(parts.all())
        return status_of(rows[0], now, slices if int(rows[0]["parallelism"]) > 1 else ())

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
            return [self._status(tx, row, now) for row in rows]

    def _row(self, tx: Tx, job_id: str, lock: bool = False) -> Any:
        row = tx.one(
            "SELECT * FROM batchyard_iterators WHERE job_id = :job_id"
            + (" {for_update}" if lock else ""),
            {"job_id": job_id},
        )
        if row is None:
            raise _not_found(job_id)
        return row

    def _status(self, tx: Tx, row: Any, now: float) -> IteratorStatus:
        parallel = int(row["parallelism"]) > 1
        return status_of(row, now, self.slices.statuses(tx, row["job_id"]) if parallel else ())


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"no iterator job {job_id!r}", job_id=job_id)
