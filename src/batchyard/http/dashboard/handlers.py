"""The dashboard's handlers page: every handler with limits across the fleet (its
concurrency and rate), and its load as the store sees it - the calls in flight on every
worker, the starts in its rate window, the flushes that are due and wait for room."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from batchyard.http.dashboard._common import PAGE, PREFIX, dashboard_of
from batchyard.http.dashboard.lists import ListView

HANDLERS = f"{PREFIX}/handlers"
NAV = ("Handlers", HANDLERS)
NOTICES: dict[str, str] = {}

router = APIRouter(include_in_schema=False)


@router.get(HANDLERS, **PAGE)
def handlers(request: Request) -> Response:
    dashboard = dashboard_of(request)
    listed = ListView.of(request, "handlers", label="name starts with")
    # the limited handlers of the store: one row each, written by the workers that
    # register them (few; the same read as GET /handlers)
    loads = [h for h in dashboard.yard.handler_loads() if h.handler.startswith(listed.prefix or "")]
    return dashboard.render(request, "handlers.html", handlers=listed.sliced(loads))
