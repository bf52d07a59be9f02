"""The table iterator's verbs on `Yard`: start, steer and read iterator jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from batchyard.clock import seconds
from batchyard.iterator import IteratorError, IteratorStatus

if TYPE_CHECKING:
    from batchyard.iterator import Iterators


class IteratorVerbs:
    """`Yard`'s iterator verbs (a part of the facade: it holds no logic)."""

    _iterators: Iterators

    def start_iterator(
        self,
        job_id: str,
        *,
        batch_size: int,
        get_next_batch: str | Callable[..., Any],
        process_batch: str | Callable[..., Any],
        on_complete: str | Callable[..., Any] | None = None,
        delay_between_batches: float | timedelta = 0.1,
        max_retries: int = 5,
        transactional: bool = False,
        throttle: str | Callable[..., Any] | None = None,
        target_batch_seconds: float | timedelta | None = None,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        parallelism: int = 1,
    ) -> IteratorStatus:
        """Start a job that pages through a source from a durable cursor.

        `get_next_batch(cursor, batch_size)` returns a `Page` (or a dict with ``items``,
        ``cursor``, ``done``); `process_batch(items, ctx)` handles each page; `on_complete(
        job_id, processed)` runs once, durably, at the end. All three are handler names (or
        registered callables). Starting an existing id raises `Conflict`.

        `throttle(job_id)`, a handler too, is asked before each page: it returns None to go
        on, or seconds to wait first (replica lag, a sink's rate limit). With
        `target_batch_seconds` the page size adapts so that a page (reading and handling it)
        takes about that long, between `min_batch_size` and `max_batch_size` (by default a
        tenth of and ten times `batch_size`).

        With `parallelism` N > 1 the source (one that can be cut into ranges: key ranges of
        `sources.sql_keyset`, byte ranges of `sources.ndjson_file` and `sources.csv_file`)
        is cut into N slices run at once, by any workers; a slice that runs out takes half
        of what the slice with the most left has still to do."""
        return self._iterators.start(
            job_id,
            batch_size=batch_size,
            get_next_batch=get_next_batch,
            process_batch=process_batch,
            on_complete=on_complete,
            delay_between_batches=seconds(delay_between_batches),
            max_retries=max_retries,
            transactional=transactional,
            throttle=throttle,
            target_batch_seconds=None
            if target_batch_seconds is None
            else seconds(target_batch_seconds),
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            parallelism=parallelism,
        )

    def pause_iterator(self, job_id: str) -> IteratorStatus:
        """Pause a job; a batch in flight cannot move the cursor afterwards."""
        return self._iterators.pause(job_id)

    def resume_iterator(self, job_id: str) -> IteratorStatus:
        """Resume a paused or failed job from its last checkpoint."""
        return self._iterators.resume(job_id)

    def cancel_iterator(self, job_id: str) -> IteratorStatus:
        """Cancel a job (status ``cancelled``, never ``failed``)."""
        return self._iterators.cancel(job_id)

    def get_iterator_status(self, job_id: str) -> IteratorStatus:
        """Status, progress, cursor, rate and (with a total) ETA."""
        return self._iterators.status(job_id)

    def list_iterator_jobs(
        self,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
        prefix: str | None = None,
    ) -> list[IteratorStatus]:
        """Jobs (whose id starts with `prefix`, if given), most recently changed first
        (skipping `offset`)."""
        return self._iterators.list(status, limit, offset, prefix)

    def get_iterator_errors(
        self, job_id: str, limit: int = 50, offset: int = 0
    ) -> list[IteratorError]:
        """A job's failed steps (the last 50 kept), newest first (skipping `offset`)."""
        return self._iterators.errors.read(job_id, limit, offset)

    def delete_iterator_job(self, job_id: str) -> None:
        """Delete a job that is no longer running."""
        self._iterators.delete(job_id)
