"""Directed claims: tasks that this process queued for now go to its idle worker by key.

An add that closes batches for their size queues their flush tasks, and its commit wakes
the workers - those of this process at once, others by NOTIFY. Left to the claim loop, the
woken worker pays two commits before the handler runs: the claim, then the flush's start.
Instead the enqueue *announces* the tasks it queued to the workers of this process
(`Directed.announce`, heard after the commit and only while a worker listens), and a woken
worker with a free thread claims those tasks by their keys and starts their runs in the same
pipelined transaction (`Directed.claim`): one round trip and one commit from the wake-up to
the handler.

- A directed claim takes only what the claim would take (`sql.claimable`): a task still
  queued and due (so not parked), of no limited handler (the limited claim counts those),
  and waiting for no other (an ordered successor is handed over at its predecessor's end,
  `handoff`). It sets the state, attempt, fencing token and lease as every claim does.
- The start of each run (`TaskKind.start_ahead`) is sent before the claim, on the same
  condition (`sql.directed`), with the task's row locked - skipped when another worker's
  claim holds it: a run is started only for a task that the claim then takes. (On
  PostgreSQL each statement reads the handlers' limits anew: a limit published between the
  two leaves a start without its claim - one attempt of the batch counted and never made,
  no run.) What the start read travels with the claimed task (`Task.ahead`) to the thread
  that runs it; a task claimed without it (its start found nothing to start) starts
  itself, as any claimed task does.
- What the directed claim does not get - another worker took it first, no thread was free
  for it - is left to the claim loop, which claims next: nothing is stranded, and nothing is
  claimed twice (the claim's own conditions and locks hold).
- Only the workers of this process hear the keys, at no cost. Workers of other processes
  are woken by NOTIFY and claim as before: keys in a NOTIFY would send every listening
  worker after the same few tasks - one winner and a herd of empty transactions. (The
  commit's NOTIFY may reach this process's own idle worker before the committing thread
  has announced what it queued: that worker knows its process's NOTIFYs and waits for the
  wake-up that follows the announcement, see `PostgresStore.wait_for_work`.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from batchyard.forks import forget_in_child
from batchyard.tasks import sql
from batchyard.tasks.records import Task, task_of

if TYPE_CHECKING:
    from batchyard.store import Store, Tx
    from batchyard.tasks.kinds import TaskKinds

# the most tasks held announced at once: more are left to the claim loop (a worker that
# cannot keep up claims many at a time there anyway)
_HELD = 1024


class Directed:
    """The tasks announced to this process's workers, and their directed claim."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._forget()
        self.limited: frozenset[str] = frozenset()  # handlers with limits, known here
        forget_in_child(self._forget)  # the parent's workers do not listen in a child

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._listening = 0  # the workers of this process in their claim loop
        # key -> kind and payload, in the order they were queued
        self._announced: dict[str, tuple[str, Mapping[str, Any]]] = {}
        self._taken: dict[str, None] = {}  # keys a claim took before they were heard

    def listen(self) -> None:
        """A worker's claim loop starts: tasks queued from now on are announced to it."""
        with self._lock:
            self._listening += 1

    def stop_listening(self) -> None:
        with self._lock:
            self._listening -= 1
            if not self._listening:
                self._announced.clear()  # no one left to claim them: the store has them
                self._taken.clear()

    def announce(
        self,
        tx: Tx,
        kind: str,
        tasks: Sequence[tuple[Any, ...]],
        handler: str | None,
    ) -> None:
        """Announce the tasks that `tx` queues due now - given as `enqueue_many` takes them
        - once it commits: those with a key that wait for no other and whose handler has no
        limit known here (the claim checks the store's limits too)."""
        if not self._listening or handler in self.limited:
            return
        found = [
            (task[0], task[1])
            for task in tasks
            if task[0] is not None and (len(task) < 3 or task[2] is None)
        ]
        if found:
            tx.after_commit.append(lambda: self._hear(kind, found))

    def _hear(self, kind: str, tasks: list[tuple[str, Mapping[str, Any]]]) -> None:
        with self._lock:
            if not self._listening:
                return
            for key, payload in tasks:
                if key in self._taken:
                    del self._taken[key]
                elif len(self._announced) < _HELD:
                    self._announced[key] = (kind, payload)

    def taken(self, tasks: Sequence[Task]) -> None:
        """Tasks that a claim of this process took: not to be claimed by key any more. (The
        claim loop may take a task between its commit and its announcement: heard after
        that, it would send a directed claim after nothing.)"""
        if not self._listening:
            return
        with self._lock:
            for task in tasks:
                if task.key is not None and self._announced.pop(task.key, None) is None:
                    self._taken[task.key] = None
            while len(self._taken) > _HELD:
                del self._taken[next(iter(self._taken))]

    def _take(self) -> list[tuple[str, str, Mapping[str, Any]]]:
        with self._lock:
            announced, self._announced = self._announced, {}
        return [(key, kind, payload) for key, (kind, payload) in announced.items()]

    def claim(
        self, worker_id: str, limit: int, lease: float, now: float | None, kinds: TaskKinds
    ) -> list[Task]:
        """Claim up to `limit` of the tasks announced since the last call, starting their
        runs in the same transaction; the rest of them are left to the claim loop. Call it
        with the worker's threads that are free now (a run started here is not meant to
        wait for one)."""
        announced = self._take()[: max(0, limit)]
        if not announced:
            return []
        payloads: dict[str, list[Mapping[str, Any]]] = {}
        for _, kind, payload in announced:
            payloads.setdefault(kind, []).append(payload)
        params = {
            "values": orjson.dumps([key for key, _, _ in announced]).decode(),
            "limit": len(announced),
            "worker_id": worker_id,
            "lease": lease,
        }
        with self.store.transaction(now, pipeline=True) as tx:
            reads: dict[str, Callable[[Task], Any]] = {}
            for kind, some in payloads.items():
                declared = kinds.get(kind)
                if declared is not None and declared.start_ahead is not None:
                    reads[kind] = declared.start_ahead(tx, some)
            claimed = tx.later(sql.CLAIM_DIRECTED_SQL, params)
        tasks = [task_of(row) for row in claimed.all()]
        return sorted(
            (replace(t, ahead=reads[t.kind](t)) if t.kind in reads else t for t in tasks),
            key=lambda t: t.id,
        )
