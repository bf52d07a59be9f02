"""The iterator's records: job states, the page a source returns, what a handler gets, and
a job's status."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

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

    @property
    def batch(self) -> int:
        """The page's number, by its name before 0.2 (`page` is the name now)."""
        return self.page


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
