"""AsyncYard: a Yard's verbs for asyncio applications, none of which blocks the event loop.

Every call runs the Yard's own code in a thread of a pool of the AsyncYard's, and awaits
it: the statements, the checks and the errors are the Yard's, and the loop only waits for
an outcome. The hot call, `add_items`, goes further: concurrent awaits on one base meet in
its loop lane (see `accumulator.awaiting`) and one add - one statement for the common case -
carries them all, so eight tasks adding to a base cost one thread hop and one round trip per
add in flight, not eight.

Why a thread and not a native asyncio driver: measured (bench/async_add.py --hop), a call
through the thread hop costs what one through psycopg's AsyncConnectionPool does - the same
with commits, and less without them (psycopg's asyncio path has costs of its own) - and an
add's time is its round trip and commit, which the lane divides among the calls it carries.
One path also keeps one implementation of the add: the statements are `Adder.send`'s.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from batchyard.accumulator import AddResult
from batchyard.accumulator.awaiting import LoopAdder
from batchyard.store import Store
from batchyard.yard import Yard

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

# Threads of the pool: as many calls (adds to distinct bases, reads) run at once. Left below
# the PostgreSQL store's default pool of 10 connections, so a thread does not queue for one.
DEFAULT_THREADS = 8


def _awaitable(
    method: Callable[Concatenate[Yard, P], R],
) -> Callable[Concatenate[AsyncYard, P], Coroutine[Any, Any, R]]:
    """The Yard's `method`, run in a thread of the pool and awaited."""

    async def call(self: AsyncYard, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.run_in_thread(method, self.yard, *args, **kwargs)

    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class AsyncYard:
    """A `Yard` for asyncio code: the same store, handlers and settings, awaitable verbs.

    Made from a yard (``AsyncYard(yard)``, or ``yard.aio``) it shares everything with it and
    leaves it open on `aclose`; made by ``async with AsyncYard.open(url) as ayard`` it owns
    its yard. ``threads`` is the size of the pool the calls run in.
    """

    def __init__(self, yard: Yard, *, threads: int = DEFAULT_THREADS) -> None:
        self.yard = yard
        self._owns_yard = False
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="batchyard-async")
        self._adder = LoopAdder(yard.runtime, self.run_in_thread)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, store: str | Store | None = None, **options: Any
    ) -> AsyncIterator[AsyncYard]:
        """An AsyncYard on a yard of its own, made with `Yard`'s arguments (the schema is
        brought up to date in a thread) and closed at the end of the block."""
        yard = await asyncio.to_thread(Yard, store, **options)
        ayard = cls(yard)
        ayard._owns_yard = True
        try:
            yield ayard
        finally:
            await ayard.aclose()

    async def run_in_thread(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """Await ``fn(*args, **kwargs)`` run in a thread of the pool (with this context's
        variables), for the blocking calls of your own that go with ours."""
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def handler(self, name: str) -> Callable[[F], F]:
        """Register a sync or ``async def`` callable under a stable name (on the yard)."""
        return self.yard.handler(name)

    # -- accumulator ----------------------------------------------------------------------

    async def add_items(
        self,
        batch_id: str,
        items: Sequence[Any],
        *,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None = None,
        max_attempts: int | None = None,
        ordered: bool = False,
        max_batch_bytes: int | None = None,
        flush_after_idle: float | timedelta | None = None,
    ) -> AddResult:
        """`Yard.add_items`, awaited: committed on return. Concurrent awaits on one base go
        together, in the order they came, in one add (each gets its own result)."""
        return await self._adder.add_items(
            batch_id,
            items,
            max_batch_size=max_batch_size,
            on_flush=on_flush,
            flush_interval=flush_interval,
            max_attempts=max_attempts,
            ordered=ordered,
            max_batch_bytes=max_batch_bytes,
            flush_after_idle=flush_after_idle,
        )

    flush = _awaitable(Yard.flush)
    get_batch_status = _awaitable(Yard.get_batch_status)
    list_batches = _awaitable(Yard.list_batches)
    page_batches = _awaitable(Yard.page_batches)
    get_flush_history = _awaitable(Yard.get_flush_history)
    delete_batch = _awaitable(Yard.delete_batch)
    trigger_interval_flushes = _awaitable(Yard.trigger_interval_flushes)
    redrive_batch = _awaitable(Yard.redrive_batch)
    list_dead_batches = _awaitable(Yard.list_dead_batches)
    get_batch_items = _awaitable(Yard.get_batch_items)
    discard_batch = _awaitable(Yard.discard_batch)
    add = _awaitable(Yard.add)  # through a batcher (registered on the yard)
    get_batcher_status = _awaitable(Yard.get_batcher_status)
    list_batchers = _awaitable(Yard.list_batchers)
    get_batcher_summary = _awaitable(Yard.get_batcher_summary)
    get_batcher_summaries = _awaitable(Yard.get_batcher_summaries)
    get_batcher_history = _awaitable(Yard.get_batcher_history)
    handler_loads = _awaitable(Yard.handler_loads)

    # -- table iterator -------------------------------------------------------------------

    start_iterator = _awaitable(Yard.start_iterator)
    pause_iterator = _awaitable(Yard.pause_iterator)
    resume_iterator = _awaitable(Yard.resume_iterator)
    cancel_iterator = _awaitable(Yard.cancel_iterator)
    get_iterator_status = _awaitable(Yard.get_iterator_status)
    list_iterator_jobs = _awaitable(Yard.list_iterator_jobs)
    get_iterator_errors = _awaitable(Yard.get_iterator_errors)
    delete_iterator_job = _awaitable(Yard.delete_iterator_job)

    # -- aggregation ----------------------------------------------------------------------

    append_events = _awaitable(Yard.append_events)
    run_aggregator = _awaitable(Yard.run_aggregator)
    request_aggregator_run = _awaitable(Yard.request_aggregator_run)
    get_totals = _awaitable(Yard.get_totals)
    get_aggregator_status = _awaitable(Yard.get_aggregator_status)
    reset_aggregator = _awaitable(Yard.reset_aggregator)
    list_parked_events = _awaitable(Yard.list_parked_events)
    retry_parked_events = _awaitable(Yard.retry_parked_events)
    prune_events = _awaitable(Yard.prune_events)

    # -- bulk jobs ------------------------------------------------------------------------

    create_batch_job = _awaitable(Yard.create_batch_job)
    submit_batch_job = _awaitable(Yard.submit_batch_job)
    get_batch_job = _awaitable(Yard.get_batch_job)
    list_batch_jobs = _awaitable(Yard.list_batch_jobs)
    cancel_batch_job = _awaitable(Yard.cancel_batch_job)
    get_batch_job_errors = _awaitable(Yard.get_batch_job_errors)
    get_batch_job_results = _awaitable(Yard.get_batch_job_results)
    retry_failed_items = _awaitable(Yard.retry_failed_items)
    submit_failed_items_retry = _awaitable(Yard.submit_failed_items_retry)
    list_dead_chunks = _awaitable(Yard.list_dead_chunks)
    redrive_chunk = _awaitable(Yard.redrive_chunk)
    get_stats = _awaitable(Yard.get_stats)
    count_things = _awaitable(Yard.count_things)
    search = _awaitable(Yard.search)

    # -- lifecycle ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Let the pool's threads end once their calls have (the yard stays open)."""
        self._pool.shutdown(wait=False)

    async def aclose(self) -> None:
        """Close: the yard too when this AsyncYard made it (`open`)."""
        if self._owns_yard:
            await self.run_in_thread(self.yard.close)
        self.shutdown()

    async def __aenter__(self) -> AsyncYard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
