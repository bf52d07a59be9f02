"""Yard: the one object users hold - its store, its handlers, and every capability's verbs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from batchyard.accumulator import (
    Accumulator,
    AddResult,
    BatchInfo,
    BatchItem,
    BatchPage,
    DiscardResult,
    FlushRecord,
    FlushResult,
)
from batchyard.aggregator import (
    AggregatorRun,
    Aggregators,
    AggregatorStatus,
    ParkedEvent,
    Streams,
)
from batchyard.bulk.export import export_to_format
from batchyard.bulk.records import (
    BulkItemError,
    BulkItemResult,
    BulkJob,
    BulkJobStats,
    BulkJobSubmission,
    DeadChunk,
)
from batchyard.bulk.search import SearchHit, search
from batchyard.bulk.service import BulkJobs
from batchyard.clock import Clock, SystemClock, seconds
from batchyard.embedder import Embedder
from batchyard.folds import Fold
from batchyard.iterator import IteratorError, Iterators, IteratorStatus
from batchyard.maintenance import Maintenance
from batchyard.producer import Producer
from batchyard.retry import RetryPolicy
from batchyard.runtime import Runtime
from batchyard.store import DEFAULT_URL, Store, open_store
from batchyard.worker import Worker

F = TypeVar("F", bound=Callable[..., Any])


class Yard:
    """A batchyard application: a store plus the handlers that run its work.

    ``store`` is a URL (``sqlite:///path.db``, ``postgresql://...``) or an open `Store`; by
    default ``BATCHYARD_STORE`` or ``sqlite:///batchyard.db``. The schema is brought up to
    date on open. ``retry`` is the default policy for flushes and tasks; ``retention`` is how
    long completed batches and their history are kept; ``event_retention``, when set, is how
    long events that every aggregator of their stream has passed are kept. ``embedder``
    embeds things for generate-embeddings jobs and `search` (default: all-MiniLM-L6-v2 of
    the ``batchyard[embeddings]`` extra, loaded on first use).
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        retention: float | timedelta = timedelta(days=1),
        event_retention: float | timedelta | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        opened = (
            store
            if isinstance(store, Store)
            else open_store(store or os.environ.get("BATCHYARD_STORE") or DEFAULT_URL)
        )
        self.runtime = Runtime(
            opened, clock or SystemClock(), retry=retry or RetryPolicy(), _embedder=embedder
        )
        # the runtime's parts, as users and tests reach them
        self.store, self.clock = self.runtime.store, self.runtime.clock
        self.handlers, self.retry = self.runtime.handlers, self.runtime.retry
        self.retention = seconds(retention)
        self.event_retention = None if event_retention is None else seconds(event_retention)
        # each capability declares its task kinds in the runtime as it is made
        self._accumulator = Accumulator(self.runtime)
        self._aggregators = Aggregators(self.runtime)
        self._streams = Streams(self.runtime)
        self._iterators = Iterators(self.runtime)
        self._jobs = BulkJobs(self.runtime)
        self._maintenance = Maintenance(
            self.runtime,
            self._accumulator,
            self._aggregators,
            self._streams,
            retention=self.retention,
            event_retention=self.event_retention,
        )

    @property
    def worker_id(self) -> str | None:
        """The id of the worker running in this process, if one runs."""
        return self.runtime.worker_id

    def now(self) -> float | None:
        """The time to bind in SQL: the manual clock's, or None for the store's own clock."""
        return self.runtime.now()

    # -- handlers -------------------------------------------------------------------------

    def handler(self, name: str) -> Callable[[F], F]:
        """Register a sync or ``async def`` callable under a stable name."""
        return self.handlers.register(name)

    # -- accumulator ----------------------------------------------------------------------

    def add_items(
        self,
        batch_id: str,
        items: Sequence[Any],
        *,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None = None,
        max_attempts: int | None = None,
    ) -> AddResult:
        """Add JSON items to the open batch of `batch_id`'s base, committed on return.

        A batch flushes once it holds `max_batch_size` items (a large add fills several
        batches), after `flush_interval` seconds from its creation, or by `flush`. The handler
        named by `on_flush` gets at most `max_batch_size` items per call. Raises
        `InvalidInput` or `HandlerNotFound` before storing anything.
        """
        return self._accumulator.adder.add_items(
            batch_id,
            items,
            max_batch_size=max_batch_size,
            on_flush=on_flush,
            flush_interval=flush_interval,
            max_attempts=max_attempts,
        )

    def flush(self, batch_id: str) -> FlushResult:
        """Close the open batch of a base id (or the given batch) and flush it now."""
        return self._accumulator.flusher.flush(batch_id)

    def get_batch_status(self, batch_id: str) -> list[BatchInfo]:
        """Active batches of a base id (accumulating, flushing, dead), or one batch."""
        return self._accumulator.reader.get_batch_status(batch_id)

    def list_batches(self, status: str | None = None, limit: int = 100) -> list[BatchInfo]:
        """Batches across all base ids, most recently changed first."""
        return self._accumulator.reader.list_batches(status, limit)

    def page_batches(
        self,
        status: str | None = None,
        *,
        limit: int = 100,
        cursor: int | None = None,
        prefix: str | None = None,
    ) -> BatchPage:
        """Batches across all base ids (or those whose id starts with `prefix`), newest
        first, a page at a time: pass a page's `next_cursor` as `cursor` for the next one."""
        return self._accumulator.reader.page_batches(status, limit, cursor, prefix)

    def get_flush_history(
        self,
        batch_id: str,
        limit: int = 20,
        offset: int = 0,
        outcome: str | None = None,
        prefix: str | None = None,
    ) -> list[FlushRecord]:
        """Flush attempts of a base id or batch, newest first (skipping `offset`; only those
        that ended in `outcome`, of batches whose id starts with `prefix`, if given)."""
        return self._accumulator.reader.get_flush_history(batch_id, limit, offset, outcome, prefix)

    def delete_batch(self, batch_id: str) -> None:
        """Delete a batch that is neither flushing nor holding pending items."""
        self._accumulator.reader.delete_batch(batch_id)

    def trigger_interval_flushes(self) -> list[str]:
        """Close every batch whose interval has passed and schedule its flush."""
        return self._accumulator.flusher.trigger_interval_flushes()

    def redrive_batch(self, batch_id: str) -> FlushResult:
        """Flush a dead-lettered batch again with a fresh set of attempts."""
        return self._accumulator.flusher.redrive_batch(batch_id)

    def list_dead_batches(self, limit: int = 100) -> list[BatchInfo]:
        return self._accumulator.reader.list_batches("dead", limit)

    def get_batch_items(
        self, batch_id: str, *, after: int | None = None, limit: int = 100
    ) -> list[BatchItem]:
        """Items of one batch (any status) after position `after`, each with its failure
        reason when a partial flush gave one."""
        return self._accumulator.items.get(batch_id, after=after, limit=limit)

    def discard_batch(self, batch_id: str) -> DiscardResult:
        """Give up a dead batch: ``discarded``, its pending items recorded as dropped."""
        return self._accumulator.items.discard(batch_id)

    # -- producer -------------------------------------------------------------------------

    def producer(self, **options: Any) -> Producer:
        """A write-behind producer (a context manager): `add` returns at once and a
        background writer commits coalesced batches. See `Producer` for the options."""
        return Producer(self._accumulator.adder, **options)

    # -- table iterator ---------------------------------------------------------------------

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
        tenth of and ten times `batch_size`)."""
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

    # -- aggregation ------------------------------------------------------------------------

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

    # -- running --------------------------------------------------------------------------

    # -- bulk jobs -----------------------------------------------------------------------

    def transform(self, name: str) -> Callable[[F], F]:
        """Register a transform for ``transform-data`` jobs (chosen by
        ``options={"transform": name}``): called with one item, returns its output. An
        exception is that item's error; `batchyard.signals.RetryLater` retries the chunk."""
        return self.handlers.register(f"transform:{name}")

    def create_batch_job(
        self,
        type: str,
        items: Sequence[Any] | None = None,
        *,
        input: Any = None,
        options: dict[str, Any] | None = None,
        request_id: str | None = None,
        on_complete: str | Callable[..., Any] | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Create a bulk job and return its id. Types: import-things, import-relationships,
        export-things, transform-data, generate-embeddings. Invalid items are recorded
        failed (index and field) without stopping the rest; a request wrong as a whole
        raises `InvalidInput` (or `MissingExtra` for embeddings without their extra). The
        same `request_id` returns the first job instead of creating a second.

        When the job ends (completed, failed or cancelled), `on_complete(job)` - a handler -
        is called with its final `BulkJob`, and `callback_url` receives it as a signed POST
        (see `webhook_secret`); each durably, retried with backoff."""
        return self.submit_batch_job(
            type,
            items,
            input=input,
            options=options,
            request_id=request_id,
            on_complete=on_complete,
            callback_url=callback_url,
        ).job_id

    def webhook_secret(self) -> bytes:
        """The key bulk-job webhooks are signed with (HMAC-SHA256 over the timestamp, a dot
        and the body): ``BATCHYARD_WEBHOOK_SECRET`` if set, else one made once per store."""
        return self._jobs.webhook_secret()

    def retry_failed_items(self, job_id: str) -> str:
        """Create a job of the same type and options from the items of an ended job that
        failed while processing (and those of its dead chunks), each as it was accepted;
        return its id. Once per job: a second call returns the same one. Items refused by
        validation are not taken (they would be refused again). Raises `Conflict` while the
        job runs or when none of its items failed."""
        return self._jobs.retry_failed(job_id)

    def submit_batch_job(
        self,
        type: str,
        items: Sequence[Any] | None = None,
        *,
        input: Any = None,
        options: dict[str, Any] | None = None,
        request_id: str | None = None,
        on_complete: str | Callable[..., Any] | None = None,
        callback_url: str | None = None,
    ) -> BulkJobSubmission:
        """`create_batch_job`, also saying whether `request_id` replayed an earlier job."""
        return self._jobs.submit(
            type,
            items,
            input=input,
            options=options,
            request_id=request_id,
            on_complete=None
            if on_complete is None
            else self.runtime.handlers.name_of(on_complete, "on_complete"),
            callback_url=callback_url,
        )

    def get_batch_job(self, job_id: str) -> BulkJob:
        return self._jobs.read.get(job_id)

    def list_batch_jobs(
        self,
        status: str | None = None,
        type: str | None = None,
        limit: int = 100,
        offset: int = 0,
        prefix: str | None = None,
    ) -> list[BulkJob]:
        return self._jobs.read.list_jobs(status, type, limit, offset, prefix)

    def cancel_batch_job(self, job_id: str) -> BulkJob:
        """No new chunk of the job starts; running ones stop at their next commit."""
        return self._jobs.cancel(job_id)

    def get_batch_job_errors(
        self, job_id: str, after: int = -1, limit: int = 100
    ) -> list[BulkItemError]:
        """Per-item errors by index, a page at a time (`after` the last index seen)."""
        return self._jobs.read.errors(job_id, after=after, limit=limit)

    def get_batch_job_results(
        self, job_id: str, after: int = -1, limit: int = 100
    ) -> list[BulkItemResult]:
        return self._jobs.read.results(job_id, after=after, limit=limit)

    def list_dead_chunks(
        self, job_id: str | None = None, limit: int = 100, *, offset: int = 0, job_prefix: str = ""
    ) -> list[DeadChunk]:
        return self._jobs.read.dead_chunks(job_id, limit, offset=offset, job_prefix=job_prefix)

    def redrive_chunk(self, task_id: int) -> BulkJob:
        return self._jobs.redrive(task_id)

    def get_stats(self) -> BulkJobStats:
        return self._jobs.read.stats()

    def export_to_format(
        self, ns: str, format: str = "json", on_rows: Callable[[int], None] | None = None
    ) -> Iterator[bytes]:
        """The things of `ns` as ``json``, ``csv`` or ``ndjson`` bytes, streamed from one
        snapshot in bounded memory; `on_rows(n)` hears how many rows each chunk held."""
        return export_to_format(self.store, ns, format, on_rows)

    @property
    def embedder(self) -> Embedder:
        """The model of generate-embeddings jobs and `search`. The default is created on
        first use; without the ``batchyard[embeddings]`` extra that raises `MissingExtra`."""
        return self.runtime.embedder

    def use_embedder(self, embedder: Embedder) -> None:
        """Embed with `embedder` from now on (its vectors are stored under its `name`)."""
        self.runtime.embedder = embedder

    def search(self, ns: str, query: str, k: int = 10) -> list[SearchHit]:
        """The `k` things of `ns` nearest to `query` by cosine similarity of their stored
        embeddings (a generate-embeddings job makes them), best first, with scores."""
        return search(self.store, self.embedder, ns, query, k)

    def count_things(self, ns: str) -> int:
        """How many things the namespace holds."""
        return self._jobs.read.count_things(ns)

    def run_worker(
        self,
        concurrency: int = 8,
        *,
        wait: bool = True,
        lease: float = 30.0,
        shutdown_timeout: float = 30.0,
        poll_interval: float = 1.0,
    ) -> int:
        """Run tasks. ``wait=True`` runs until SIGTERM/SIGINT (or `Worker.stop`);
        ``wait=False`` runs everything due now and returns. Returns the tasks run."""
        worker = self.worker(
            concurrency=concurrency,
            lease=lease,
            shutdown_timeout=shutdown_timeout,
            poll_interval=poll_interval,
        )
        if not wait:
            return worker.run_until_idle()
        worker.run()
        return worker.tasks_run

    def worker(self, **options: Any) -> Worker:
        """A worker for this yard, to run in a thread of your own (`run`, `stop`)."""
        return Worker(self.runtime, **options)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        self.handlers.close()
        self.store.close()

    def __enter__(self) -> Yard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
