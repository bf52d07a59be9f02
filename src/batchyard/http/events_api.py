"""Batchyard's route for appending events to a stream, bounded like an add of items."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from batchyard.http.limits import MAX_ITEMS_PER_REQUEST
from batchyard.yard import Yard

router = APIRouter(tags=["events"])
Stream = Annotated[str, Path(min_length=1, max_length=512)]


class AppendEvents(BaseModel):
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ITEMS_PER_REQUEST)


class Appended(BaseModel):
    stream: str
    event_ids: list[int]  # in the order given


@router.post("/streams/{stream:path}/events")
def append_events(stream: Stream, body: AppendEvents, request: Request) -> Appended:
    """Append JSON-object events in one transaction. An event that would not come back
    exactly (an integer past 64 bits, a lone surrogate) is a 422 whose `loc` leads into
    it, and nothing is appended."""
    yard: Yard = request.app.state.yard
    return Appended(stream=stream, event_ids=yard.append_events(stream, body.events))
