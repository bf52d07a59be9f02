"""The write-behind producer: `add` returns at once; a background writer commits batches.

Items wait in an in-process buffer until the writer commits everything buffered since its
last write in one transaction (coalesced, in the order added), one write at a time. From
there they are accumulated and flushed exactly like items from `Yard.add_items`.

Two checkpoints count items: ``processed`` (accepted by `add`) and ``durable`` (committed).
Only the window between them lives in memory: a crash loses items added after the last
durable checkpoint, never one that `wait_durable` or `flush` reported durable. The window is
bounded by a memory target; past half of it the writer writes at once, at the target `add`
blocks and, after `add_timeout`, raises `Backpressure`. Nothing is dropped silently.

While the store is unavailable (down, full, read-only) the writer waits for it with backoff,
however long that takes, and says so once; other write errors are retried a few times, then
raised from the next `add`, `flush` or `close`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from batchyard import metrics
from batchyard.accumulator.records import split_base
from batchyard.accumulator.sizing import item_sizes
from batchyard.clock import seconds
from batchyard.errors import Backpressure, ProducerError
from batchyard.payloads import encode_items
from batchyard.retry import RetryPolicy
from batchyard.supervision import Backoff, Outage, is_transient

if TYPE_CHECKING:
    from batchyard.accumulator.adding import Adder
    from batchyard.accumulator.batchers import Batcher, Batchers

log = logging.getLogger("batchyard.producer")
# during a write, the add that takes the processed count past a multiple of 512 sleeps
# 0.1 ms (see the end of `Producer.add`)
_YIELD_BITS = 9
_YIELD_SECONDS = 0.0001
_LIVE: weakref.WeakSet[Producer] = weakref.WeakSet()


@dataclass(slots=True)
class _Run:
    """Consecutive adds to one base with one configuration, their items JSON-encoded and
    validated: written as one add. An add to the same base as the last one appends its
    strings here, so the buffer holds no object per add (strings are not tracked by the
    garbage collector, whose passes over a large buffer would otherwise cost more than the
    adds)."""

    base: str
    config: dict[str, Any]
    encoded: list[str]
    batcher: Batcher | None = None  # a batcher whose open keys are bounded


@dataclass(frozen=True)
class ProducerStats:
    processed: int
    durable: int
    pending_items: int
    pending_bytes: int
    writes: int
    last_write_seconds: float | None
    last_error: str | None


class Producer:
    """A write-behind buffer in front of a yard's accumulator. Build it with `Yard.producer`.

    ``max_pending_items`` / ``max_pending_bytes`` bound the buffer; ``write_interval`` is how
    long the writer lets items gather before a write; ``add_timeout`` is how long `add` blocks
    at the target; ``retry`` bounds the attempts of one write before its error is raised from
    the next `add`, `flush` or `close`.
    """

    def __init__(
        self,
        adder: Adder,
        *,
        batchers: Batchers | None = None,
        max_pending_items: int = 100_000,
        max_pending_bytes: int = 64 * 1024 * 1024,
        write_interval: float | timedelta = 0.05,
        add_timeout: float | timedelta = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if max_pending_items < 1 or max_pending_bytes < 1:
            raise ValueError("max_pending_items and max_pending_bytes must be positive")
        self.runtime = adder.runtime
        self.max_pending_items = max_pending_items
        self.max_pending_bytes = max_pending_bytes
        self.write_interval = seconds(write_interval)
        self.add_timeout = seconds(add_timeout)
        self.retry = retry or RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=5.0)
        self._adder = adder
        self._batchers = batchers
        self._reset()
        _LIVE.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (which must never write the
        parent's items a second time)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._runs: deque[_Run] = deque()  # everything not yet durable, in order
        self._sealed = 0  # the first runs, taken by the write under way: never appended to
        self._pending_items = 0
        self._pending_bytes = 0
        self._processed = 0
        self._durable = 0
        self._writes = 0
        self._last_write: float | None = None
        self._error: BaseException | None = None
        self._stalled = False  # retries used up: wait for a caller to ask again
        self._urgent = False
        self._closed = False
        self._writer: threading.Thread | None = None
        self._bases: dict[str, str] = {}
        self._last_call: tuple[Any, ...] = (None,) * 11
        self._writing = False  # a write is under way (the adder lets it through now and then)

    # -- the producer's side ---------------------------------------------------------------

    def add(
        self,
        batch_id: str,
        items: Sequence[Any],
        *,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None = None,
        max_attempts: int | None = None,
        max_batch_bytes: int | None = None,
        flush_after_idle: float | timedelta | None = None,
        ordered: bool = False,
    ) -> int:
        """Buffer items for `batch_id`'s base (same configuration as `Yard.add_items`) and
        return the processed checkpoint that includes them. Validation happens here: bad
        items raise `InvalidInput` and nothing of this call is buffered."""
        last = self._last_call
        if (
            batch_id is last[0]
            and max_batch_size is last[1]
            and on_flush is last[2]
            and flush_interval is last[3]
            and max_attempts is last[4]
            and max_batch_bytes is last[5]
            and flush_after_idle is last[6]
            and ordered is last[7]
            and self.runtime.retry is last[8]
        ):
            base, config = last[9], last[10]  # a producer repeats its calls: checked once
        else:
            args = (max_batch_size, on_flush, flush_interval, max_attempts)
            limits = (max_batch_bytes, flush_after_idle, ordered)
            base, config = self._resolve(batch_id, *args, *limits)
        encoded = encode_items(items)
        if max_batch_bytes is not None:
            item_sizes(encoded, max_batch_bytes)  # refuses an item larger than the limit
        return self._buffer(base, config, encoded)

    def add_to(self, batcher: str, items: Sequence[Any]) -> int:
        """Buffer items through a registered batcher (see `Yard.add`): each to its key's
        base, one call's items in order within a key; return the processed checkpoint that
        includes them. Bad items (an item larger than the batcher's `max_batch_bytes` too)
        raise `InvalidInput` and nothing of this call is buffered. A batcher's
        `max_open_keys` is kept when the items are written."""
        if self._batchers is None:
            raise ProducerError("this producer was made without the yard's batchers")
        found = self._batchers.get(batcher)
        by_key = self._batchers.route(found, items)
        bounded = found if found.max_open_keys is not None else None
        processed = self._processed
        for key, encoded in by_key.items():
            processed = self._buffer(found.base_of(key), found.config, encoded, bounded)
        return processed

    def _buffer(
        self,
        base: str,
        config: dict[str, Any],
        encoded: list[str],
        batcher: Batcher | None = None,
    ) -> int:
        """Buffer checked, JSON-encoded items for `base`; the processed checkpoint."""
        count = len(encoded)
        size = len(encoded[0]) if count == 1 else sum(map(len, encoded))
        with self._lock:  # the condition's lock (a Condition's own __enter__ is Python code)
            if self._closed or self._error is not None:
                self._check_usable()
            if not count:
                return self._processed
            runs = self._runs
            pending_items = self._pending_items + count
            pending_bytes = self._pending_bytes + size
            if runs and (
                pending_items > self.max_pending_items  # _over_target, inline
                or pending_bytes > self.max_pending_bytes
            ):
                self._wait_for_room(count, size)
                pending_items = self._pending_items + count
                pending_bytes = self._pending_bytes + size
            self._pending_items, self._pending_bytes = pending_items, pending_bytes
            was_empty = not runs
            tail = runs[-1] if len(runs) > self._sealed else None
            if (
                tail is not None
                and tail.base == base
                and (tail.config is config or tail.config == config)
                and tail.batcher is batcher
            ):
                tail.encoded += encoded
            else:
                runs.append(_Run(base, config, encoded, batcher))
            processed = self._processed = self._processed + count
            if not self._urgent and (
                pending_items * 2 >= self.max_pending_items
                or pending_bytes * 2 >= self.max_pending_bytes
            ):
                # past half of the target: the writer writes now instead of waiting
                self._urgent = True
                self._changed.notify_all()
            elif was_empty:
                self._ensure_writer()
                self._changed.notify_all()
        if self._writing and (processed - count) >> _YIELD_BITS != processed >> _YIELD_BITS:
            # Let the writer through. Each of its SQLite calls gives up the GIL, and an adder
            # that never waits would keep it for a whole switch interval (5 ms) each time:
            # a write of a few statements then takes far longer than its work. A short sleep
            # now and then, only during a write, lets it go on at once.
            time.sleep(_YIELD_SECONDS)
        return processed

    def _resolve(
        self,
        batch_id: str,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None,
        max_attempts: int | None,
        max_batch_bytes: int | None,
        flush_after_idle: float | timedelta | None,
        ordered: bool,
    ) -> tuple[str, dict[str, Any]]:
        """The base and validated configuration of an add, remembered for the next add with
        the very same arguments (not for a callable handler, whose name can change)."""
        base = self._bases.get(batch_id)
        if base is None:  # producers repeat their batch ids: parse each once
            base = split_base(batch_id)[0]
            if len(self._bases) < 10_000:
                self._bases[batch_id] = base
        args = (max_batch_size, on_flush, flush_interval, max_attempts)
        config = self._adder.config(*args, ordered, max_batch_bytes, flush_after_idle)
        if isinstance(on_flush, str):
            limits = (max_batch_bytes, flush_after_idle, ordered, self.runtime.retry)
            self._last_call = (batch_id, *args, *limits, base, config)
        return base, config

    def _wait_for_room(self, count: int, size: int) -> None:
        """At the target: hurry the writer and wait (holding the condition) until `count`
        items of `size` bytes fit, or raise `Backpressure` after `add_timeout`."""
        deadline = time.monotonic() + self.add_timeout
        while self._runs and self._over_target(count, size):
            self._urgent = True
            self._changed.notify_all()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Backpressure(
                    f"producer buffer full ({self._pending_items} items, "
                    f"{self._pending_bytes} bytes pending) for {self.add_timeout:g} s",
                    pending_items=self._pending_items,
                )
            self._changed.wait(remaining)
            self._check_usable()

    def wait_durable(
        self, checkpoint: int | None = None, timeout: float | timedelta | None = None
    ) -> int:
        """Block until `checkpoint` (default: everything accepted so far) is committed;
        return the durable checkpoint. Raises `ProducerError` if writes keep failing and
        `TimeoutError` after `timeout`."""
        with self._changed:
            target = self._processed if checkpoint is None else checkpoint
            deadline = None if timeout is None else time.monotonic() + seconds(timeout)
            while self._durable < target:
                self._raise_error()
                self._urgent = True
                self._ensure_writer()
                self._changed.notify_all()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"durable checkpoint {self._durable} has not reached "
                        f"{target} within the timeout"
                    )
                self._changed.wait(remaining)
            return self._durable

    def flush(self, timeout: float | timedelta | None = None) -> int:
        """Make everything accepted so far durable; return the durable checkpoint."""
        return self.wait_durable(None, timeout)

    def close(self, timeout: float | timedelta | None = 30.0) -> None:
        """Flush (bounded by `timeout`) and stop the writer. Raises if items stay unwritten."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            if self._writer is not None and self._writer is not threading.current_thread():
                self._writer.join(timeout=5)
            _LIVE.discard(self)

    @property
    def processed(self) -> int:
        return self._processed

    @property
    def durable(self) -> int:
        return self._durable

    def pending(self) -> list[tuple[str, list[Any]]]:
        """The items not yet durable, as ``(base_id, items)`` in the order added."""
        import json

        with self._lock:
            return [(r.base, [json.loads(x) for x in r.encoded]) for r in self._runs]

    def stats(self) -> ProducerStats:
        with self._lock:
            return ProducerStats(
                processed=self._processed,
                durable=self._durable,
                pending_items=self._pending_items,
                pending_bytes=self._pending_bytes,
                writes=self._writes,
                last_write_seconds=self._last_write,
                last_error=None if self._error is None else repr(self._error),
            )

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise ProducerError("the producer is closed")
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None and self._stalled:
            error, self._error, self._stalled = self._error, None, False
            self._changed.notify_all()  # the writer tries again from here
            raise ProducerError(
                f"background write failed after {self.retry.max_attempts} attempts: {error}; "
                f"{self._pending_items} items stay buffered and will be retried"
            ) from error

    def _over_target(self, items: int, size: int) -> bool:
        return (
            self._pending_items + items > self.max_pending_items
            or self._pending_bytes + size > self.max_pending_bytes
        )

    def _ensure_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(
                target=self._write_loop, daemon=True, name="batchyard-producer"
            )
            self._writer.start()

    # -- the writer's side -------------------------------------------------------------------

    def _write_loop(self) -> None:
        attempt = 0
        backoff, outage = Backoff(), Outage(log, "producer")
        while True:
            with self._changed:
                while not self._runs or self._stalled:
                    if self._closed:
                        return
                    self._changed.wait()
                if not self._urgent and not self._closed:
                    # let items gather for a coalesced write, unless someone is waiting
                    self._changed.wait_for(
                        lambda: self._urgent or self._closed, self.write_interval
                    )
                # take everything so far: later adds start runs of their own
                runs = list(self._runs)
                self._sealed = len(runs)
                taken = (self._processed, self._pending_items, self._pending_bytes)
                self._urgent = False
            started = time.perf_counter()
            self._writing = True
            try:
                self._write(runs)
            except Exception as exc:
                metrics.PRODUCER_WRITE_FAILURES.inc()
                if is_transient(exc):
                    # the store is away (down, full, read-only): wait for it however long
                    # it takes, keeping everything; adds go on until the memory target,
                    # then block and raise Backpressure
                    outage.failed(exc)
                    with self._changed:
                        self._sealed = 0
                        self._error = exc
                        self._changed.wait_for(lambda: self._closed, backoff.next())
                        if self._closed:
                            return  # close() has reported what stays unwritten
                    continue
                attempt += 1
                delay = self.retry.next_delay(attempt)
                log.warning(
                    "producer write of %d items failed (attempt %d): %s", taken[1], attempt, exc
                )
                with self._changed:
                    self._sealed = 0  # nothing was written: the next write takes it all again
                    self._error = exc
                    if delay is None:
                        self._stalled, attempt = True, 0
                        self._changed.notify_all()
                    else:
                        self._changed.wait_for(lambda: self._closed, delay)
                continue
            finally:
                self._writing = False
            attempt = 0
            backoff.reset()
            outage.ok()
            written = time.perf_counter() - started
            metrics.PRODUCER_WRITE_DURATION.observe(written)
            with self._changed:
                for _ in runs:
                    self._runs.popleft()
                self._sealed = 0
                self._durable, items, size = taken
                self._pending_items -= items
                self._pending_bytes -= size
                self._writes += 1
                self._last_write = written
                self._error = None
                self._changed.notify_all()

    def _write(self, runs: list[_Run]) -> None:
        """Everything in one transaction: all of it is durable, or none of it."""
        adder = self._adder
        adder.ensure_bases({run.base for run in runs})
        # pipelined: each base's statements go without waiting, up to the one read an add
        # waits for (PostgreSQL; on SQLite the same)
        with self.runtime.store.transaction(self.runtime.now(), pipeline=True) as tx:
            locked: set[str] = set()
            for run in runs:
                if run.batcher is not None and self._batchers is not None:
                    if run.batcher.name not in locked:
                        self._batchers.lock(tx, run.batcher)
                        locked.add(run.batcher.name)
                    self._batchers.make_room(tx, run.batcher, run.base)
                adder.add_encoded(tx, run.base, run.encoded, run.config)


def _after_fork_in_child() -> None:
    for producer in list(_LIVE):
        producer._reset()


def _flush_at_exit() -> None:
    for producer in list(_LIVE):
        try:
            producer.close(timeout=5.0)
        except Exception as exc:  # exiting: report, never hang or raise
            pending = producer.stats().pending_items  # (a write may have ended meanwhile)
            if pending:
                log.error("producer lost %d unwritten items at exit: %s", pending, exc)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)
