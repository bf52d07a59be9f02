"""The dashboard's aggregator page: every aggregator's cursor and lag, and a run on request."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from batchyard.http.dashboard._common import PAGE, PREFIX, ActionForm, dashboard_of
from batchyard.http.dashboard.lists import ListView

AGGREGATORS = f"{PREFIX}/aggregators"
NAV = ("Aggregators", AGGREGATORS)
NOTICES = {"run": "Run requested: a worker running this aggregator picks it up."}

router = APIRouter(include_in_schema=False)


@router.get(AGGREGATORS, **PAGE)
def aggregators(request: Request) -> Response:
    dashboard = dashboard_of(request)
    listed = ListView.of(request, "aggregators", label="name or stream starts with")
    start = listed.prefix or ""
    # few by nature (one per registered aggregator): filtered and paged in memory
    found = [
        a
        for a in dashboard.overview.aggregators()
        if a.name.startswith(start) or a.stream.startswith(start)
    ]
    return dashboard.render(request, "aggregators.html", aggregators=listed.sliced(found))


@router.post(f"{AGGREGATORS}/{{name:path}}/run")
def run_aggregator(request: Request, name: str, form: ActionForm) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.act(
        request, lambda: dashboard.yard.request_aggregator_run(name), "run", AGGREGATORS
    )
