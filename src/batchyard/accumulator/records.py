"""The accumulator's records: batch and flush states, what its calls return, batch ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from batchyard.clock import to_datetime
from batchyard.errors import InvalidInput

FLUSH_TASK = "accumulator.flush"


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
# the active ones as SQL: the index of live batches holds rows of these statuses only, and a
# query that names them as written here is seen by both planners to be covered by it
ACTIVE_SQL = "('accumulating', 'flushing', 'dead')"


class FlushReason(StrEnum):
    SIZE = "size"
    INTERVAL = "interval"
    IDLE = "idle"  # no item was added for the batch's flush_after_idle
    MANUAL = "manual"
    REDRIVE = "redrive"
    MAX_OPEN_KEYS = "max_open_keys"  # closed early: its batcher had no room for a new key


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
    ordered: bool = False  # its base hands batches over in sequence order
    # a flushing batch of an ordered base: the batch before it that it waits for
    blocked_by: str | None = None
    max_batch_bytes: int | None = None  # the batch's byte limit, if it has one
    byte_count: int | None = None  # bytes of its items' JSON (kept with a byte limit only)
    flush_after_idle: float | None = None  # its debounce, if it has one
    last_added_at: datetime | None = None  # when its newest item was added

    @property
    def flushes_at(self) -> datetime | None:
        """When an accumulating batch's timer closes it unless more items come (None: no
        timer, or not accumulating): `flush_interval` after its creation, and with a
        debounce `flush_after_idle` after its last add if that is sooner."""
        if self.status != BatchStatus.ACCUMULATING:
            return None
        due = [] if self.flush_interval is None else [self.created_at + _span(self.flush_interval)]
        if self.flush_after_idle is not None:
            since = self.last_added_at or self.created_at
            due.append(since + _span(self.flush_after_idle))
        return min(due, default=None)


@dataclass(frozen=True)
class BatchPage:
    """One page of `Yard.page_batches`: pass `next_cursor` back for the next page (None on
    the last). `total` counts every batch the filter matches."""

    batches: list[BatchInfo]
    next_cursor: int | None
    total: int


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


def _span(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


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
        raise InvalidInput(
            f"{field} {batch_id!r}: the part after '::' must be a number", field=field
        )
    return base, int(sequence)


def batch_info(row: Any, now: float) -> BatchInfo:
    return BatchInfo(
        batch_id=row["batch_id"],
        base_id=row["base_id"],
        sequence=row["sequence"],
        status=row["status"],
        item_count=row["item_count"],
        pending_count=row["pending_count"],
        max_batch_size=row["max_batch_size"],
        flush_interval=row["flush_interval"],
        handler=row["handler"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        flush_reason=row["flush_reason"],
        last_error=row["last_error"],
        created_at=to_datetime(row["created_at"]),
        updated_at=to_datetime(row["updated_at"]),
        completed_at=to_datetime(row["completed_at"]),
        age_seconds=max(0.0, now - row["created_at"]),
        ordered=bool(row["ordered"]),
        blocked_by=row["blocked_by"],
        max_batch_bytes=row["max_batch_bytes"],
        byte_count=row["byte_count"],
        flush_after_idle=row["flush_after_idle"],
        last_added_at=to_datetime(row["last_added_at"]),
    )


def flush_record(r: Any) -> FlushRecord:
    """A row of batchyard_flushes as a `FlushRecord`."""
    return FlushRecord(
        batch_id=r["batch_id"],
        sequence=int(r["sequence"]),
        attempt=int(r["attempt"]),
        reason=r["reason"],
        outcome=r["outcome"],
        item_count=int(r["item_count"]),
        failed_count=int(r["failed_count"]),
        error=r["error"],
        worker_id=r["worker_id"],
        started_at=to_datetime(r["started_at"]),
        duration_seconds=float(r["duration"]),
        traceback=r["traceback"],
    )
