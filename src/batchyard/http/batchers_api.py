"""Batchyard's routes over batchers: items added through a batcher that the application
registered (its key and its batches' configuration live in code, like its handlers), the
batchers with their settings and counts, a batcher's unfinished batches by key, and its
recent flush history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from batchyard.accumulator import AddResult, BatcherStatus, BatcherSummary, FlushRecord
from batchyard.http.limits import MAX_ITEMS_PER_REQUEST
from batchyard.http.paging import Cursor, Limit, Page, offset_of, positional_page, slice_page
from batchyard.yard import Yard

router = APIRouter(tags=["batchers"])


class BatcherItems(BaseModel):
    items: list[Any] = Field(max_length=MAX_ITEMS_PER_REQUEST)


class BatcherAdded(BaseModel):
    """One result per key, in the order the keys first came in the request."""

    results: list[AddResult]


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


@router.post("/batchers/{name}/items")
def add(name: str, body: BatcherItems, request: Request) -> BatcherAdded:
    """Add items through a registered batcher: each to its key's batches; committed when
    this returns. 404 for a batcher the application did not register."""
    return BatcherAdded(results=_yard(request).add(name, body.items))


@router.get("/batchers/{name}")
def status(name: str, request: Request) -> BatcherStatus:
    """A batcher's unfinished (accumulating, flushing, dead) batches by key."""
    return _yard(request).get_batcher_status(name)


@router.get("/batchers")
def batchers(
    request: Request,
    prefix: Annotated[str | None, Query(max_length=200, description="name starts with")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[BatcherSummary]:
    """The batchers the application registered, by name: each one's settings, open keys,
    items waiting, and its last hour's items flushed and failed."""
    yard = _yard(request)
    page = slice_page(yard.list_batchers(prefix), limit, cursor)
    # only the page's batchers are read from the store
    summaries = yard.get_batcher_summaries([b.name for b in page.data])
    return Page(data=summaries, total=page.total, next_cursor=page.next_cursor)


@router.get("/batchers/{name}/history")
def history(
    name: str,
    request: Request,
    limit: Limit = 20,
    cursor: Cursor = None,
    key_prefix: Annotated[
        str | None, Query(max_length=200, description="only keys starting with this")
    ] = None,
) -> Page[FlushRecord]:
    """Flush attempts of every key of a batcher in the last 24 hours, newest first
    (`total` is null: the history is not counted). 404 for an unknown batcher."""
    offset = offset_of(cursor)
    rows = _yard(request).get_batcher_history(name, limit + 1, offset, None, key_prefix)
    return positional_page(rows, limit, offset)
