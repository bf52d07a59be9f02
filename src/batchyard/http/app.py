"""create_app(yard): the ASGI application, with the yard and its worker on app.state."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from batchyard.errors import (
    Backpressure,
    BatchyardError,
    Conflict,
    HandlerNotFound,
    InvalidInput,
    NotFound,
)
from batchyard.http import probes
from batchyard.http.api import router
from batchyard.http.dashboard import Dashboard
from batchyard.http.sessions import Access
from batchyard.metrics import registry_for
from batchyard.yard import Yard

MAX_BODY_BYTES = 10 * 1024 * 1024

_STATUS: list[tuple[type[BatchyardError], int]] = [
    (InvalidInput, 422),
    (HandlerNotFound, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Backpressure, 503),
]


def create_app(
    yard: Yard,
    *,
    worker: bool = True,
    concurrency: int = 4,
    max_body_bytes: int = MAX_BODY_BYTES,
    tokens: Sequence[str] | None = None,
) -> FastAPI:
    """The API over `yard`. With `worker`, an in-process worker runs while the app does.
    With `tokens` (API tokens), the dashboard and ``/metrics`` require one of them."""

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
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.yard = yard
    app.state.access = Access(tokens)
    app.state.metrics_registry = registry_for(yard)
    app.include_router(router)
    app.include_router(probes.router)
    Dashboard(yard, app.state.access).install(app)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            return JSONResponse(
                {"detail": f"request body over the limit of {max_body_bytes} bytes"},
                status_code=413,
            )
        return await call_next(request)

    @app.exception_handler(BatchyardError)
    async def domain_error(request: Request, exc: BatchyardError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
        body.update({k: v for k, v in exc.fields.items() if isinstance(v, (str, int))})
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    return app
