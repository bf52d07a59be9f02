"""The iterator's records: job states, the page a source returns, what a handler gets, and
a job's status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from batchyard.store import Tx


class IteratorState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({IteratorState.PENDING, IteratorState.RUNNING})
TERMINAL = frozenset({IteratorState.COMPLETED, IteratorState.FAILED, IteratorState.CANCELLED})


@dataclass(frozen=True)
class Page:
    """What `get_next_batch` returns (a dict with these keys works too)."""

    items: list[Any]
    cursor: Any = None
    done: bool = False
    total: int | None = None


@dataclass(frozen=True)
class PageContext:
    """What an iterator's handler gets beside a page's items."""

    job_id: str
    page: int  # 0-based number of this page in the job
    attempt: int
    idempotency_key: str
    tx: Tx | None = field(default=None, repr=False)  # transactional jobs only
    slice: int | None = None  # of a parallel job: the slice the page is from

    @property
    def batch(self) -> int:
        """The page's number, by its name before 0.2 (`page` is the name now)."""
        return self.page


@runtime_checkable
class SliceableSource(Protocol):
    """A source a parallel job can cut into ranges (`sources.sql_keyset`'s key ranges,
    the file sources' byte ranges).

    ``slice(cursor, parts)`` cuts what is left after `cursor` (the whole source when None)
    into at most `parts` cursors of ranges that do not overlap, in order, each with the
    number of items in it: its first page starts from that cursor, and its last page
    stops at the range's end."""

    def __call__(self, cursor: Any, batch_size: int) -> Any: ...

    def slice(self, cursor: Any, parts: int) -> list[tuple[Any, int]]: ...


@runtime_checkable
class PageReader(Protocol):
    """A source that reads a page in a transaction it is given (`sources.sql_keyset`, whose
    table is in the yard's own store): a step reads the next page in the transaction that
    checkpoints the one before - one transaction a page, not two.

    ``read(tx, cursor, batch_size)`` sends the page's query and returns what makes the page
    once the transaction has ended: in a pipelined transaction its rows come with the
    commit, no round trip of their own."""

    def read(self, tx: Tx, cursor: Any, batch_size: int) -> Callable[[], Any]: ...


@dataclass(frozen=True)
class SliceStatus:
    """One slice of a parallel job: a range of its source with its own cursor."""

    slice: int
    done: bool
    processed: int
    batches: int
    total: int  # items in its range when it was cut (less after it gave a part away)
    cursor: Any
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class IteratorStatus:
    job_id: str
    status: str
    processed: int
    batches: int
    cursor: Any
    total: int | None
    rate_per_second: float | None
    eta_seconds: float | None
    last_error: str | None
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    last_traceback: str | None = None  # of the last failed step: its end, at most 8 KB
    batch_size: int | None = None  # what the next page asks for (adaptive sizes move it)
    throttled_seconds: float = 0.0  # waited so far because the throttle asked
    parallelism: int = 1  # slices run at once (a parallel job's counts are their sums)
    slices: tuple[SliceStatus, ...] = ()  # of a parallel job, in the order they were cut
    # the handlers it runs, by their registered names
    get_next_batch: str | None = None
    process_batch: str | None = None


def as_page(value: Any) -> Page:
    if isinstance(value, Page):
        return value
    if isinstance(value, dict) and "items" in value:
        items = value["items"]
        if not isinstance(items, list):
            raise TypeError("get_next_batch returned items that are not a list")
        return Page(
            items=items,
            cursor=value.get("cursor"),
            done=bool(value.get("done")),
            total=value.get("total"),
        )
    raise TypeError(
        "get_next_batch must return a batchyard.Page or a dict with 'items', 'cursor' and 'done'"
    )
