"""The batch accumulator: items gathered into named batches and flushed to a handler.

A base id names a sequence of batches, ``base::0``, ``base::1``, ... At most one of them is
``accumulating``; it closes (``flushing``) when it holds ``max_batch_size`` items, when its
interval timer - set once, when the batch is created - fires, or by hand. A closed batch never
takes another item, so an item belongs to exactly one batch and a flush is never larger than
the limit. Each batch has one flush task, keyed by its id, so a size trigger racing the timer
still gives one flush. A flush's outcome is written under the task's fencing token: a stale
runner's result is refused, which keeps the books exact however often a handler is called.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from batchyard import metrics
from batchyard.clock import seconds, to_datetime
from batchyard.errors import Conflict, InvalidInput, NotFound
from batchyard.failures import error_text, log_failure, traceback_text
from batchyard.payloads import encode_items
from batchyard.signals import ItemFailures
from batchyard.store import Tx
from batchyard.tasks import Task, TaskKind

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

FLUSH_TASK = "accumulator.flush"
log = logging.getLogger("batchyard.accumulator")
# a year: longer is surely a mistake, and far timers overflow datetime (and inf never fires)
MAX_FLUSH_INTERVAL_SECONDS = 365 * 24 * 3600.0


class BatchStatus(StrEnum):
    ACCUMULATING = "accumulating"
    FLUSHING = "flushing"
    COMPLETED = "completed"
    DEAD = "dead"
    DISCARDED = "discarded"  # a dead batch given up on by hand: its items were not delivered


ACTIVE_STATUSES = frozenset({BatchStatus.ACCUMULATING, BatchStatus.FLUSHING, BatchStatus.DEAD})
# done with, one way or the other: nothing pending, pruned after the retention
FINISHED_STATUSES = frozenset({BatchStatus.COMPLETED, BatchStatus.DISCARDED})
# the same, as SQL (the statuses are fixed words, never user input)
FINISHED_SQL = "('completed', 'discarded')"


class FlushReason(StrEnum):
    SIZE = "size"
    INTERVAL = "interval"
    MANUAL = "manual"
    REDRIVE = "redrive"


@dataclass(frozen=True)
class FlushContext:
    """What a flush handler knows about the call. `idempotency_key` is the same for every
    attempt of one batch's flush; `attempt` counts from 1."""

    batch_id: str
    base_id: str
    sequence: int
    attempt: int
    idempotency_key: str
    reason: str


@dataclass(frozen=True)
class AddResult:
    batch_id: str  # the batch that took the last item
    item_count: int  # items added by this call
    flushed: bool  # this call closed at least one batch for a size flush
    status: str  # status of `batch_id` after the call
    flushed_batch_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlushResult:
    batch_id: str | None
    item_count: int
    flushed: bool
    status: str | None
    reason: str | None = None


@dataclass(frozen=True)
class BatchInfo:
    batch_id: str
    base_id: str
    sequence: int
    status: str
    item_count: int
    pending_count: int
    max_batch_size: int
    flush_interval: float | None
    handler: str
    attempts: int
    max_attempts: int
    flush_reason: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    age_seconds: float


@dataclass(frozen=True)
class FlushRecord:
    batch_id: str
    sequence: int
    attempt: int
    reason: str
    outcome: str
    item_count: int
    failed_count: int
    error: str | None
    worker_id: str | None
    started_at: datetime
    duration_seconds: float
    traceback: str | None = None  # of a failed attempt: its end, at most 8 KB


def split_base(batch_id: str, field: str = "batch_id") -> tuple[str, int | None]:
    """``"base::3"`` -> ``("base", 3)``; ``"base"`` -> ``("base", None)``."""
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise InvalidInput(f"{field} must be a non-empty string", field=field)
    if "\x00" in batch_id:
        # PostgreSQL text cannot hold NUL; refused on both stores so both behave alike
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    base, sep, sequence = batch_id.partition("::")
    if not base:
        raise InvalidInput(f"{field} {batch_id!r} has an empty base id", field=field)
    if not sep:
        return base, None
    if not (sequence.isascii() and sequence.isdigit()):  # "²".isdigit(), yet int() refuses it
        raise InvalidInput(f"{field} {batch_id!r}: the part after '::' must be a number",
                           field=field)
    return base, int(sequence)


# Items and item failures are keyed by the batch's number, `batch_no` (a short integer key,
# faster to insert and find than the text id); the batch row maps one to the other.
#
# An add of many items writes them in one statement however many batches they fill: the
# first `room` after the open batch's `count` items, the rest `size` to a batch over the new
# batches numbered `first_no`, `first_no + 1`, ... Their JSON texts travel as one JSON array
# of strings, so no Python object is made per row (an executemany of per-row dicts cost more
# than the insert), and the statements of an add do not grow with its size (each statement
# is a round trip on PostgreSQL, and on SQLite a wait for the GIL while other threads run).
_INSERT_ITEMS = (
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at) "
    "SELECT CASE WHEN j.idx < :room THEN :open_no ELSE :first_no + (j.idx - :room) / :size END, "
    "CASE WHEN j.idx < :room THEN :count + j.idx ELSE (j.idx - :room) % :size END, "
    # no ORDER BY: each row's place comes from its index, and SQLite would sort them first
    "j.value, {now} FROM {json_text_rows} j"
)
# New batches of a base, sequences from :first up, one per idempotency key in :values; the
# first :full of them are born closed for their size (a base has one open batch at most).
# Their numbers are given in the order of the rows (ORDER BY), so one statement's are
# consecutive unless another transaction took a number in between (PostgreSQL only).
_INSERT_BATCHES = (
    "INSERT INTO batchyard_batches (batch_id, base_id, sequence, status, flush_reason, "
    "flush_requested_at, handler, max_batch_size, flush_interval, max_attempts, "
    "idempotency_key, created_at, updated_at) "
    "SELECT :base || '::' || CAST(:first + j.idx AS TEXT), :base, :first + j.idx, "
    "CASE WHEN j.idx < :full THEN 'flushing' ELSE 'accumulating' END, "
    "CASE WHEN j.idx < :full THEN 'size' END, CASE WHEN j.idx < :full THEN {now} END, "
    ":handler, :max_batch_size, CAST(:flush_interval AS DOUBLE PRECISION), :max_attempts, "
    "j.value, {now}, {now} FROM {json_text_rows} j ORDER BY j.idx"
)
# Their numbers, in one row: a RETURNING row per batch would be a fetch each (on SQLite a
# release of the GIL each, and a wait to take it back while other threads run).
_NEW_BATCH_NUMBERS = (
    "SELECT MIN(batch_no) AS lo, MAX(batch_no) AS hi FROM batchyard_batches "
    "WHERE base_id = :base AND sequence >= :first"
)
_CLOSE_FULL = (
    "UPDATE batchyard_batches SET status = 'flushing', flush_reason = 'size', "
    "flush_requested_at = {now}, updated_at = {now} WHERE batch_no = :batch_no"
)
# The base's row is the lock every transaction that adds to a base takes first, before the
# open batch's row: they queue there, and batch creation needs no lock of its own. (Taking
# the batch's row first and the base's to open the next batch deadlocked against an adder
# that held the base's row and waited for the batch's.) One-statement appends take only the
# batch's row, for the length of the statement. The row is made before the transaction
# (`Accumulator.ensure_bases`), so that the lock is there to take.
_INSERT_BASE = (
    "INSERT INTO batchyard_batch_bases (base_id) VALUES (:base) ON CONFLICT (base_id) DO NOTHING"
)
_LOCK_BASE = (
    "SELECT next_sequence FROM batchyard_batch_bases WHERE base_id = :base {for_update}"
)
_LOCK_OPEN_BATCH = (
    "SELECT batch_id, batch_no, max_batch_size, max_attempts FROM batchyard_batches "
    "WHERE base_id = :base AND status = 'accumulating' {for_update}"
)
_COUNT_OPEN_BATCH = (
    "SELECT COALESCE(MAX(position), -1) + 1 AS n FROM batchyard_items WHERE batch_no = "
    "(SELECT batch_no FROM batchyard_batches WHERE base_id = :base AND status = 'accumulating')"
)
# One item into the open batch, in one statement: the common add (one item that does not
# fill its batch). The position is counted by the statement itself, and an item that leaves
# room behind it needs nothing else written, so the statement is a transaction of its own:
# no BEGIN or COMMIT to send (one round trip on PostgreSQL). On PostgreSQL a statement that
# waited for the row lock still counts with the snapshot it took before waiting: its
# position then collides with what the previous holder committed, ON CONFLICT makes that
# "no row", and the caller falls back to the lock-then-count path below (still holding the
# lock, so that count is fresh). No row also means no open batch, or an item that fills it:
# the fallback creates and closes them.
_APPEND_ITEM = (
    "WITH open AS (SELECT batch_no, max_batch_size FROM batchyard_batches "
    "WHERE base_id = :base AND status = 'accumulating' {for_update}), "
    "next AS (SELECT o.batch_no, o.max_batch_size, (SELECT COALESCE(MAX(i.position), -1) + 1 "
    "FROM batchyard_items i WHERE i.batch_no = o.batch_no) AS position FROM open o) "
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at) "
    "SELECT batch_no, position, :payload, {now} FROM next WHERE position + 1 < max_batch_size "
    "ON CONFLICT DO NOTHING RETURNING batch_no, position, "
    "(SELECT b.batch_id FROM batchyard_batches b "
    "WHERE b.batch_no = batchyard_items.batch_no) AS batch_id, "
    "(SELECT b.max_batch_size FROM batchyard_batches b "
    "WHERE b.batch_no = batchyard_items.batch_no) AS max_batch_size"
)
# The same add at a position remembered from this process's last add to the batch, without
# counting. A remembered position may be stale, never wrong by being too high: an open
# batch's positions are 0..n-1 (items are appended, and removed only once the batch is
# closed), a batch number is never given twice, and a position is remembered only from a
# committed add. So the item lands exactly when the batch is still open and the position is
# still free - both checked by the statement, the batch row locked (PostgreSQL) so that a
# concurrent close waits for it, or is waited for and seen. Otherwise nothing is written.
_APPEND_AT = (
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at) "
    "SELECT :batch_no, :position, :payload, {now} WHERE EXISTS (SELECT 1 FROM batchyard_batches "
    "WHERE batch_no = :batch_no AND status = 'accumulating' {for_update}) "
    "ON CONFLICT DO NOTHING"
)
_ITEM_COUNT = "(SELECT COUNT(*) FROM batchyard_items i WHERE i.batch_no = b.batch_no)"
_FAILED_COUNT = ("(SELECT COUNT(*) FROM batchyard_item_failures f "
                 "WHERE f.batch_no = b.batch_no)")
# Counts are derived, never kept in the batch row: an add then writes its items and nothing
# else (a second page per commit halved the add rate), and the counts cannot drift.
_PENDING_COUNT = (f"CASE WHEN b.status IN {FINISHED_SQL} THEN 0 "
                  f"WHEN {_FAILED_COUNT} > 0 THEN {_FAILED_COUNT} ELSE {_ITEM_COUNT} END")
_BATCH_COLUMNS = (
    "b.batch_id, b.batch_no, b.base_id, b.sequence, b.status, b.handler, b.max_batch_size, "
    "b.flush_interval, b.max_attempts, b.attempts, b.idempotency_key, b.flush_reason, "
    "b.last_error, b.created_at, b.updated_at, b.completed_at, "
    f"{_ITEM_COUNT} AS item_count, {_PENDING_COUNT} AS pending_count"
)
# Pending items: those a partial flush recorded as failed, or all of them when none did.
_PENDING_ITEMS = (
    "SELECT i.position, i.payload FROM batchyard_items i WHERE i.batch_no = :batch_no AND ("
    "NOT EXISTS (SELECT 1 FROM batchyard_item_failures f WHERE f.batch_no = :batch_no) OR "
    "EXISTS (SELECT 1 FROM batchyard_item_failures f WHERE f.batch_no = i.batch_no "
    "AND f.position = i.position)) ORDER BY i.position"
)


def _appended(batch_id: str) -> AddResult:
    """The result of a single-item add that left room in its batch."""
    return AddResult(batch_id=batch_id, item_count=1, flushed=False,
                     status=BatchStatus.ACCUMULATING)


@dataclass(slots=True)
class _OpenBatch:
    """What this process last saw of a base's open batch: where its next item goes. Threads
    may race on it: each sets a position just past an item committed there, so it can lag
    behind the batch's count (an add then falls back to counting), never pass it."""

    batch_no: int
    position: int
    max_batch_size: int
    result: AddResult  # what an add that lands here returns (the same every time)


class Accumulator:
    """Named batches on one yard's store. Reached through `Yard` methods."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        runtime.kinds.add(TaskKind(FLUSH_TASK, self.run_flush, on_dead=self.on_dead_flush))
        self._configs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._open: dict[str, _OpenBatch] = {}  # a hint per base id, checked by each use
        self._bases: set[str] = set()  # base ids whose row is known to exist (never deleted)

    # -- adding ---------------------------------------------------------------------------

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
        base, _ = split_base(batch_id)
        config = self.config(max_batch_size, on_flush, flush_interval, max_attempts)
        encoded = encode_items(items)
        if not encoded:
            return AddResult(batch_id=base, item_count=0, flushed=False, status="unchanged")
        now = self.runtime.now()
        if len(encoded) == 1:
            appended = self._append(base, encoded[0], now)
            if appended is not None:
                return appended
        self.ensure_bases([base])
        with self.store.transaction(now, pipeline=True) as tx:
            return self._fill(tx, base, encoded, config)

    def ensure_bases(self, bases: Iterable[str]) -> None:
        """Make the row of each base - the lock its adders queue on, see `_LOCK_BASE` -
        before a transaction adds to it: a transaction that had to make the row would take
        that lock late, after the open batch's, and could deadlock with another adder."""
        for base in bases:
            if base not in self._bases:
                self.store.execute(_INSERT_BASE, {"base": base})
                if len(self._bases) >= 10_000:
                    self._bases.clear()  # a bound, for endless distinct base ids
                self._bases.add(base)

    def _append(self, base: str, payload: str, now: float | None) -> AddResult | None:
        """Add one item that leaves room in its batch, as one statement (at the remembered
        position when there is one, counted otherwise); None when that does not apply."""
        seen = self._open.get(base)
        if seen is not None:
            if seen.position + 1 >= seen.max_batch_size:
                # the item fills the batch, or it is full: a transaction closes or opens one
                self._open.pop(base, None)  # (another thread may have dropped it already)
                return None
            position = seen.position
            if self.store.execute(_APPEND_AT, {"batch_no": seen.batch_no, "position": position,
                                               "payload": payload}, now):
                seen.position = position + 1
                return seen.result
        row = self.store.one(_APPEND_ITEM, {"base": base, "payload": payload}, now)
        if row is None:
            self._open.pop(base, None)
            return None
        seen = _OpenBatch(row["batch_no"], row["position"] + 1, row["max_batch_size"],
                          _appended(row["batch_id"]))
        self._remember(base, seen)
        return seen.result

    def _remember(self, base: str, seen: _OpenBatch) -> None:
        """Note where the next item of `base` goes (only once what told us is committed)."""
        if len(self._open) >= 1000 and base not in self._open:
            self._open.clear()  # a bound, for producers of endless distinct base ids
        self._open[base] = seen

    def config(
        self,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None,
        max_attempts: int | None,
    ) -> dict[str, Any]:
        """The validated batch configuration; callers repeat theirs, so it is remembered.
        The key holds each value's type (True == 1 == 1.0 as keys, yet only 1 is valid), and
        only handler names: a callable's name can change when a name is registered again."""
        if not isinstance(on_flush, str):
            return self._validate(max_batch_size, on_flush, flush_interval, max_attempts)
        key = (type(max_batch_size), max_batch_size, on_flush, type(flush_interval),
               flush_interval, type(max_attempts), max_attempts, self.runtime.retry.max_attempts)
        config = self._configs.get(key)
        if config is None:
            config = self._validate(max_batch_size, on_flush, flush_interval, max_attempts)
            if len(self._configs) < 1000:
                self._configs[key] = config
        return config

    def _validate(
        self,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None,
        max_attempts: int | None,
    ) -> dict[str, Any]:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) \
                or max_batch_size <= 0:
            raise InvalidInput(f"max_batch_size must be a positive integer, not "
                               f"{max_batch_size!r}", field="max_batch_size")
        interval = None
        if flush_interval is not None:
            if isinstance(flush_interval, bool) or not isinstance(
                flush_interval, (int, float, timedelta)
            ):
                raise InvalidInput("flush_interval must be seconds or a timedelta",
                                   field="flush_interval")
            interval = seconds(flush_interval)
            if not 0 < interval <= MAX_FLUSH_INTERVAL_SECONDS:
                raise InvalidInput(f"flush_interval must be positive and at most "
                                   f"{MAX_FLUSH_INTERVAL_SECONDS:.0f} s, not {flush_interval!r}",
                                   field="flush_interval")
        attempts = self.runtime.retry.max_attempts if max_attempts is None else max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidInput(f"max_attempts must be a positive integer, not {attempts!r}",
                               field="max_attempts")
        return {
            "handler": self.runtime.handlers.name_of(on_flush),
            "max_batch_size": max_batch_size,
            "flush_interval": interval,
            "max_attempts": attempts,
        }

    def add_encoded(
        self, tx: Tx, base: str, encoded: list[str], config: dict[str, Any]
    ) -> AddResult:
        """Add JSON-encoded items inside `tx`, filling and closing batches as they fill.
        The caller has made the base's row first (`ensure_bases`, before `tx` began).

        The base's row, then the open batch's, are locked (PostgreSQL) so concurrent adders
        to one base queue instead of conflicting; then its count is read in a statement of
        its own, which sees whatever the adder before us committed. Only items are written,
        until a batch fills.
        """
        if len(encoded) == 1:
            appended = tx.one(_APPEND_ITEM, {"base": base, "payload": encoded[0]})
            if appended is not None:
                return _appended(appended["batch_id"])
        return self._fill(tx, base, encoded, config)

    def _fill(self, tx: Tx, base: str, encoded: list[str], config: dict[str, Any]) -> AddResult:
        # sent together (one round trip when pipelined), each statement after the lock
        # before it is held, so that each sees what the previous holder committed
        params = {"base": base}
        locked_base = tx.execute(_LOCK_BASE, params)
        locked = tx.execute(_LOCK_OPEN_BATCH, params)
        counted = tx.execute(_COUNT_OPEN_BATCH, params)
        if locked_base.fetchone() is None:
            # no row for the base (a caller that did not ensure it): make it, take its
            # lock, and look again - another adder may have opened a batch meanwhile
            tx.execute(_INSERT_BASE, params)
            tx.one(_LOCK_BASE, params)
            locked = tx.execute(_LOCK_OPEN_BATCH, params)
            counted = tx.execute(_COUNT_OPEN_BATCH, params)
        open_batch = locked.fetchone()
        count = counted.fetchone()["n"]
        total = len(encoded)
        full: list[tuple[str, int]] = []  # (id, max attempts) of batches closed by size
        room, open_no = 0, 0
        if open_batch is not None:
            open_no, limit = open_batch["batch_no"], open_batch["max_batch_size"]
            room = min(total, limit - count)
            last = _OpenBatch(open_no, count + room, limit, _appended(open_batch["batch_id"]))
            if count + room == limit:
                # closed before the next batch opens: a base has one open batch at most
                tx.execute(_CLOSE_FULL, {"batch_no": open_no})
                full.append((open_batch["batch_id"], open_batch["max_attempts"]))
        size = config["max_batch_size"]
        new = self._create_batches(tx, base, config, total - room)
        for index, (batch_id, batch_no) in enumerate(new):
            filled = min(size, total - room - index * size)
            last = _OpenBatch(batch_no, filled, size, _appended(batch_id))
            if filled == size:
                full.append((batch_id, config["max_attempts"]))
        if all(no == new[0][1] + i for i, (_, no) in enumerate(new)):
            self._insert_items(tx, encoded, room, open_no, count, new[0][1] if new else 0, size)
        else:  # numbers not consecutive: batch by batch
            self._insert_items(tx, encoded[:room], room, open_no, count)
            for index, (_, batch_no) in enumerate(new):
                chunk = encoded[room + index * size : room + (index + 1) * size]
                self._insert_items(tx, chunk, len(chunk), batch_no, 0)
        self._schedule_size_flushes(tx, full)
        last_full = last.position == last.max_batch_size
        if config["flush_interval"] is not None and new and not last_full:
            # the interval timer is set once, at creation, on the batch left open
            self._schedule_flush(tx, last.result.batch_id, config["max_attempts"],
                                 delay=config["flush_interval"])
        # the next single-item add of this base goes straight to its position - or, when
        # the last batch is full, straight to the transaction that opens the next one
        tx.after_commit.append(lambda: self._remember(base, last))
        return AddResult(
            batch_id=last.result.batch_id,
            item_count=total,
            flushed=bool(full),
            status=BatchStatus.FLUSHING if last_full else BatchStatus.ACCUMULATING,
            flushed_batch_ids=tuple(batch_id for batch_id, _ in full),
        )

    @staticmethod
    def _insert_items(tx: Tx, encoded: list[str], room: int, open_no: int, count: int,
                      first_no: int = 0, size: int = 1) -> None:
        if encoded:
            tx.execute(_INSERT_ITEMS, {"room": room, "open_no": open_no, "count": count,
                                       "first_no": first_no, "size": size,
                                       "values": orjson.dumps(encoded).decode()})

    def _create_batches(self, tx: Tx, base: str, config: dict[str, Any],
                        items: int) -> list[tuple[str, int]]:
        """Make the base's next batches for `items` items, as (id, number) in sequence
        order: those they fill closed for their size, the last open if they leave it room.
        The caller holds the base's lock (see `_LOCK_BASE`) and has filled its open batch."""
        if items <= 0:
            return []
        count = -(-items // config["max_batch_size"])
        first = int(tx.one(
            "UPDATE batchyard_batch_bases SET next_sequence = next_sequence + :count "
            "WHERE base_id = :base RETURNING next_sequence - :count AS first",
            {"base": base, "count": count},
        )["first"])
        keys = orjson.dumps([uuid.uuid4().hex for _ in range(count)]).decode()
        params = {"base": base, "first": first}
        tx.execute(_INSERT_BATCHES, {**params, "values": keys,
                                     "full": items // config["max_batch_size"], **config})
        numbers = tx.one(_NEW_BATCH_NUMBERS, params)
        if numbers["hi"] - numbers["lo"] == count - 1:  # consecutive, in sequence order
            return [(f"{base}::{first + i}", numbers["lo"] + i) for i in range(count)]
        return [(f"{base}::{row['sequence']}", row["batch_no"]) for row in tx.all(
            "SELECT sequence, batch_no FROM batchyard_batches WHERE base_id = :base "
            "AND sequence >= :first ORDER BY sequence", params)]

    def _schedule_size_flushes(self, tx: Tx, full: list[tuple[str, int]]) -> None:
        """Schedule the flushes (due now) of batches closed for their size."""
        for attempts in {attempts for _, attempts in full}:  # one value, nearly always
            self.tasks.enqueue_many(tx, FLUSH_TASK, [
                (f"flush:{batch_id}", {"batch_id": batch_id})
                for batch_id, max_attempts in full if max_attempts == attempts
            ], max_attempts=attempts)

    def _open_batch(self, tx: Tx, base: str) -> dict[str, Any] | None:
        row = tx.one(_LOCK_OPEN_BATCH, {"base": base})
        return None if row is None else dict(row)

    def _schedule_flush(self, tx: Tx, batch_id: str, max_attempts: int,
                        delay: float = 0.0) -> None:
        self.tasks.enqueue(tx, FLUSH_TASK, {"batch_id": batch_id}, delay=delay,
                           key=f"flush:{batch_id}", max_attempts=max_attempts)

    # -- flushing by hand ----------------------------------------------------------------

    def flush(self, batch_id: str, reason: FlushReason = FlushReason.MANUAL) -> FlushResult:
        """Close a batch (the open batch of a base id, or a batch id) and flush it now."""
        base, sequence = split_base(batch_id)
        with self.store.transaction(self.runtime.now()) as tx:
            if sequence is None:
                row = self._open_batch(tx, base)
                if row is None:
                    return FlushResult(batch_id=None, item_count=0, flushed=False, status=None,
                                       reason="no accumulating batch")
                batch_id = row["batch_id"]
            batch = self._close(tx, batch_id, reason)
            if batch is None:
                raise NotFound(f"no batch {batch_id!r}", batch_id=batch_id)
            if batch["status"] != BatchStatus.FLUSHING:
                return FlushResult(batch_id=batch_id, item_count=batch["item_count"],
                                   flushed=False, status=batch["status"],
                                   reason=f"batch is {batch['status']}")
            self._schedule_flush(tx, batch_id, batch["max_attempts"])
            return FlushResult(batch_id=batch_id, item_count=batch["item_count"], flushed=True,
                               status=BatchStatus.FLUSHING, reason=batch["flush_reason"])

    def trigger_interval_flushes(self) -> list[str]:
        """Close and schedule every batch whose interval has passed (for cron-driven use);
        return their ids. `run_worker(wait=False)` then runs the flushes."""
        with self.store.transaction(self.runtime.now()) as tx:
            due = tx.all(
                "SELECT batch_id, max_attempts FROM batchyard_batches "
                "WHERE status = 'accumulating' AND flush_interval IS NOT NULL "
                "AND created_at + flush_interval <= {now} ORDER BY created_at"
            )
            for row in due:
                self._close(tx, row["batch_id"], FlushReason.INTERVAL)
                self._schedule_flush(tx, row["batch_id"], row["max_attempts"])
        return [row["batch_id"] for row in due]

    def _close(self, tx: Tx, batch_id: str, reason: str) -> Any:
        tx.execute(
            "UPDATE batchyard_batches SET status = 'flushing', flush_reason = :reason, "
            "flush_requested_at = {now}, updated_at = {now} "
            "WHERE batch_id = :batch_id AND status = 'accumulating'",
            {"batch_id": batch_id, "reason": str(reason)},
        )
        return tx.one(f"SELECT {_BATCH_COLUMNS} FROM batchyard_batches b "
                      "WHERE b.batch_id = :batch_id", {"batch_id": batch_id})

    # -- the flush task -------------------------------------------------------------------

    def run_flush(self, task: Task) -> None:
        """Run one attempt of a batch's flush (the worker calls this for FLUSH_TASK)."""
        batch_id = task.payload["batch_id"]
        if task.attempts > task.max_attempts:
            # every attempt so far died with its worker: stop, or a poison batch loops forever
            self._give_up(task, f"gave up after {task.max_attempts} attempts whose worker "
                                f"was lost (last error: {task.last_error})")
            return
        with self.store.transaction(self.runtime.now()) as tx:
            # a timer that fires on an open batch closes it: that is the interval flush
            batch = self._close(tx, batch_id, FlushReason.INTERVAL)
            if batch is None or batch["status"] != BatchStatus.FLUSHING:
                self.tasks.complete(tx, task)  # deleted, completed or dead: nothing to do
                return
            tx.execute("UPDATE batchyard_batches SET attempts = attempts + 1 "
                       "WHERE batch_id = :batch_id", {"batch_id": batch_id})
            rows = tx.all(_PENDING_ITEMS, {"batch_no": batch["batch_no"]})
        if not rows:  # every item already delivered (a partial flush's last retry raced)
            with self.store.transaction(self.runtime.now()) as tx:
                self.tasks.complete(tx, task)
                self._finish(tx, batch_id)
            return
        context = FlushContext(
            batch_id=batch_id,
            base_id=batch["base_id"],
            sequence=int(batch["sequence"]),
            attempt=int(batch["attempts"]) + 1,
            idempotency_key=batch["idempotency_key"],
            reason=batch["flush_reason"],
        )
        items = [orjson.loads(row["payload"]) for row in rows]
        started_wall, started = self.runtime.clock.time(), time.perf_counter()
        failures: dict[int, str] = {}
        error: str | None = None
        raised: Exception | None = None
        try:
            self.runtime.handlers.call(batch["handler"], items, context)
        except ItemFailures as signal:
            raised = signal
            bad = [i for i in signal.failures if not 0 <= i < len(items)]
            if bad:
                error = f"ItemFailures named indexes outside the batch: {bad}"
            else:
                failures = signal.failures
                error = f"{len(failures)} of {len(items)} items failed"
        except Exception as exc:
            raised = exc
            error = error_text(exc)
        duration = time.perf_counter() - started
        traceback = None if raised is None else traceback_text(raised)
        dead = self._record(task, batch, context, rows, failures, error, traceback,
                            started_wall, duration)
        if raised is not None:
            # after the commit: the line says what the books say (retried, or dead)
            log_failure(log, f"flush of {batch_id}", raised, final=dead, batch_id=batch_id,
                        attempt=context.attempt, max_attempts=task.max_attempts,
                        handler=batch["handler"], duration_seconds=round(duration, 6))

    def _record(self, task: Task, batch: Any, context: FlushContext, rows: list[Any],
                failures: dict[int, str], error: str | None, traceback: str | None,
                started: float, duration: float) -> bool:
        """Write the attempt's outcome; whether the batch is dead now."""
        whole_failure = error is not None and not failures
        outcome = "failed" if whole_failure else ("partial" if failures else "completed")
        delay = None if outcome == "completed" else self.runtime.retry.next_delay(
            task.attempts, max_attempts=task.max_attempts)
        dead = outcome != "completed" and delay is None
        with self.store.transaction(self.runtime.now()) as tx:
            batch_id = context.batch_id
            if outcome == "completed":
                self.tasks.complete(tx, task)
            elif dead:
                self.tasks.dead_letter(tx, task, error or "")
            else:
                self.tasks.retry(tx, task, error or "", delay or 0.0)
            if not whole_failure:
                # what is still pending is exactly what this attempt reported failed
                tx.execute("DELETE FROM batchyard_item_failures WHERE batch_no = :batch_no",
                           {"batch_no": batch["batch_no"]})
                if failures:
                    tx.executemany(
                        "INSERT INTO batchyard_item_failures (batch_no, position, error) "
                        "VALUES (:batch_no, :position, :error)",
                        [{"batch_no": batch["batch_no"], "position": rows[i]["position"],
                          "error": msg} for i, msg in sorted(failures.items())],
                    )
            tx.execute(
                "INSERT INTO batchyard_flushes (batch_id, base_id, sequence, attempt, reason, "
                "outcome, item_count, failed_count, error, worker_id, started_at, duration, "
                "traceback) VALUES (:batch_id, :base_id, :sequence, :attempt, :reason, "
                ":outcome, :item_count, :failed_count, :error, :worker_id, :started, "
                ":duration, :traceback)",
                {"batch_id": batch_id, "base_id": context.base_id,
                 "sequence": context.sequence, "attempt": context.attempt,
                 "reason": context.reason, "outcome": outcome, "item_count": len(rows),
                 "failed_count": len(rows) if whole_failure else len(failures),
                 "error": error, "worker_id": self.runtime.worker_id, "started": started,
                 "duration": duration, "traceback": traceback},
            )
            if outcome == "completed":
                self._finish(tx, batch_id)
            else:
                tx.execute(
                    "UPDATE batchyard_batches SET last_error = :error, updated_at = {now}"
                    + (", status = 'dead'" if dead else "") + " WHERE batch_id = :batch_id",
                    {"batch_id": batch_id, "error": error},
                )
        delivered = 0 if whole_failure else len(rows) - len(failures)
        metrics.flush_recorded(context.reason, outcome, delivered, duration)
        return dead

    def _give_up(self, task: Task, error: str) -> None:
        log.error("flush of %s is dead: %s", task.payload["batch_id"], error,
                  extra={"batch_id": task.payload["batch_id"], "attempt": task.attempts,
                         "max_attempts": task.max_attempts, "final": True})
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.dead_letter(tx, task, error)
            self.on_dead_flush(tx, task, error)

    def on_dead_flush(self, tx: Tx, task: Task, error: str) -> None:
        """The books of a flush task that went to the dead letters other than by its own
        recording (the worker's failure path: an exception in the runner, an undecodable
        item; or workers lost on every attempt): its batch is dead, listed among the dead
        batches, with the error in its history - never left `flushing` with no task."""
        params = {"batch_id": task.payload["batch_id"], "error": error,
                  "worker_id": self.runtime.worker_id}
        moved = tx.execute("UPDATE batchyard_batches SET status = 'dead', last_error = :error, "
                           "updated_at = {now} WHERE batch_id = :batch_id "
                           "AND status = 'flushing'", params).rowcount
        if moved:
            tx.execute(
                "INSERT INTO batchyard_flushes (batch_id, base_id, sequence, attempt, reason, "
                "outcome, item_count, failed_count, error, worker_id, started_at, duration) "
                "SELECT b.batch_id, b.base_id, b.sequence, b.attempts, "
                f"COALESCE(b.flush_reason, 'manual'), 'failed', {_PENDING_COUNT}, "
                f"{_PENDING_COUNT}, :error, :worker_id, {{now}}, 0 FROM batchyard_batches b "
                # an attempt whose outcome was recorded keeps it
                "WHERE b.batch_id = :batch_id ON CONFLICT (batch_id, attempt) DO NOTHING",
                params)

    def _finish(self, tx: Tx, batch_id: str) -> None:
        tx.execute(
            "UPDATE batchyard_batches SET status = 'completed', "
            "last_error = NULL, completed_at = {now}, updated_at = {now} "
            "WHERE batch_id = :batch_id",
            {"batch_id": batch_id},
        )

    # -- dead letters ---------------------------------------------------------------------

    def redrive_batch(self, batch_id: str) -> FlushResult:
        """Flush a dead batch again, with a fresh set of attempts."""
        split_base(batch_id)
        with self.store.transaction(self.runtime.now()) as tx:
            batch = tx.one(f"SELECT {_BATCH_COLUMNS} FROM batchyard_batches b "
                           "WHERE b.batch_id = :batch_id", {"batch_id": batch_id})
            if batch is None:
                raise NotFound(f"no batch {batch_id!r}", batch_id=batch_id)
            if batch["status"] != BatchStatus.DEAD:
                raise Conflict(f"batch {batch_id!r} is {batch['status']}, not dead",
                               batch_id=batch_id)
            tx.execute("UPDATE batchyard_batches SET status = 'flushing', "
                       "flush_reason = 'redrive', updated_at = {now} "
                       "WHERE batch_id = :batch_id", {"batch_id": batch_id})
            self.tasks.redrive(tx, key=f"flush:{batch_id}")
        return FlushResult(batch_id=batch_id, item_count=batch["pending_count"], flushed=True,
                           status=BatchStatus.FLUSHING, reason=FlushReason.REDRIVE)

    # -- reading --------------------------------------------------------------------------

    def get_batch_status(self, batch_id: str) -> list[BatchInfo]:
        """The active (accumulating, flushing, dead) batches of a base id, or one batch."""
        base, sequence = split_base(batch_id)
        with self.store.transaction(self.runtime.now()) as tx:
            now = tx.clock()
            if sequence is None:
                rows = tx.all(f"SELECT {_BATCH_COLUMNS} FROM batchyard_batches b "
                              f"WHERE b.base_id = :base AND b.status NOT IN {FINISHED_SQL} "
                              "ORDER BY b.sequence", {"base": base})
            else:
                rows = tx.all(f"SELECT {_BATCH_COLUMNS} FROM batchyard_batches b "
                              "WHERE b.batch_id = :batch_id", {"batch_id": batch_id})
        return [_batch_info(row, now) for row in rows]

    def list_batches(self, status: str | None = None, limit: int = 100) -> list[BatchInfo]:
        with self.store.transaction(self.runtime.now()) as tx:
            now = tx.clock()
            rows = tx.all(f"SELECT {_BATCH_COLUMNS} FROM batchyard_batches b "
                          "WHERE (CAST(:status AS TEXT) IS NULL OR b.status = :status) "
                          "ORDER BY b.updated_at DESC LIMIT :limit",
                          {"status": status, "limit": limit})
        return [_batch_info(row, now) for row in rows]

    def get_flush_history(self, batch_id: str, limit: int = 20) -> list[FlushRecord]:
        """Flush attempts of a base id (or of one batch), newest first."""
        base, sequence = split_base(batch_id)
        where = "base_id = :base" if sequence is None else "batch_id = :batch_id"
        with self.store.transaction() as tx:
            rows = tx.all(
                "SELECT batch_id, sequence, attempt, reason, outcome, item_count, failed_count, "
                "error, worker_id, started_at, duration, traceback "
                f"FROM batchyard_flushes WHERE {where} "
                "ORDER BY id DESC LIMIT :limit",
                {"base": base, "batch_id": batch_id, "limit": limit},
            )
        return [flush_record(r) for r in rows]

    def delete_batch(self, batch_id: str) -> None:
        """Delete a completed batch and its items; refused while it flushes or holds items."""
        base, sequence = split_base(batch_id)
        if sequence is None:
            raise InvalidInput(f"delete_batch needs a full batch id like '{base}::0'",
                               field="batch_id")
        with self.store.transaction(self.runtime.now()) as tx:
            row = tx.one(f"SELECT {_BATCH_COLUMNS} FROM batchyard_batches b "
                         "WHERE b.batch_id = :batch_id", {"batch_id": batch_id})
            if row is None:
                raise NotFound(f"no batch {batch_id!r}", batch_id=batch_id)
            if row["status"] == BatchStatus.FLUSHING:
                raise Conflict(f"batch {batch_id!r} is flushing", batch_id=batch_id,
                               reason="flushing")
            if row["pending_count"]:
                raise Conflict(
                    f"batch {batch_id!r} has {row['pending_count']} pending items "
                    f"(status {row['status']}); flush or redrive it first",
                    batch_id=batch_id, reason="pending items",
                )
            for table in ("batchyard_items", "batchyard_item_failures", "batchyard_batches"):
                tx.execute(f"DELETE FROM {table} WHERE batch_no = :batch_no",
                           {"batch_no": row["batch_no"]})

    def prune(self, older_than: float) -> int:
        """Delete completed (and discarded) batches, their items and flush history older
        than `older_than` seconds; return how many batches went."""
        finished = f"status IN {FINISHED_SQL} AND completed_at < {{now}} - :age"
        with self.store.transaction(self.runtime.now()) as tx:
            params = {"age": older_than}
            for table in ("batchyard_items", "batchyard_item_failures"):
                tx.execute(f"DELETE FROM {table} WHERE batch_no IN (SELECT batch_no FROM "
                           f"batchyard_batches WHERE {finished})", params)
            gone = int(tx.execute(f"DELETE FROM batchyard_batches WHERE {finished}",
                                  params).rowcount)
            tx.execute("DELETE FROM batchyard_flushes WHERE started_at < {now} - :age", params)
        return gone


def _batch_info(row: Any, now: float) -> BatchInfo:
    return BatchInfo(
        batch_id=row["batch_id"], base_id=row["base_id"], sequence=row["sequence"],
        status=row["status"], item_count=row["item_count"], pending_count=row["pending_count"],
        max_batch_size=row["max_batch_size"], flush_interval=row["flush_interval"],
        handler=row["handler"], attempts=row["attempts"], max_attempts=row["max_attempts"],
        flush_reason=row["flush_reason"], last_error=row["last_error"],
        created_at=to_datetime(row["created_at"]),
        updated_at=to_datetime(row["updated_at"]),
        completed_at=to_datetime(row["completed_at"]),
        age_seconds=max(0.0, now - row["created_at"]),
    )


def flush_record(r: Any) -> FlushRecord:
    """A row of batchyard_flushes as a `FlushRecord`."""
    return FlushRecord(
        batch_id=r["batch_id"], sequence=int(r["sequence"]), attempt=int(r["attempt"]),
        reason=r["reason"], outcome=r["outcome"], item_count=int(r["item_count"]),
        failed_count=int(r["failed_count"]), error=r["error"], worker_id=r["worker_id"],
        started_at=to_datetime(r["started_at"]),
        duration_seconds=float(r["duration"]), traceback=r["traceback"],
    )
