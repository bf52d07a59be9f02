"""The dashboard's front page: the yard at a glance."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from batchyard.http.dashboard._common import PAGE, dashboard_of

NAV = ("Overview", "/")
router = APIRouter(include_in_schema=False)


@router.get("/", **PAGE)
def overview(request: Request) -> Response:
    dashboard = dashboard_of(request)
    return dashboard.render(request, "overview.html", snap=dashboard.overview.snapshot())
