"""Event streams: events appended in one transaction a call, pruned once every aggregator on
their stream has passed them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batchyard.errors import InvalidInput
from batchyard.payloads import encode_items

if TYPE_CHECKING:
    from batchyard.runtime import Runtime


# events a prune step deletes at most: like a batch prune step, a few ms of the writer
PRUNE_EVENTS = 2_000


class Streams:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.step_events = PRUNE_EVENTS

    def append(self, stream: str, events: Sequence[dict[str, Any]]) -> list[int]:
        """Append events (JSON objects) in one transaction; return their ids."""
        if not isinstance(stream, str) or not stream:
            raise InvalidInput("stream must be a non-empty string", field="stream")
        if isinstance(events, dict) or not isinstance(events, Sequence):
            raise InvalidInput("events must be a list of JSON objects", field="events")
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise InvalidInput(
                    f"events[{index}] is not a JSON object", field="events", index=index
                )
        payloads = encode_items(events, field="events")
        ids = []
        with self.store.transaction(self.runtime.now()) as tx:
            for payload in payloads:
                row = tx.one(
                    "INSERT INTO batchyard_events (stream, position, payload, "
                    "created_at) VALUES (:stream, {event_position}, :payload, {now}) "
                    "RETURNING id",
                    {"stream": stream, "payload": payload},
                )
                ids.append(int(row["id"]))
        return ids

    def prune(self, stream: str, older_than: float = 0.0) -> int:
        """Delete events of `stream` that every aggregator on it has passed and that are
        older than `older_than` seconds; parked events are kept. In steps (`prune_step`),
        each its own short transaction."""
        pruned = 0
        while True:
            step = self.prune_step(stream, older_than)
            pruned += step
            if step < self.step_events:
                return pruned

    def prune_step(self, stream: str, older_than: float = 0.0) -> int:
        """Delete up to `step_events` of the events `prune` deletes, the oldest first, in
        one transaction; how many. On SQLite, the one writer is held only that long (one
        transaction for a stream's whole backlog made every add wait for all of it)."""
        with self.store.transaction(self.runtime.now()) as tx:
            return int(
                tx.execute(
                    "DELETE FROM batchyard_events WHERE id IN (SELECT e.id FROM "
                    "batchyard_events e WHERE e.stream = :stream "
                    "AND e.created_at < {now} - :age "
                    "AND EXISTS (SELECT 1 FROM batchyard_aggregators a WHERE a.stream = :stream) "
                    "AND NOT EXISTS (SELECT 1 FROM batchyard_aggregators a "
                    "WHERE a.stream = :stream AND (a.cursor_position, a.cursor_id) "
                    "< (e.position, e.id)) "
                    "AND e.id NOT IN (SELECT event_id FROM batchyard_parked_events) "
                    "ORDER BY e.position, e.id LIMIT :step)",
                    {"stream": stream, "age": older_than, "step": self.step_events},
                ).rowcount
            )
