"""Maintenance: what keeps a store from growing without end. A recurring task prunes
completed batches, their items and history after the yard's retention, and - with an event
retention - events every aggregator of their stream has passed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchyard.tasks import Task, TaskKind

if TYPE_CHECKING:
    from batchyard.accumulator import Accumulator
    from batchyard.aggregator import Aggregators, Streams
    from batchyard.runtime import Runtime

PRUNE_TASK = "maintenance.prune"
MAX_PRUNE_INTERVAL = 3600.0  # seconds between prunes, at most


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

    def schedule(self) -> None:
        """Queue the next prune (one at most: its key keeps it single)."""
        with self.runtime.store.transaction(self.runtime.now()) as tx:
            self.runtime.tasks.enqueue(
                tx,
                PRUNE_TASK,
                {},
                key="maintenance:prune",
                delay=min(MAX_PRUNE_INTERVAL, self.retention),
            )

    def run_prune(self, task: Task) -> None:
        self.accumulator.reader.prune(self.retention)
        if self.event_retention is not None:
            for stream in {c.stream for c in self.aggregators.configs.values()}:
                self.streams.prune(stream, self.event_retention)
        with self.runtime.store.transaction(self.runtime.now()) as tx:
            self.runtime.tasks.complete(tx, task)
        self.schedule()
