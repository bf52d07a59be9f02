"""Places: a worker slot that holds one of a limited handler's places keeps it across calls.

A handler limited to N calls at once has N places in the fleet. Handing a place over at the
end of a call (`batchyard.tasks.handoff`) still leaves a durable commit and a round trip
between two calls on one slot. Instead, a slot that holds a place (its flush runs, a
handler with a concurrency limit and no rate limit) claims the next flush for that place
*ahead*, while its call runs, and starts it then too (its items read); when the call
returns, the next call starts at once, and the end of the one before is written behind it
by another thread, in one transaction that also puts the next flush in the place and claims
the one after it ahead. The books:

- A flush claimed ahead is held by this worker (token, attempt, lease) but stays `queued`,
  due when its lease ends: not counted against the limit while the call before it holds the
  place, out of every claim's range while its lease is kept (the worker holds it, see
  `batchyard.tasks.leases`), rescued like any claimed task once it is not (a worker killed
  meanwhile), and never brought forward by an enqueue of its key.
- It becomes `running` only in the transaction that ends the task before it in that place
  (`TaskQueue.take_place`): the place changes hands, the count of running tasks stays the
  same, so the fleet never books more calls than the limit. The ending task's lease keeps
  the place meanwhile: its end is written while it is held, and the next call starts before
  that write commits only while every lease the worker holds is surely live
  (`Leases.surely_live`), so no other worker can have taken the place; else the end is
  written first.
- A flush claimed ahead that cannot start (its batch gone, done, dead or held back by its
  debounce) is given back at once; one whose place is not taken (the worker stops, the end
  before it fails) is given back with its attempt not counted, like any task a worker gives
  back (its batch's attempt number is skipped, as for a start given back).

Ordered successors are claimed ahead only once their predecessor is gone, as the claim
takes them: nothing is run before its turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING

from batchyard.accumulator.starting import FlushStarts
from batchyard.errors import LeaseLost
from batchyard.store import Tx
from batchyard.store.base import Rows
from batchyard.tasks import Task

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

log = logging.getLogger("batchyard.accumulator")


class Claim:
    """The claim ahead for one place: the flush it took (once its transaction committed),
    to be taken by the slot or given back."""

    def __init__(self, places: Places, claimed: Future[Task | None]) -> None:
        self._places = places
        self._claimed = claimed
        self._taken = False

    def take(self) -> Task | None:
        """The flush claimed ahead (waiting for the claim if it is under way), or None."""
        if self._taken:
            return None
        self._taken = True
        try:
            return self._claimed.result()
        except Exception as exc:  # a claim ahead that failed took nothing
            log.warning("a claim ahead for a place failed: %s", exc)
            return None

    def drop(self) -> None:
        """Give back what the claim took, unless the slot took it."""
        task = self.take()
        if task is not None:
            self._places.give_back(task)


class Places:
    """Claims ahead for the places that a worker's slots hold, and writes behind their calls."""

    def __init__(self, runtime: Runtime, starts: FlushStarts) -> None:
        self.runtime = runtime
        self.starts = starts

    def ahead(self, task: Task, handler: str) -> Claim | None:
        """The claim ahead for the place `task` holds, made while its call runs: the one made
        where `task` took the place, or a new one, behind the call - if the handler keeps
        places (a concurrency limit and no rate limit) and the worker hands over."""
        if task.place is not None:
            claim: Claim = task.place
            return claim
        limit = self.runtime.handlers.limit(handler)
        if (
            limit is None
            or limit.concurrency is None
            or limit.rate_count is not None
            or self.runtime.worker_id is None
            or not self.runtime.handing_over
        ):
            return None
        return Claim(self, self.runtime.leases.behind(lambda: self._claim(task, handler)))

    def _claim(self, holder: Task, handler: str) -> Task | None:
        with self.runtime.store.transaction(self.runtime.now(), pipeline=True) as tx:
            claimed = self.claim_in(tx, holder, handler)
        return claimed()

    def claim_in(self, tx: Tx, holder: Task, handler: str) -> Callable[[], Task | None]:
        """In `tx`: claim ahead the next flush of `handler` for the place `holder` holds,
        and start it. Returns what gives, after the commit, that flush (held by the worker,
        with what its start read), or None."""
        if self.runtime.worker_id is None or not self.runtime.handing_over:
            return lambda: None  # the worker stops: nothing more for this place
        rows = self.runtime.tasks.claim_ahead(
            tx, holder, self.runtime.worker_id, self.runtime.lease, handler
        )
        task = self.runtime.tasks.handed(rows)  # read now: its batch is started next
        if task is None:
            return lambda: None
        started = self.starts.start_ahead(tx, task)
        tx.after_commit.append(lambda: self.runtime.leases.keep(task))

        def committed() -> Task | None:
            batch, rows = started()
            if batch is None:  # nothing to start: not this place's to run
                self.give_back(task)
                return None
            return replace(task, ahead=(batch, rows))

        return committed

    def at_once(self) -> bool:
        """Whether the next call may start before the end of the one before is written."""
        return self.runtime.handing_over and self.runtime.leases.surely_live(self.runtime.lease)

    def take_in(self, tx: Tx, following: Task, ending: Task) -> Rows:
        """In the transaction that ends `ending`, before that end: `following`, claimed ahead
        for its place, takes it (see `claimed_in`)."""
        assert self.runtime.worker_id is not None
        return self.runtime.tasks.take_place(
            tx, following, ending, self.runtime.worker_id, self.runtime.lease
        )

    def claimed_in(
        self, tx: Tx, following: Task, taken: Rows, handler: str, running: bool
    ) -> Callable[[], Task | None]:
        """In that transaction, after the end: the next flush claimed ahead for the place
        `following` took (`taken`: `take_in`). Returns what gives, after the commit,
        `following` with that claim - or None, and `following` given back, when it did not
        take the place and its call has not started (`running`)."""
        claimed = self.claim_in(tx, following, handler)

        def committed() -> Task | None:
            done: Future[Task | None] = Future()
            done.set_result(claimed())
            if not running and not taken.all():
                Claim(self, done).drop()
                self.give_back(following)
                return None
            return replace(following, place=Claim(self, done))

        return committed

    def behind(self, ending: Task, following: Task, write: Callable[[], Task | None]) -> Task:
        """Write the end of `ending` (`write`: in which `following` takes its place, see
        `take_in`) behind the call of `following`, which starts now: `following`, with the
        claim that write makes ahead for it. `ending` stays held until it is written."""
        leases = self.runtime.leases
        leases.keep(ending)

        def run() -> Task | None:
            try:
                handed = write()
            except LeaseLost as exc:
                log.warning("stale outcome refused: %s", exc)
                return None
            except Exception:
                log.exception(
                    "the outcome of task %s (%s) could not be written; it runs again once "
                    "its lease expires",
                    ending.id,
                    ending.kind,
                )
                return None
            finally:
                leases.let_go(ending)
            claim = None if handed is None else handed.place
            return None if claim is None else claim.take()

        return replace(following, place=Claim(self, leases.behind(run)))

    def done(self, task: Task) -> None:
        """The run of `task` is over: a flush claimed ahead is no longer held for its claim,
        and what was claimed ahead for its place and not taken is given back."""
        if task.place is not None:
            task.place.drop()
            self.runtime.leases.let_go(task)

    def give_back(self, task: Task) -> None:
        """Give back a flush claimed ahead that will not run here, its attempt not counted."""
        try:
            self.runtime.tasks.release([task], self.runtime.now())
        except Exception as exc:  # it runs once its lease expires
            log.warning("could not give back task %s: %s", task.id, exc)
        finally:
            self.runtime.leases.let_go(task)
