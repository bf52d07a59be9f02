"""The dashboard's front page: the yard at a glance, and its charts over time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from batchyard.http.dashboard import charts
from batchyard.http.dashboard._common import PAGE, dashboard_of
from batchyard.trends import RANGES, Trends

NAV = ("Overview", "/")
router = APIRouter(include_in_schema=False)


@router.get("/", **PAGE)
def overview(request: Request, range: Annotated[str, Query(max_length=10)] = "hour") -> Response:
    dashboard = dashboard_of(request)
    if range not in RANGES:
        return dashboard.render(
            request,
            "error.html",
            422,
            message=f"range must be one of {', '.join(RANGES)}, not {range!r}",
            back="/",
        )
    return dashboard.render(
        request,
        "overview.html",
        snap=dashboard.overview.snapshot(),
        **charts.context(Trends.of(dashboard.yard), range),
    )
