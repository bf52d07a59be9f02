"""Maintenance: what keeps a store from growing without end. A recurring task prunes
completed batches, their items and history after the yard's retention, and - with an event
retention - events every aggregator of their stream has passed.

The batches and the events go in short steps (`batchyard.accumulator.pruning`,
`Streams.prune_step`), and between two steps the task stands aside for as long as the step
took, so that writers queued behind it (on SQLite, every other writer) go first: a prune of
millions of rows delays an add by one step, not by the whole prune. A task run takes at most
`PRUNE_STEPS_PER_RUN` steps and then queues itself again, due at once, so that a worker asked
to stop is not held by a long prune.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
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
        more = self.in_steps(lambda: self.accumulator.pruner.step(self.retention).more)
        if not more and self.event_retention is not None:
            for stream in sorted({c.stream for c in self.aggregators.configs.values()}):
                more = self.in_steps(partial(self._prune_events, stream))
                if more:
                    break
        with self.runtime.store.transaction(self.runtime.now()) as tx:
            self.runtime.tasks.complete(tx, task)
        self.schedule(0.0 if more else None)

    def _prune_events(self, stream: str) -> bool:
        assert self.event_retention is not None
        return self.streams.prune_step(stream, self.event_retention) >= self.streams.step_events

    @staticmethod
    def in_steps(step: Callable[[], bool]) -> bool:
        """Up to `PRUNE_STEPS_PER_RUN` of `step` (which says whether more is left), standing
        aside between two for as long as the last took; whether more is left."""
        for _ in range(PRUNE_STEPS_PER_RUN):
            started = time.monotonic()
            if not step():
                return False
            # not the clock's time: how long the writer was held, given back to the others
            time.sleep(time.monotonic() - started)
        return True
