"""How failures become HTTP answers: domain errors by kind, invalid requests as 422 with the
path of each field, a store that cannot serve as 503 (or 500 when it is damaged), and
anything unexpected as a generic 500 whose details stay in the log.

Every answer is JSON escaped to ASCII: what a client sent may come back in an error (a handler
name, say) and may hold a lone surrogate, which UTF-8 cannot encode.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from batchyard.errors import (
    Backpressure,
    BatchyardError,
    Conflict,
    HandlerNotFound,
    InvalidInput,
    MissingExtra,
    NotFound,
    StoreCorrupt,
    StoreError,
)

logger = logging.getLogger("batchyard.http")

_STATUS: list[tuple[type[BatchyardError], int]] = [
    (InvalidInput, 422),
    (HandlerNotFound, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Backpressure, 503),
    # this server cannot do it until the extra is installed (its message names the extra)
    (MissingExtra, 501),
]


def status_of(exc: BatchyardError) -> int:
    """The HTTP status a domain error answers with (500 for what is not the caller's doing);
    the API and the dashboard's actions share it."""
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)


# how long a client waits before trying again while the store is out: long enough not to
# hammer a store that is restarting, short enough to notice it is back
STORE_RETRY_AFTER_SECONDS = 5
# what a 422 tells of each problem; the rejected input itself is not echoed back (it may
# be large, secret, or not representable in JSON, like NaN)
_VALIDATION_KEYS = ("type", "loc", "msg", "ctx")


class ErrorResponse(JSONResponse):
    """A JSON error body, ASCII-escaped so that any string can be rendered."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


async def unexpected_error(request: Request, exc: Exception) -> ErrorResponse:
    """500 with a fixed body; the exception and its trace go to the log only."""
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return ErrorResponse(
        {"detail": "internal error; the server log has the details", "error": "InternalError"},
        status_code=500,
    )


async def domain_error(request: Request, exc: Exception) -> ErrorResponse:
    """A BatchyardError by kind, with its structured fields (``field``, ``index``...)."""
    assert isinstance(exc, BatchyardError)
    if isinstance(exc, StoreError) and (exc.transient or isinstance(exc, StoreCorrupt)):
        return _store_failure(request, exc)
    status = status_of(exc)
    if status == 500:
        # a store or internal failure: its text may hold SQL or paths
        return await unexpected_error(request, exc)
    body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    body.update({k: v for k, v in exc.fields.items() if isinstance(v, (str, int))})
    if status == 422:
        # the same shape as every other 422, so clients parse one kind
        body["detail"] = [
            {
                "type": _snake_case(type(exc).__name__),
                "loc": _location(request, exc),
                "msg": str(exc),
            }
        ]
    headers = {"Retry-After": "1"} if status == 503 else None
    return ErrorResponse(body, status_code=status, headers=headers)


def _store_failure(request: Request, exc: StoreError) -> ErrorResponse:
    """503 with Retry-After while the store may recover by itself (unreachable, full,
    read-only); 500 when its file is damaged, which waiting will not mend. The body says
    which in the error's own words; the store's name and the driver's message (paths, SQL)
    go to the log only."""
    body = {"detail": (type(exc).__doc__ or "").strip(), "error": type(exc).__name__}
    if not exc.transient:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return ErrorResponse(body, status_code=500)
    # an outage is expected and may last: one line per request, no traceback
    logger.warning("%s %s: %s", request.method, request.url.path, exc)
    return ErrorResponse(
        body, status_code=503, headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}
    )


def _location(request: Request, exc: BatchyardError) -> list[str | int]:
    """Where the bad value was, as FastAPI says it: ``["path", "batch_id"]``,
    ``["body", "items", 3]``."""
    field = exc.fields.get("field")
    if not isinstance(field, str):
        return ["body"]
    where: list[str | int] = ["path" if field in request.path_params else "body", field]
    index = exc.fields.get("index")
    if isinstance(index, int):
        where.append(index)
    # and inside the value: ["body", "items", 3, "user", "ids", 2]
    return [*where, *exc.fields.get("path", ())]


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


async def invalid_request(request: Request, exc: Exception) -> ErrorResponse:
    """422 listing each problem with its location (``["body", "max_batch_size"]``)."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        {key: error[key] for key in _VALIDATION_KEYS if key in error} for error in exc.errors()
    ]
    return ErrorResponse({"detail": jsonable_encoder(problems)}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(BatchyardError, domain_error)
    app.add_exception_handler(Exception, unexpected_error)
