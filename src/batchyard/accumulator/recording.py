"""Recording a flush attempt: its outcome written under its task's token, in one pipelined
transaction that also gives the slot its next flush - a hand-off (`batchyard.tasks.handoff`)
or the flush claimed ahead for its place (`places`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchyard.accumulator import sql
from batchyard.accumulator.places import Places
from batchyard.accumulator.records import FlushContext
from batchyard.accumulator.starting import FlushStarts
from batchyard.store import Tx
from batchyard.tasks import Task

if TYPE_CHECKING:
    from batchyard.runtime import Runtime


@dataclass(frozen=True)
class Ending:
    """One flush attempt's outcome, to be written: the task and its batch, the items it
    delivered, those that failed, the error and its traceback, and the retry's delay (None
    when the attempt completed or was the last)."""

    task: Task
    batch: Any
    context: FlushContext
    rows: list[Any]
    failures: dict[int, str]
    error: str | None
    traceback: str | None
    delay: float | None


def _next_batch(context: FlushContext) -> str:
    return f"{context.base_id}::{context.sequence + 1}"


def outcome_of(error: str | None, failures: dict[int, str]) -> str:
    """A flush attempt's outcome: failed as a whole, partly, or completed."""
    if error is not None and not failures:
        return "failed"
    return "partial" if failures else "completed"


class Recorder:
    """Writes the outcomes of flush attempts (`Flusher` runs them)."""

    def __init__(self, runtime: Runtime, starts: FlushStarts, places: Places) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.starts = starts
        self.places = places

    def write(
        self,
        ending: Ending,
        started: float,
        duration: float,
        following: Task | None,
        running: bool = False,
    ) -> Task | None:
        """Write the attempt's outcome; the task this end handed over to run next on the
        same slot, if any.

        The end of a flush may make another runnable: the next batch of its ordered base
        (once it completed), a place under its handler's limits (whatever the outcome).
        The same pipelined transaction brings that one forward and claims it for this
        worker (see `batchyard.tasks.handoff`), so that it starts at once instead of at
        the claim loop's next turn; the other workers are woken only for what is left. A
        flush claimed ahead for this one's place (`following`, see `places`) takes the
        place instead (`running`: its call has started already), and the one after it is
        claimed ahead - or, the worker stopping before it started, it is given back."""
        task, batch, context, rows = ending.task, ending.batch, ending.context, ending.rows
        failures, error, delay = ending.failures, ending.error, ending.delay
        whole_failure = error is not None and not failures
        outcome = outcome_of(error, failures)
        dead = outcome != "completed" and delay is None
        waited = outcome == "completed" and bool(batch["ordered"])
        limited = batch["handler"] if self.runtime.handlers.limited(batch["handler"]) else None
        # one round trip (two for a place handed over, whose claim is read to start it):
        # the task's write is fenced by its token with `Tx.require`, which fails the whole
        # pipelined transaction (rolled back) when the token is stale
        with self.store.transaction(self.runtime.now(), pipeline=True) as tx:
            batch_id = context.batch_id
            worker_id = self.runtime.worker_id if self.runtime.handing_over else None
            handing = taken = None
            if following is not None and (running or worker_id is not None):
                taken = self.places.take_in(tx, following, task)
            elif following is not None:  # the worker stops before it started: given back
                self.tasks.give_back(tx, [following])
                tx.after_commit.append(lambda: self.runtime.leases.let_go(following))
            elif limited and worker_id is not None:
                handing = self.tasks.hand_over_place(
                    tx, task, worker_id, self.runtime.lease, limited
                )
            if outcome == "completed":
                self.tasks.complete(tx, task, release=waited)
                if waited and not limited and worker_id is not None:
                    handing = self.tasks.hand_over_next(tx, task, worker_id, self.runtime.lease)
            elif dead:
                self.tasks.dead_letter(tx, task, error or "")
            else:
                self.tasks.retry(tx, task, error or "", delay or 0.0)
            if not whole_failure:
                # what is still pending is exactly what this attempt reported failed; only
                # an attempt before this one can have left failures to forget (a batch's
                # attempts count on across a redrive)
                if context.attempt > 1:
                    tx.execute(
                        "DELETE FROM batchyard_item_failures WHERE batch_no = :batch_no",
                        {"batch_no": batch["batch_no"]},
                    )
                if failures:
                    tx.executemany(
                        "INSERT INTO batchyard_item_failures (batch_no, position, error) "
                        "VALUES (:batch_no, :position, :error)",
                        [
                            {
                                "batch_no": batch["batch_no"],
                                "position": rows[i]["position"],
                                "error": msg,
                            }
                            for i, msg in sorted(failures.items())
                        ],
                    )
            tx.execute(
                sql.RECORD_FLUSH,
                {
                    "batch_id": batch_id,
                    "base_id": context.base_id,
                    "sequence": context.sequence,
                    "attempt": context.attempt,
                    "reason": context.reason,
                    "outcome": outcome,
                    "item_count": len(rows),
                    "failed_count": len(rows) if whole_failure else len(failures),
                    "error": error,
                    "worker_id": self.runtime.worker_id,
                    "started": started,
                    "duration": duration,
                    "traceback": ending.traceback,
                },
            )
            if waited or limited:
                # what the hand-off left to take: the workers are woken now, not at their
                # next poll (a statement more in the pipeline, no round trip)
                self.tasks.wake_others(tx, task, completed=waited, handler=limited)
            if outcome == "completed":
                self.finish(tx, batch_id)
            else:
                tx.execute(
                    "UPDATE batchyard_batches SET last_error = :error, updated_at = {now}"
                    + (", status = 'dead'" if dead else "")
                    + " WHERE batch_id = :batch_id",
                    {"batch_id": batch_id, "error": error},
                )
            if following is not None and taken is not None:
                handed = self.places.claimed_in(tx, following, taken, batch["handler"], running)
            else:
                handed = self.starts.start_handed(
                    tx,
                    handing,
                    self.runtime.worker_id,
                    _next_batch(context) if waited and not limited else None,
                )
        return handed()

    def finish(self, tx: Tx, batch_id: str) -> None:
        tx.execute(
            "UPDATE batchyard_batches SET status = 'completed', "
            "last_error = NULL, completed_at = {now}, updated_at = {now} "
            "WHERE batch_id = :batch_id",
            {"batch_id": batch_id},
        )
