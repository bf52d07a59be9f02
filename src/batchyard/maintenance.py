"""Maintenance: what keeps a store from growing without end. A recurring task prunes
completed batches, their items and history after the yard's retention, and - with an event
retention - events every aggregator of their stream has passed.

The batches go in short steps (`batchyard.accumulator.pruning`), and between two steps the
task stands aside for as long as the step took, so that writers queued behind it (on SQLite,
every other writer) go first: a prune of millions of rows delays an add by one step, not by
the whole prune. A task run takes at most `PRUNE_STEPS_PER_RUN` steps and then queues itself
again, due at once, so that a worker asked to stop is not held by a long prune.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from batchyard.tasks import Task, TaskKind

if TYPE_CHECKING:
    from batchyard.accumulator import Accumulator
    from batchyard.aggregator import Aggregators, Streams
    from batchyard.runtime import Runtime

PRUNE_TASK = "maintenance.prune"
MAX_PRUNE_INTERVAL = 3600.0  # seconds between prunes, at most
PRUNE_STEPS_PER_RUN = 200


class Maintenance:
    def __init__(
        self,
        runtime: Runtime,
        accumulator: Accumulator,
        aggregators: Aggregators,
        streams: Streams,
        *,
        retention: float,
        event_retention: float | None,
    ) -> None:
        self.runtime = runtime
        self.accumulator = accumulator
        self.aggregators = aggregators
        self.streams = streams
        self.retention = retention
        self.event_retention = event_retention
        runtime.kinds.add(TaskKind(PRUNE_TASK, self.run_prune))
        runtime.kinds.on_worker_start(self.schedule)

    def schedule(self, delay: float | None = None) -> None:
        """Queue the next prune (one at most: its key keeps it single)."""
        with self.runtime.store.transaction(self.runtime.now()) as tx:
            self.runtime.tasks.enqueue(
                tx,
                PRUNE_TASK,
                {},
                key="maintenance:prune",
                delay=min(MAX_PRUNE_INTERVAL, self.retention) if delay is None else delay,
            )

    def run_prune(self, task: Task) -> None:
        more = self.prune_batches()
        if not more and self.event_retention is not None:
            for stream in {c.stream for c in self.aggregators.configs.values()}:
                self.streams.prune(stream, self.event_retention)
        with self.runtime.store.transaction(self.runtime.now()) as tx:
            self.runtime.tasks.complete(tx, task)
        self.schedule(0.0 if more else None)

    def prune_batches(self) -> bool:
        """Up to `PRUNE_STEPS_PER_RUN` steps of the batch prune; whether more is left."""
        for _ in range(PRUNE_STEPS_PER_RUN):
            started = time.monotonic()
            if not self.accumulator.pruner.step(self.retention).more:
                return False
            # not the clock's time: how long the writer was held, given back to the others
            time.sleep(time.monotonic() - started)
        return True
