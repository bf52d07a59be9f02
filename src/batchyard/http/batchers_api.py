"""Batchyard's routes over batchers: items added through a batcher that the application
registered (its key and its batches' configuration live in code, like its handlers), and a
batcher's unfinished batches by key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from batchyard.accumulator import AddResult, BatcherStatus
from batchyard.http.limits import MAX_ITEMS_PER_REQUEST
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
