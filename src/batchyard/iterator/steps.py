"""The steps of iterator jobs: each reads a page, hands it over, and moves the cursor.

A step is a task; it runs pages back to back within a time budget, each checkpointed in a
transaction fenced by the task's token and the job's generation, then schedules the next
step (after the job's delay, or the throttle's wait). A parallel job's steps are its
slices' (see `slices`); its first step cuts the source into them. A source that reads in a
transaction it is given (`PageReader`) has its next page read in the checkpoint's
transaction, where writers do not queue on one lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from batchyard import payloads
from batchyard.errors import InvalidInput, LeaseLost, NotFound
from batchyard.failures import error_text, log_failure, traceback_text
from batchyard.iterator.errors import ErrorHistory
from batchyard.iterator.pacing import Pacing
from batchyard.iterator.records import IteratorState, Page, PageContext, PageReader, as_page
from batchyard.iterator.slices import Slices, source_of
from batchyard.retry import RetryPolicy
from batchyard.store import Tx
from batchyard.supervision import is_transient
from batchyard.tasks import Task
from batchyard.throttling import throttle_wait

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

STEP_TASK = "iterator.step"
log = logging.getLogger("batchyard.iterator")
COMPLETE_TASK = "iterator.complete"
# a failed step is retried after 1 s, 2 s, 4 s ... at most 30 s, `max_retries` times
STEP_RETRY = RetryPolicy(base_delay=1.0, max_delay=30.0, jitter=0.0)
_WAIT_FOR_OLDER_STEP = 0.2
STEP_BUDGET = 1.0  # seconds of back-to-back pages in one task before it yields its slot


class Steps:
    """The step tasks of iterator jobs."""

    def __init__(self, runtime: Runtime, slices: Slices, errors: ErrorHistory) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.slices = slices
        self.errors = errors

    def schedule(
        self, tx: Tx, job_id: str, generation: int, delay: float, *slices: int | None
    ) -> None:
        """The next step of the job, or of each of the given slices of a parallel job."""
        self.tasks.enqueue_many(
            tx,
            STEP_TASK,
            [
                (
                    f"{step_keys(job_id, number)}{generation}",
                    {"job_id": job_id, "generation": generation}
                    | ({} if number is None else {"slice": number}),
                )
                for number in slices or (None,)
            ],
            delay=delay,
            max_attempts=1_000_000,
        )  # the job counts its own retries

    def schedule_all(self, tx: Tx, job_id: str, generation: int) -> None:
        """Steps for every slice with work left (of a job not cut yet: its first step)."""
        self.schedule(tx, job_id, generation, 0.0, *self.slices.unfinished(tx, job_id))

    # -- the step ---------------------------------------------------------------------------

    def run_step(self, task: Task) -> None:
        job_id, generation = task.payload["job_id"], task.payload["generation"]
        number: int | None = task.payload.get("slice")  # of a parallel job's slice
        with self.store.transaction(self.runtime.now()) as tx:
            row = self.current(tx, job_id, generation)
            part = None
            if row is not None and number is not None:
                part = self.slices.running(tx, job_id, number)
            if row is None or (number is not None and part is None):
                self.tasks.complete(tx, task)  # stale: paused, cancelled or deleted since
                return
            if self._older_step_running(tx, job_id, task, number):
                # a pause and resume while a batch was in flight: that runner has lost the
                # cursor, but its handler call may still be going - wait it out, so the job
                # (or the slice) never has two handler calls at once
                self.tasks.postpone(tx, task, _WAIT_FOR_OLDER_STEP)
                return
            if row["status"] == IteratorState.PENDING:
                tx.execute(
                    "UPDATE batchyard_iterators SET status = 'running' WHERE job_id = :job_id",
                    {"job_id": job_id},
                )
        if number is None and int(row["parallelism"]) > 1:
            self._cut(task, row)
            return
        handlers = self.runtime.handlers
        books = row if part is None else part  # where the cursor and the counts are kept
        cursor = None if books["cursor"] is None else orjson.loads(books["cursor"])
        batch = int(books["batches"])
        split_wanted = part is not None and bool(part["split_wanted"])
        # pages follow one another in this task while there is no delay between them, up to
        # a time budget: no claim, no new task per page - only the fenced checkpoint
        budget = time.monotonic() + STEP_BUDGET
        pacing = Pacing.of(row)
        size = int(books["page_size"] or row["batch_size"])
        # A source of the store's own tables reads each next page in the transaction that
        # checkpoints the page before: one transaction a page, not two. Not where writers
        # queue on one lock (the read would hold it), nor for a transactional job (its
        # handler writes in that transaction, which is then not pipelined).
        source = handlers.get(row["get_next_batch"])
        reader = (
            source
            if isinstance(source, PageReader)
            and not row["transactional"]
            and not self.store.single_writer
            else None
        )
        ahead: Callable[[], Any] | None = None  # the next page, read with the last checkpoint
        while True:
            context = PageContext(
                job_id=job_id,
                page=batch,
                attempt=task.attempts,
                idempotency_key=f"{job_id}:{batch}"
                if number is None
                else f"{job_id}:{number}:{batch}",
                slice=number,
            )
            step_started = time.perf_counter()
            if ahead is None:  # (a page read ahead was started with the checkpoint before it)
                page_started = self.runtime.clock.time()  # the clock tests move, for page sizes
            try:
                if split_wanted and number is not None:
                    cursor = self._split(task, row, number, cursor)
                    if cursor is None:
                        return  # paused or cancelled meanwhile
                    split_wanted = False
                if row["throttle"] is not None:
                    wait = throttle_wait(handlers, row["throttle"], job_id)
                    if wait:
                        self._throttled(task, job_id, generation, wait, number)
                        return
                if ahead is None:
                    page = as_page(handlers.call(row["get_next_batch"], cursor, size))
                else:
                    page, ahead = as_page(ahead()), None
                cursor_text = _cursor_text(page.cursor, row["get_next_batch"])
                if page.items and not row["transactional"]:
                    handlers.call(row["process_batch"], page.items, context)
            except Exception as exc:
                if is_transient(exc) or isinstance(exc, LeaseLost):
                    raise  # the store is away, or another runner has the step: not the job's fault
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
            # a slice's page holds the job row shared, so pages of other slices commit
            # alongside; a page that ends the job (or a slice) holds it alone
            lock = "{for_update}" if number is None or finished else "{for_share}"
            checkpointed = None
            reading_started = self.runtime.clock.time()
            while True:  # twice only when the read of the next page failed the transaction
                reading = False
                try:
                    # pipelined: its statements go out together, and it waits for results
                    # only where it reads the next page and at its commit
                    with self.store.transaction(
                        self.runtime.now(), pipeline=not row["transactional"]
                    ) as tx:
                        if more:
                            self.tasks.fence(tx, task)
                        else:
                            self.tasks.complete(tx, task)
                        # paused or cancelled while the batch ran: the result is dropped
                        tx.require(_CURRENT + lock, {"job_id": job_id, "g": generation}, _Stale())
                        if page.items and row["transactional"]:
                            handlers.call(
                                row["process_batch"],
                                page.items,
                                PageContext(**{**context.__dict__, "tx": tx}),
                            )
                        if not finished:  # (a last page is short: it says nothing of the next)
                            size = pacing.next_size(size, self.runtime.clock.time() - page_started)
                        if number is None:
                            self._checkpoint(tx, row, page, cursor_text, size)
                        else:
                            checkpointed = self.slices.checkpoint(
                                tx, job_id, number, cursor_text, len(page.items), size
                            )
                        if finished:
                            if number is None or self.slices.finish(tx, row, number):
                                self._finish(tx, row)
                        elif not more:
                            self.schedule(tx, job_id, generation, float(row["delay"]), number)
                        elif reader is not None:
                            reading = True
                            ahead = reader.read(tx, page.cursor, size)
                    break
                except _Stale:
                    with self.store.transaction(self.runtime.now()) as tx:
                        self.tasks.complete(tx, task)
                    return
                except Exception as exc:
                    if isinstance(exc, LeaseLost) or is_transient(exc):
                        raise
                    if reading:
                        # the next page's read, not this checkpoint, failed: checkpoint again
                        # without it, and let that page's own read fail (or not) as its own
                        reader, ahead = None, None
                        continue
                    if row["transactional"]:
                        self._failed(task, row, exc, batch, time.perf_counter() - step_started)
                        return
                    raise
            if checkpointed is not None and self.slices.asked_to_split(checkpointed):
                split_wanted, ahead = True, None  # the split moves the cursor's bound
            page_started = reading_started
            if not more:
                return
            cursor, batch = page.cursor, batch + 1

    def _cut(self, task: Task, row: Any) -> None:
        """The first step of a parallel job: cut the source into slices and start them."""
        started = time.perf_counter()
        try:
            source = source_of(self.runtime, row["get_next_batch"])
            parts = [
                (_cursor_text(cursor, row["get_next_batch"]), count)
                for cursor, count in source.slice(None, int(row["parallelism"]))
            ]
        except Exception as exc:
            if is_transient(exc):
                raise
            self._failed(task, row, exc, 0, time.perf_counter() - started)
            return
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.complete(tx, task)
            generation = task.payload["generation"]
            if self.current(tx, row["job_id"], generation, "{for_update}") is None:
                return  # paused or cancelled meanwhile
            if not parts:  # nothing to do: an empty source
                tx.execute(
                    "UPDATE batchyard_iterators SET total = 0 WHERE job_id = :job_id",
                    {"job_id": row["job_id"]},
                )
                self._finish(tx, row)
                return
            numbers = self.slices.create(tx, row["job_id"], parts)
            self.schedule(tx, row["job_id"], generation, 0.0, *numbers)

    def _split(self, task: Task, row: Any, number: int, cursor: Any) -> Any:
        """Other slices ran out and asked this one to split: keep the lowest part of what is
        left, hand the others to new slices. The cursor to go on from (None: the job was
        paused or cancelled meanwhile)."""
        generation = task.payload["generation"]
        with self.store.transaction(write=False) as tx:
            part = self.slices.running(tx, row["job_id"], number)
        wanted = 0 if part is None else int(part["split_wanted"])
        source = source_of(self.runtime, row["get_next_batch"])
        parts = [
            (_cursor_text(piece, row["get_next_batch"]), count)
            for piece, count in source.slice(cursor, wanted + 1)
        ]
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.fence(tx, task)  # only this slice's runner moves its cursor
            # alone on the job row: the new slices are numbered after the highest, and two
            # splits at once would both take the same numbers
            if self.current(tx, row["job_id"], generation, "{for_update}") is None:
                return None
            if len(parts) < 2:
                self.slices.decline(tx, row["job_id"], number)
                return cursor
            new = self.slices.split(tx, row["job_id"], number, parts, wanted)
            self.schedule(tx, row["job_id"], generation, 0.0, *new)
        return orjson.loads(parts[0][0])

    def _throttled(
        self, task: Task, job_id: str, generation: int, wait: float, number: int | None
    ) -> None:
        """The throttle asked for a wait: the next page is a step `wait` seconds from now."""
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.complete(tx, task)
            if self.current(tx, job_id, generation, "{for_update}") is None:
                return  # paused or cancelled meanwhile
            tx.execute(
                "UPDATE batchyard_iterators SET throttled_seconds = throttled_seconds + :wait, "
                "updated_at = {now} WHERE job_id = :job_id",
                {"job_id": job_id, "wait": wait},
            )
            self.schedule(tx, job_id, generation, wait, number)

    def _older_step_running(self, tx: Tx, job_id: str, task: Task, number: int | None) -> bool:
        """Another step of this job (or slice) holds a live lease (an expired one is a dead
        runner's)."""
        return self.tasks.running(tx, STEP_TASK, step_keys(job_id, number), besides=task.id)

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
            if self.current(tx, row["job_id"], task.payload["generation"], "{for_update}") is None:
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
            row = tx.one(
                "SELECT * FROM batchyard_iterators WHERE job_id = :job_id",
                {"job_id": task.payload["job_id"]},
            )
        if row is None:
            raise NotFound(f"no iterator job {task.payload['job_id']!r}")
        self.runtime.handlers.call(row["on_complete"], row["job_id"], int(row["processed"]))
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.complete(tx, task)

    def current(self, tx: Tx, job_id: str, generation: int, lock: str = "") -> Any:
        """The job if this generation may still act on it, else None; `lock` is how its row
        is held until the commit ("{for_update}", "{for_share}" or not at all)."""
        return tx.one(
            "SELECT * FROM batchyard_iterators" + _CURRENT_WHERE + lock,
            {"job_id": job_id, "g": generation},
        )


class _Stale(Exception):
    """The job was paused, cancelled or deleted since the step read it."""


_CURRENT_WHERE = " WHERE job_id = :job_id AND generation = :g AND status IN ('pending', 'running') "
# the job's row if this generation may still act on it (as `Steps.current`, for `Tx.require`)
_CURRENT = "SELECT job_id FROM batchyard_iterators" + _CURRENT_WHERE


def step_keys(job_id: str, number: int | None = None) -> str:
    """The prefix of every step key of this job and of no other job's: the id's length
    comes first, so that job "a"'s prefix is not also job "a:1"'s. With `number`, of that
    slice's steps only."""
    job = f"iterator:{len(job_id)}:{job_id}:"
    return job if number is None else f"{job}s{number}:"


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
