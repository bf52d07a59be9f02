"""JSON routes over the yard's accumulator. Plain functions: Starlette runs them in its
threadpool, which suits the synchronous core."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from batchyard.accumulator import AddResult, BatchInfo, FlushRecord, FlushResult
from batchyard.accumulator.items import MAX_PAGE, BatchItem, DiscardResult
from batchyard.errors import StoreError
from batchyard.yard import Yard

router = APIRouter()
MAX_ITEMS_PER_REQUEST = 10_000


class AddItems(BaseModel):
    """Items to add to a batch, with the batch's configuration."""

    items: list[Any] = Field(max_length=MAX_ITEMS_PER_REQUEST)
    # strict: `true` or `2.5` is a mistake to report, not a number to guess at
    max_batch_size: int = Field(gt=0, le=1_000_000, strict=True)
    on_flush: str = Field(min_length=1)
    flush_interval: float | None = Field(default=None, gt=0, strict=True)
    max_attempts: int | None = Field(default=None, ge=1, le=1000, strict=True)


class Health(BaseModel):
    status: str
    service: str
    timestamp: datetime
    store: str
    schema_version: int | None = Field(
        description="the store's schema version; null while the store does not answer"
    )


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


@router.get("/health", tags=["service"])
def health(request: Request) -> Health:
    """Liveness: the process answers (200 even while the store does not; `/readyz` says
    whether it can do its work)."""
    store = _yard(request).store
    try:
        version: int | None = store.schema_version()
    except StoreError:
        version = None
    return Health(
        status="ok",
        service="batch",
        timestamp=datetime.now(UTC),
        store=store.dialect,
        schema_version=version,
    )


@router.post("/batches/{batch_id:path}/items", tags=["batches"])
def add_items(batch_id: str, body: AddItems, request: Request) -> AddResult:
    """Add items to the open batch of a base id; committed when this returns."""
    return _yard(request).add_items(
        batch_id,
        body.items,
        max_batch_size=body.max_batch_size,
        on_flush=body.on_flush,
        flush_interval=body.flush_interval,
        max_attempts=body.max_attempts,
    )


@router.post("/batches/{batch_id:path}/flush", tags=["batches"])
def flush(batch_id: str, request: Request) -> FlushResult:
    """Close the open batch of a base id (or the given batch) and flush it now."""
    return _yard(request).flush(batch_id)


@router.get("/batches/{batch_id:path}/history", tags=["batches"])
def flush_history(
    batch_id: str, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> list[FlushRecord]:
    """Flush attempts, newest first."""
    return _yard(request).get_flush_history(batch_id, limit)


@router.get("/batches/{batch_id:path}/items", tags=["batches"])
def batch_items(
    batch_id: str,
    request: Request,
    after: Annotated[int | None, Query(ge=0, description="the last position seen")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[BatchItem]:
    """Items of one batch after a position, each with its failure reason if it has one."""
    return _yard(request).get_batch_items(batch_id, after=after, limit=limit)


@router.get("/batches/{batch_id:path}", tags=["batches"])
def batch_status(batch_id: str, request: Request) -> list[BatchInfo]:
    """Active batches of a base id, or one batch."""
    return _yard(request).get_batch_status(batch_id)


@router.post("/batches/{batch_id:path}/redrive", tags=["batches"])
def redrive(batch_id: str, request: Request) -> FlushResult:
    """Flush a dead-lettered batch again."""
    return _yard(request).redrive_batch(batch_id)


@router.post("/batches/{batch_id:path}/discard", tags=["batches"])
def discard(batch_id: str, request: Request) -> DiscardResult:
    """Give up a dead batch: it becomes `discarded`, its items recorded as dropped."""
    return _yard(request).discard_batch(batch_id)


@router.delete("/batches/{batch_id:path}", status_code=204, tags=["batches"])
def delete_batch(batch_id: str, request: Request) -> Response:
    """Delete a batch that is neither flushing nor holding pending items."""
    _yard(request).delete_batch(batch_id)
    return Response(status_code=204)
