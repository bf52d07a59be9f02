"""The dashboard's aggregator pages: every aggregator's cursor and lag, a run on request, and
one aggregator's parked events (those its fold raised on) with a retry of them all."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from batchyard.http.dashboard._common import PAGE, PREFIX, ActionForm, dashboard_of
from batchyard.http.dashboard.lists import ListView

AGGREGATORS = f"{PREFIX}/aggregators"
NAV = ("Aggregators", AGGREGATORS)
NOTICES = {
    "run": "Run requested: a worker running this aggregator picks it up.",
    "parked-retried": "Parked events folded again; those that still fail stay parked.",
}

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


@router.post(f"{AGGREGATORS}/{{name:path}}/parked/retry")
def retry_parked(request: Request, name: str, form: ActionForm) -> Response:
    """Fold every parked event again: the fold must be registered in this process."""
    dashboard = dashboard_of(request)
    return dashboard.act(
        request,
        lambda: dashboard.yard.retry_parked_events(name),
        "parked-retried",
        f"{AGGREGATORS}/{quote(name, '')}",
    )


@router.get(f"{AGGREGATORS}/{{name:path}}", **PAGE)
def aggregator(request: Request, name: str) -> Response:
    dashboard = dashboard_of(request)
    status = next((a for a in dashboard.overview.aggregators() if a.name == name), None)
    if status is None:
        return dashboard.render(
            request, "error.html", 404, message=f"no aggregator {name!r}", back=AGGREGATORS
        )
    parked = ListView.of(request, "parked")
    # in stream order from the start, as the API pages them
    return dashboard.render(
        request,
        "aggregator.html",
        a=status,
        parked=parked.positional(
            lambda limit, offset: dashboard.yard.list_parked_events(name, offset + limit)[offset:]
        ),
    )
