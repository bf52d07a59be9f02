"""The dashboard, assembled: server-rendered pages over the yard's own operations.

Each page group is a module with its router, its place in the navigation (``NAV``) and the
notices its actions redirect with (``NOTICES``); this module puts them together, in the
order the navigation shows them. What every page shares (rendering, the login and CSRF
guards, confirmations) is in `_common`.

    overview.py    /                       batches.py     /ui/batches...
    batchers.py    /ui/batchers...         handlers.py    /ui/handlers
    iterators.py   /ui/iterators...        aggregators.py /ui/aggregators...
    bulk_jobs.py   /ui/jobs..., /ui/export login.py       /ui/login, /ui/logout
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.staticfiles import StaticFiles

from batchyard.http.dashboard import (
    aggregators,
    batchers,
    batches,
    bulk_jobs,
    handlers,
    iterators,
    login,
    overview,
)
from batchyard.http.dashboard._common import PREFIX, STATIC, Dashboard
from batchyard.http.sessions import Access
from batchyard.yard import Yard

__all__ = ["PREFIX", "Dashboard", "install_dashboard", "router"]

NAV = [
    overview.NAV,
    batches.NAV,
    batchers.NAV,
    iterators.NAV,
    aggregators.NAV,
    bulk_jobs.NAV,
    handlers.NAV,
]
# what an action did, by the code in its redirect (never free text from the URL)
NOTICES = {
    **batches.NOTICES,
    **iterators.NOTICES,
    **aggregators.NOTICES,
    **login.NOTICES,
    **bulk_jobs.NOTICES,
}

router = APIRouter(include_in_schema=False)
router.include_router(overview.router)
router.include_router(batches.router)
router.include_router(batchers.router)
router.include_router(handlers.router)
router.include_router(iterators.router)
router.include_router(aggregators.router)
router.include_router(login.router)
router.include_router(bulk_jobs.router)


def install_dashboard(app: FastAPI, yard: Yard, access: Access) -> Dashboard:
    """Serve the pages of `yard`, behind `access`, and their static files from `app`."""
    dashboard = Dashboard(yard, access, nav=list(NAV), notices=dict(NOTICES))
    app.state.dashboard = dashboard
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="dashboard-static")
    return dashboard
