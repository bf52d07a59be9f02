"""create_app(yard): the ASGI application, with the yard, its worker and the API tokens on
app.state."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from batchyard import __version__
from batchyard.http import (
    aggregators_api,
    batchers_api,
    batches_api,
    events_api,
    handlers_api,
    iterators_api,
    probes,
)
from batchyard.http.api_docs import DOCS_PATH, install_api_docs
from batchyard.http.auth import ApiTokens, BearerAuth
from batchyard.http.dashboard import PREFIX as DASHBOARD_PREFIX
from batchyard.http.dashboard import install_dashboard
from batchyard.http.error_handlers import install_error_handlers
from batchyard.http.jobs_api import router as jobs_router
from batchyard.http.limits import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    RequestLimits,
    require_json_body,
)
from batchyard.http.params import refuse_control_characters
from batchyard.http.search_api import router as search_router
from batchyard.http.sessions import Access
from batchyard.http.store_metrics import registry_for
from batchyard.yard import Yard


def create_app(
    yard: Yard,
    *,
    worker: bool = True,
    concurrency: int = 4,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_json_depth: int = MAX_JSON_DEPTH,
    tokens: ApiTokens | Sequence[str] | None = None,
) -> FastAPI:
    """The API, dashboard and probes over `yard`. With `worker`, an in-process worker runs
    while the app does.

    `tokens` (default: from ``BATCHYARD_API_TOKEN`` / ``BATCHYARD_API_TOKEN_FILE``) guard
    every path but /health and /readyz: the API by bearer token, the dashboard also by its
    login session. With none configured the app is open. Raises ConfigError for an
    unreadable or empty token file."""
    if tokens is None:
        tokens = ApiTokens.from_environment()
    elif not isinstance(tokens, ApiTokens):
        tokens = ApiTokens(tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = None
        if worker:
            runner = yard.worker(concurrency=concurrency)
            thread = threading.Thread(target=runner.run, name="batchyard-worker", daemon=True)
            thread.start()
        app.state.worker = runner
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()
                thread.join(timeout=runner.shutdown_timeout + 5)

    app = FastAPI(
        title="batchyard",
        summary="Durable batch processing: batches, flushes and their books.",
        version=__version__,
        lifespan=lifespan,
        # /docs is ours, served from the package (no CDN); one page of docs, not two
        docs_url=None,
        redoc_url=None,
        # on the app, so every router included later gets it too
        dependencies=[Depends(require_json_body), Depends(refuse_control_characters)],
    )
    app.state.yard = yard
    app.state.tokens = tokens
    # one CSRF key for every server process on this store: a form one of them rendered
    # is accepted by the others, and after a restart
    app.state.access = Access(tokens, secret=yard.store.secret("dashboard-csrf"))
    app.state.metrics_registry = registry_for(yard)
    for router in (
        probes.router,
        batches_api.router,
        batchers_api.router,
        iterators_api.router,
        aggregators_api.router,
        events_api.router,
        handlers_api.router,
        jobs_router,
        search_router,
    ):
        app.include_router(router)
    install_dashboard(app, yard, app.state.access)
    install_api_docs(app)
    # the last added runs first: strangers are turned away before their body is read
    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes, max_json_depth=max_json_depth)
    # the dashboard's pages check their own access (a bearer token or a login session)
    app.add_middleware(
        BearerAuth,
        tokens=tokens,
        self_guarded=DASHBOARD_PREFIX,
        readable=(DOCS_PATH, app.openapi_url or "/openapi.json"),
        signed_in=app.state.access.authenticated,
    )
    install_error_handlers(app)
    if tokens.configured:
        _declare_bearer_auth(app)
    return app


def _declare_bearer_auth(app: FastAPI) -> None:
    """Say in the schema that every operation takes a bearer token: clients generated from
    it send one, and /docs offers "Authorize" so that "Try it out" can call the API."""
    make_schema = app.openapi

    def openapi() -> dict[str, Any]:
        schema = make_schema()  # made once, then FastAPI's cached copy
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
        schema["security"] = [{"bearer": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
