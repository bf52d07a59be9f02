"""The dashboard's aggregator page: every aggregator's cursor and lag, and a run on request."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from batchyard.http.dashboard._common import PAGE, PREFIX, ActionForm, dashboard_of

AGGREGATORS = f"{PREFIX}/aggregators"
NAV = ("Aggregators", AGGREGATORS)
NOTICES = {"run": "Run requested: a worker running this aggregator picks it up."}

router = APIRouter(include_in_schema=False)


@router.get(AGGREGATORS, **PAGE)
def aggregators(request: Request) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.render(
        request, "aggregators.html", aggregators=dashboard.overview.aggregators()
    )


@router.post(f"{AGGREGATORS}/{{name:path}}/run")
def run_aggregator(request: Request, name: str, form: ActionForm) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.act(
        request, lambda: dashboard.yard.request_aggregator_run(name), "run", AGGREGATORS
    )
