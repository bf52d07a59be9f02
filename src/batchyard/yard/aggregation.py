"""Cursor aggregation's verbs on `Yard`: events appended, aggregators registered, run and
read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from batchyard.aggregator import AggregatorRun, AggregatorStatus, ParkedEvent
from batchyard.clock import seconds
from batchyard.folds import Fold

if TYPE_CHECKING:
    from batchyard.aggregator import Aggregators, Streams


class AggregationVerbs:
    """`Yard`'s aggregation verbs (a part of the facade: it holds no logic)."""

    _aggregators: Aggregators
    _streams: Streams

    def append_events(self, stream: str, events: Sequence[dict[str, Any]]) -> list[int]:
        """Append JSON-object events to `stream` in one transaction; return their ids."""
        return self._streams.append(stream, events)

    def register_aggregator(
        self,
        name: str,
        *,
        stream: str,
        key: str | Callable[[dict[str, Any]], Any],
        fold: Fold,
        apply: str | Callable[..., Any] | None = None,
        page_size: int = 500,
        max_keys: int = 500,
        every: float | None = None,
        lease: float = 60.0,
    ) -> None:
        """Fold `stream`'s events by `key` (a field name or a function) with `fold`
        (`batchyard.folds`). Totals go to batchyard's table (`get_totals`) unless `apply`
        names a handler ``(deltas, tx)`` that writes them in the same transaction. With
        `every`, workers run it on that schedule."""
        self._aggregators.register(
            name,
            stream=stream,
            key=key,
            fold=fold,
            apply=apply,
            page_size=page_size,
            max_keys=max_keys,
            every=every,
            lease=lease,
        )

    def run_aggregator(self, name: str) -> AggregatorRun:
        """Fold and apply `name`'s new events until caught up; skipped if already running."""
        return self._aggregators.run(name)

    def request_aggregator_run(self, name: str) -> None:
        """Ask the workers to run `name` now, as a durable task (the dashboard's "run now")."""
        self._aggregators.request_run(name)

    def get_totals(self, name: str, key: Any = None) -> Any:
        """One key's total, or all of them as a dict."""
        return self._aggregators.get_totals(name, key)

    def get_aggregator_status(self, name: str) -> AggregatorStatus:
        """Cursor, lag in events and seconds, last run and error, parked events."""
        return self._aggregators.status(name)

    def reset_aggregator(self, name: str, to: int | None = None) -> None:
        """Replay the stream from the start, rebuilding the managed totals (or, for an
        aggregator with its own `apply`, from event id `to` on)."""
        self._aggregators.reset(name, to)

    def list_parked_events(self, name: str, limit: int = 100) -> list[ParkedEvent]:
        """Events whose fold raised, with their errors."""
        return self._aggregators.parked_events(name, limit)

    def retry_parked_events(self, name: str) -> int:
        """Fold parked events again; return how many went in."""
        return self._aggregators.retry_parked(name)

    def prune_events(self, stream: str, older_than: float | timedelta = 0.0) -> int:
        """Delete events every aggregator of `stream` has passed, older than `older_than`."""
        return self._streams.prune(stream, seconds(older_than))
