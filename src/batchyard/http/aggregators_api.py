"""Batchyard's routes over aggregators: list them with their lag, read one, its totals and
parked events, retry the parked events, and ask the workers for a run now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel

from batchyard.aggregator import AggregatorStatus, ParkedEvent
from batchyard.errors import NotFound
from batchyard.http.paging import Cursor, Limit, Page, offset_of, positional_page, slice_page
from batchyard.overview import Overview
from batchyard.yard import Yard

router = APIRouter(tags=["aggregators"])
Name = Annotated[str, Path(min_length=1, max_length=512)]


class Total(BaseModel):
    key: str  # as the totals table writes it: a string as is, anything else as JSON
    total: Any


class Retried(BaseModel):
    name: str
    retried: int  # parked events folded in; those that failed again stay parked


class RunRequested(BaseModel):
    name: str
    requested: bool


def _yard(request: Request) -> Yard:
    yard: Yard = request.app.state.yard
    return yard


@router.get("/aggregators")
def list_aggregators(
    request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[AggregatorStatus]:
    """Every aggregator the store knows (registered in this process or not), by name, with
    its cursor, lag and parked events."""
    return slice_page(Overview.of(_yard(request)).aggregators(), limit, cursor)


@router.get("/aggregators/{name:path}/totals")
def aggregator_totals(
    name: Name, request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[Total]:
    """The totals batchyard keeps for the aggregator, by key (404 for an aggregator this
    server's application does not register)."""
    totals = _yard(request).get_totals(name)
    rows = [Total(key=key, total=totals[key]) for key in sorted(totals)]
    return slice_page(rows, limit, cursor)


@router.get("/aggregators/{name:path}/parked")
def parked_events(
    name: Name, request: Request, limit: Limit = 100, cursor: Cursor = None
) -> Page[ParkedEvent]:
    """Events whose fold raised, in stream order, with their errors (`total` is the
    aggregator's `parked`)."""
    offset = offset_of(cursor)
    rows = _yard(request).list_parked_events(name, offset + limit + 1)[offset:]
    return positional_page(rows, limit, offset)


@router.post("/aggregators/{name:path}/parked/retry")
def retry_parked(name: Name, request: Request) -> Retried:
    """Fold every parked event again (after the fold was fixed)."""
    return Retried(name=name, retried=_yard(request).retry_parked_events(name))


@router.post("/aggregators/{name:path}/run", status_code=202)
def run_aggregator(name: Name, request: Request) -> RunRequested:
    """Ask the workers to run the aggregator now, as a durable task (a worker whose
    application registers it runs it)."""
    _yard(request).request_aggregator_run(name)
    return RunRequested(name=name, requested=True)


@router.get("/aggregators/{name:path}")
def aggregator_status(name: Name, request: Request) -> AggregatorStatus:
    """Cursor, lag in events and seconds, last run and error, parked events."""
    yard = _yard(request)
    try:
        return yard.get_aggregator_status(name)
    except NotFound:
        # not registered here, but the store may know it (a worker elsewhere runs it)
        for status in Overview.of(yard).aggregators():
            if status.name == name:
                return status
        raise
