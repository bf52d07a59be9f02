"""Batchyard's routes over the accumulator: batches listed, read, added to, flushed,
redriven, discarded and deleted. Plain functions: Starlette runs them in its threadpool,
which suits the synchronous core."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from batchyard.accumulator import AddResult, BatchInfo, BatchStatus, FlushRecord, FlushResult
from batchyard.accumulator.items import MAX_PAGE, BatchItem, DiscardResult
from batchyard.http.limits import MAX_ITEMS_PER_REQUEST
from batchyard.http.paging import (
    Cursor,
    Limit,
    Page,
    decode_cursor,
    encode_cursor,
    offset_of,
    positional_page,
    slice_page,
)
from batchyard.yard import Yard

router = APIRouter(tags=["batches"])


class AddItems(BaseModel):
    """Items to add to a batch, with the batch's configuration."""

    items: list[Any] = Field(max_length=MAX_ITEMS_PER_REQUEST)
    # strict: `true` or `2.5` is a mistake to report, not a number to guess at
    max_batch_size: int = Field(gt=0, le=1_000_000, strict=True)
    on_flush: str = Field(min_length=1)
    flush_interval: float | None = Field(default=None, gt=0, strict=True)
    max_attempts: int | None = Field(default=None, ge=1, le=1000, strict=True)
    # hand the base's batches over in sequence order, each after the one before
    ordered: bool = Field(default=False, strict=True)
    max_batch_bytes: int | None = Field(default=None, gt=0, le=2**53, strict=True)
    flush_after_idle: float | None = Field(default=None, gt=0, strict=True)


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


@router.get("/batches")
def list_batches(
    request: Request, status: BatchStatus | None = None, limit: Limit = 100, cursor: Cursor = None
) -> Page[BatchInfo]:
    """Batches across all base ids, newest first; `total` counts those the filter matches."""
    key = decode_cursor(cursor, int)
    page = _yard(request).page_batches(
        None if status is None else status.value,
        limit=limit,
        cursor=None if key is None else int(key),
    )
    after = None if page.next_cursor is None else encode_cursor(page.next_cursor)
    return Page(data=page.batches, total=page.total, next_cursor=after)


@router.post("/batches/{batch_id:path}/items")
def add_items(batch_id: str, body: AddItems, request: Request) -> AddResult:
    """Add items to the open batch of a base id; committed when this returns."""
    return _yard(request).add_items(
        batch_id,
        body.items,
        max_batch_size=body.max_batch_size,
        on_flush=body.on_flush,
        flush_interval=body.flush_interval,
        max_attempts=body.max_attempts,
        ordered=body.ordered,
        max_batch_bytes=body.max_batch_bytes,
        flush_after_idle=body.flush_after_idle,
    )


@router.post("/batches/{batch_id:path}/flush")
def flush(batch_id: str, request: Request) -> FlushResult:
    """Close the open batch of a base id (or the given batch) and flush it now."""
    return _yard(request).flush(batch_id)


@router.get("/batches/{batch_id:path}/history")
def flush_history(
    batch_id: str, request: Request, limit: Limit = 20, cursor: Cursor = None
) -> Page[FlushRecord]:
    """Flush attempts, newest first (`total` is null: the history is not counted)."""
    offset = offset_of(cursor)
    rows = _yard(request).get_flush_history(batch_id, limit + 1, offset)
    return positional_page(rows, limit, offset)


@router.get("/batches/{batch_id:path}/items")
def batch_items(
    batch_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")] = 100,
    cursor: Cursor = None,
) -> Page[BatchItem]:
    """Items of one batch in order, each with its failure reason if it has one (`total` is
    null; the batch's status has its `item_count`)."""
    after = decode_cursor(cursor, int)
    # one row past the page says another follows (the store pages at most MAX_PAGE)
    wanted = min(limit + 1, MAX_PAGE)
    rows = _yard(request).get_batch_items(
        batch_id, after=None if after is None else int(after), limit=wanted
    )
    more = len(rows) > limit or len(rows) == wanted == limit
    shown = rows[:limit]
    next_cursor = encode_cursor(shown[-1].position) if more and shown else None
    return Page(data=shown, total=None, next_cursor=next_cursor)


@router.get("/batches/{batch_id:path}")
def batch_status(
    batch_id: str, request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[BatchInfo]:
    """Active batches of a base id in sequence order, or one batch (any status)."""
    return slice_page(_yard(request).get_batch_status(batch_id), limit, cursor)


@router.post("/batches/{batch_id:path}/redrive")
def redrive(batch_id: str, request: Request) -> FlushResult:
    """Flush a dead-lettered batch again."""
    return _yard(request).redrive_batch(batch_id)


@router.post("/batches/{batch_id:path}/discard")
def discard(batch_id: str, request: Request) -> DiscardResult:
    """Give up a dead batch: it becomes `discarded`, its items recorded as dropped."""
    return _yard(request).discard_batch(batch_id)


@router.delete("/batches/{batch_id:path}", status_code=204)
def delete_batch(batch_id: str, request: Request) -> Response:
    """Delete a batch that is neither flushing nor holding pending items."""
    _yard(request).delete_batch(batch_id)
    return Response(status_code=204)
