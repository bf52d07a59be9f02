"""What machines read: ``/metrics`` for Prometheus and ``/readyz`` for orchestrators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from batchyard.health import DEFAULT_MAX_HEARTBEAT_AGE, run_checks
from batchyard.http.sessions import Access
from batchyard.yard import Yard

router = APIRouter()


@router.get("/metrics", tags=["service"], response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: this process's counters and the store's gauges, read now. Needs
    a bearer token when the service has API tokens."""
    access: Access = request.app.state.access
    if not access.authenticated(request):
        return Response("a bearer token is required\n", status_code=401,
                        headers={"WWW-Authenticate": "Bearer"}, media_type="text/plain")
    return Response(generate_latest(request.app.state.metrics_registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz", tags=["service"])
def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers with the current schema - and, when this app runs its
    own worker, when that worker's heartbeat is fresh. 503 otherwise, with every check."""
    yard: Yard = request.app.state.yard
    own_worker = getattr(request.app.state, "worker", None) is not None
    checks = run_checks(yard.store, clock=yard.clock,
                        max_heartbeat_age=DEFAULT_MAX_HEARTBEAT_AGE if own_worker else None)
    ready = all(check.ok for check in checks)
    body: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
    }
    return JSONResponse(body, status_code=200 if ready else 503)
