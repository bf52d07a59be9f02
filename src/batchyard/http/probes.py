"""What machines read: ``/health`` (the seed's liveness shape), ``/metrics`` for Prometheus
and ``/readyz`` for orchestrators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from batchyard.errors import StoreError
from batchyard.health import Check, run_checks
from batchyard.http.sessions import Access
from batchyard.worker import Worker
from batchyard.yard import Yard

# an idle loop turns at least once a poll interval (1 s); a busy one whenever a slot frees
# or a poll interval passes; a claim or a wait for the store can add a few seconds
WORKER_LOOP_BOUND = 30.0

router = APIRouter()


class Health(BaseModel):
    status: str
    service: str
    timestamp: datetime
    store: str
    schema_version: int | None = Field(
        description="the store's schema version; null while the store does not answer"
    )


@router.get("/health", tags=["service"])
def health(request: Request) -> Health:
    """Liveness: the process answers (200 even while the store does not; `/readyz` says
    whether it can do its work)."""
    store = request.app.state.yard.store
    try:
        version: int | None = store.schema_version()
    except StoreError:
        version = None
    return Health(
        status="ok",
        service="batch",
        timestamp=datetime.now(UTC),
        store=store.dialect,
        schema_version=version,
    )


@router.get(
    "/metrics",
    tags=["service"],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: this process's counters and the store's gauges, read now. Needs
    a bearer token when the service has API tokens."""
    access: Access = request.app.state.access
    if not access.authenticated(request):
        return Response(
            "a bearer token is required\n",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
            media_type="text/plain",
        )
    return Response(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )


@router.get("/readyz", tags=["service"])
def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers with the current schema - and, when this app runs its
    own worker, when that worker's loop is turning (it completed a cycle lately and is not
    waiting out an outage). 503 otherwise, with every check and what failed."""
    yard: Yard = request.app.state.yard
    checks = run_checks(yard.store, clock=yard.clock, max_heartbeat_age=None)
    worker: Worker | None = getattr(request.app.state, "worker", None)
    if worker is not None:
        problem = worker.liveness(within=WORKER_LOOP_BOUND)
        checks.append(Check("worker", problem is None, problem or "the loop is turning"))
    ready = all(check.ok for check in checks)
    body: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
    }
    return JSONResponse(body, status_code=200 if ready else 503)
