"""Yard: the one object users hold - its store, its handlers, and every capability's verbs.

The verbs live by capability, one module each (`batches`, `iterators`, `aggregation`,
`bulk_jobs`), each a part of the class; this module makes the parts and runs the worker."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from batchyard.accumulator import Accumulator
from batchyard.aggregator import Aggregators, Streams
from batchyard.bulk.service import BulkJobs
from batchyard.clock import Clock, SystemClock, seconds
from batchyard.embedder import Embedder
from batchyard.iterator import Iterators
from batchyard.maintenance import Maintenance
from batchyard.producer import Producer
from batchyard.retry import RetryPolicy
from batchyard.runtime import Runtime
from batchyard.store import DEFAULT_URL, Store, open_store
from batchyard.tasks.limits import HandlerLoad
from batchyard.worker import Worker
from batchyard.yard.aggregation import AggregationVerbs
from batchyard.yard.batches import BatchVerbs
from batchyard.yard.bulk_jobs import BulkJobVerbs
from batchyard.yard.iterators import IteratorVerbs

if TYPE_CHECKING:
    from batchyard.async_yard import AsyncYard

F = TypeVar("F", bound=Callable[..., Any])


class Yard(BatchVerbs, IteratorVerbs, AggregationVerbs, BulkJobVerbs):
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

    @functools.cached_property
    def aio(self) -> AsyncYard:
        """This yard's verbs for asyncio code (made on first use): see `AsyncYard`."""
        from batchyard.async_yard import AsyncYard  # (it is built on this module)

        return AsyncYard(self)

    # -- handlers -------------------------------------------------------------------------

    def handler(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, float | timedelta] | None = None,
    ) -> Callable[[F], F]:
        """Register a sync or ``async def`` callable under a stable name. `concurrency`
        caps its calls at once and `rate` = ``(count, per_seconds)`` its starts in any
        period, across every worker sharing the store."""
        return self.handlers.register(name, concurrency=concurrency, rate=rate)

    def handler_loads(self) -> list[HandlerLoad]:
        """Each limited handler's limits and load: calls in flight, starts in its rate
        window, and tasks due that wait for room."""
        return self.runtime.tasks.handler_loads(self.runtime.now())

    # -- producer -------------------------------------------------------------------------

    def producer(self, **options: Any) -> Producer:
        """A write-behind producer (a context manager): `add` returns at once and a
        background writer commits coalesced batches. See `Producer` for the options."""
        return Producer(self._accumulator.adder, batchers=self._accumulator.batchers, **options)

    # -- running --------------------------------------------------------------------------

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
        if "aio" in self.__dict__:
            self.aio.shutdown()
        self.handlers.close()
        self.store.close()

    def __enter__(self) -> Yard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
