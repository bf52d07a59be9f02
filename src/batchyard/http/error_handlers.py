"""How failures become HTTP answers: domain errors by kind, invalid requests as 422 with the
path of each field, and anything unexpected as a generic 500 whose details stay in the log.

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
# what a 422 tells of each problem; the rejected input itself is not echoed back (it may
# be large, secret, or not representable in JSON, like NaN)
_VALIDATION_KEYS = ("type", "loc", "msg", "ctx")


class ErrorResponse(JSONResponse):
    """A JSON error body, ASCII-escaped so that any string can be rendered."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")


async def unexpected_error(request: Request, exc: Exception) -> ErrorResponse:
    """500 with a fixed body; the exception and its trace go to the log only."""
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return ErrorResponse({"detail": "internal error; the server log has the details",
                          "error": "InternalError"}, status_code=500)


async def domain_error(request: Request, exc: Exception) -> ErrorResponse:
    """A BatchyardError by kind, with its structured fields (``field``, ``index``...)."""
    assert isinstance(exc, BatchyardError)
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    if status == 500:
        # a store or internal failure: its text may hold SQL or paths
        return await unexpected_error(request, exc)
    body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    body.update({k: v for k, v in exc.fields.items() if isinstance(v, (str, int))})
    if status == 422:
        # the same shape as every other 422, so clients parse one kind
        body["detail"] = [{"type": _snake_case(type(exc).__name__),
                           "loc": _location(request, exc), "msg": str(exc)}]
    headers = {"Retry-After": "1"} if status == 503 else None
    return ErrorResponse(body, status_code=status, headers=headers)


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
    problems = [{key: error[key] for key in _VALIDATION_KEYS if key in error}
                for error in exc.errors()]
    return ErrorResponse({"detail": jsonable_encoder(problems)}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(BatchyardError, domain_error)
    app.add_exception_handler(Exception, unexpected_error)
