"""The accumulator's verbs on `Yard`: adding items, batchers, flushing, reading and steering
batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from batchyard.accumulator import (
    AddResult,
    BatcherInfo,
    BatcherStatus,
    BatcherSummary,
    BatchInfo,
    BatchItem,
    BatchPage,
    DiscardResult,
    FlushRecord,
    FlushResult,
)

if TYPE_CHECKING:
    from batchyard.accumulator import Accumulator


class BatchVerbs:
    """`Yard`'s accumulator verbs (a part of the facade: it holds no logic)."""

    _accumulator: Accumulator

    def add_items(
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
        """Add JSON items to the open batch of `batch_id`'s base, committed on return.

        A batch flushes once it holds `max_batch_size` items (a large add fills several
        batches) or, with `max_batch_bytes`, when the next item would take its items' JSON
        past that many bytes; after `flush_interval` seconds from its creation; with
        `flush_after_idle`, once no item was added for that long (`flush_interval` then
        being the longest it waits); or by `flush`. The handler named by `on_flush` gets at
        most `max_batch_size` items and `max_batch_bytes` bytes per call. With `ordered`,
        the base's batches are handed over in sequence order, each once the one before
        completed or was discarded. Raises `InvalidInput` (an item larger than
        `max_batch_bytes` among them) or `HandlerNotFound` before storing anything.
        """
        return self._accumulator.adder.add_items(
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

    def register_batcher(
        self,
        name: str,
        *,
        key: str | Callable[[Any], Any],
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None = None,
        max_attempts: int | None = None,
        ordered: bool = False,
        max_batch_bytes: int | None = None,
        flush_after_idle: float | timedelta | None = None,
        max_open_keys: int | None = None,
    ) -> None:
        """Name a keyed batch configuration: `add(name, items)` sends each item to the
        batches of its key - `key` is an item field or a function of an item - whose base id
        is ``<name>:<key>``. The other options are `add_items`'. With `max_open_keys`, at
        most that many keys accumulate at once: a new key first closes the oldest open
        batch, flushed early; no item is dropped. Every process that adds registers it."""
        self._accumulator.batchers.register(
            name,
            key=key,
            max_open_keys=max_open_keys,
            max_batch_size=max_batch_size,
            on_flush=on_flush,
            flush_interval=flush_interval,
            max_attempts=max_attempts,
            ordered=ordered,
            max_batch_bytes=max_batch_bytes,
            flush_after_idle=flush_after_idle,
        )

    def add(self, batcher: str, items: Sequence[Any]) -> list[AddResult]:
        """Add items through a registered batcher: one `AddResult` per key, in the order
        the keys first came; one call's items keep their order within a key. Every item's
        key and JSON are checked before anything is stored."""
        return self._accumulator.batchers.add(batcher, items)

    def get_batcher_status(self, batcher: str) -> BatcherStatus:
        """A batcher's unfinished batches by key, and how many keys are open."""
        return self._accumulator.batchers.status(batcher)

    def list_batchers(self, prefix: str | None = None) -> list[BatcherInfo]:
        """The batchers registered in this process (named with `prefix`, if given), by
        name, with their settings."""
        return self._accumulator.batchers.registered(prefix)

    def get_batcher_summary(self, batcher: str) -> BatcherSummary:
        """A batcher's settings, its unfinished batches counted, and its last hour's
        flushes (items flushed and failed)."""
        [summary] = self.get_batcher_summaries([batcher])
        return summary

    def get_batcher_summaries(self, batchers: Sequence[str]) -> list[BatcherSummary]:
        """`get_batcher_summary` of each of `batchers`, in that order, the last hour's
        flushes read once for them all."""
        return self._accumulator.batchers.summaries(batchers, self._accumulator.reader)

    def get_batcher_history(
        self,
        batcher: str,
        limit: int = 20,
        offset: int = 0,
        outcome: str | None = None,
        key_prefix: str | None = None,
    ) -> list[FlushRecord]:
        """Flush attempts of every key of a batcher in the last day, newest first
        (skipping `offset`; only those that ended in `outcome`, of keys that start with
        `key_prefix`, if given). A key's whole history is its base id's."""
        return self._accumulator.batchers.history(
            batcher, self._accumulator.reader, limit, offset, outcome, key_prefix
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
