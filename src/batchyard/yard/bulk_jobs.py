"""The bulk job service's verbs on `Yard`: jobs submitted, read, retried and cancelled,
exports, embeddings and search."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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
from batchyard.embedder import Embedder

if TYPE_CHECKING:
    from batchyard.bulk.service import BulkJobs
    from batchyard.handlers import Handlers
    from batchyard.runtime import Runtime
    from batchyard.store import Store

F = TypeVar("F", bound=Callable[..., Any])


class BulkJobVerbs:
    """`Yard`'s bulk job verbs (a part of the facade: it holds no logic)."""

    _jobs: BulkJobs
    runtime: Runtime
    store: Store
    handlers: Handlers

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
        throttle: str | Callable[..., Any] | None = None,
    ) -> str:
        """Create a bulk job and return its id. Types: import-things, import-relationships,
        export-things, transform-data, generate-embeddings. Invalid items are recorded
        failed (index and field) without stopping the rest; a request wrong as a whole
        raises `InvalidInput` (or `MissingExtra` for embeddings without their extra). The
        same `request_id` returns the first job instead of creating a second.

        When the job ends (completed, failed or cancelled), `on_complete(job)` - a handler -
        is called with its final `BulkJob`, and `callback_url` receives it as a signed POST
        (see `webhook_secret`); each durably, retried with backoff.

        `throttle(job_id)`, a handler, is asked before each chunk runs: None to go on, or
        seconds to wait first (the chunk is queued again for then; not a failed attempt)."""
        return self.submit_batch_job(
            type,
            items,
            input=input,
            options=options,
            request_id=request_id,
            on_complete=on_complete,
            callback_url=callback_url,
            throttle=throttle,
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
        return self._jobs.retry_failed(job_id).job_id

    def submit_failed_items_retry(self, job_id: str) -> BulkJobSubmission:
        """`retry_failed_items`, also saying whether the retry job existed already."""
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
        throttle: str | Callable[..., Any] | None = None,
    ) -> BulkJobSubmission:
        """`create_batch_job`, also saying whether `request_id` replayed an earlier job."""
        name_of = self.runtime.handlers.name_of
        return self._jobs.submit(
            type,
            items,
            input=input,
            options=options,
            request_id=request_id,
            on_complete=None if on_complete is None else name_of(on_complete, "on_complete"),
            callback_url=callback_url,
            throttle=None if throttle is None else name_of(throttle, "throttle"),
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
