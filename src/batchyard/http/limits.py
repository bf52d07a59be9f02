"""Request limits: body size, JSON nesting depth, and JSON-only bodies on JSON routes.

Bodies are bounded whether or not the client says how long they are: a Content-Length over
the limit is refused before a byte is read, and a chunked body is counted as it arrives and
cut off at the limit. A JSON body is read whole (it is bounded) and its nesting depth checked
before any parser recurses into it.
"""

from __future__ import annotations

import email.message
import re
from itertools import accumulate
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import HTTPException
from fastapi.params import Form
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_JSON_DEPTH = 32
# items of one add, events of one append: a bound on the work one request can ask for
MAX_ITEMS_PER_REQUEST = 10_000

# a JSON string, escapes included (the unrolled form: no backtracking on long strings)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(body: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (``{"a": [1]}`` is 2).

    Brackets inside strings do not count. Runs at C speed (a regex, a translate and an
    accumulate), so it is cheap on any body under the size limit."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is application/json or application/<something>+json."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class _BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; an HTTPException so that
    FastAPI's body reader passes it on instead of calling it a parse error."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over the limit of {max_bytes} bytes")


class RequestLimits:
    """ASGI middleware bounding the body's size and, for JSON bodies, its nesting depth."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_json_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _answer(send, 413, _BodyTooLarge(self.max_body_bytes).detail, close=True)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        if not is_json(headers.get("content-type")):
            await self._run(scope, counted, send)
            return
        try:
            body = await _read_all(counted)
        except _BodyTooLarge as exc:
            await _answer(send, 413, exc.detail, close=True)
            return
        if json_depth(body) > self.max_json_depth:
            await _answer(
                send,
                422,
                [
                    {
                        "type": "json_too_deep",
                        "loc": ["body"],
                        "msg": f"JSON nested deeper than the limit of {self.max_json_depth} levels",
                        "ctx": {"max_depth": self.max_json_depth},
                    }
                ],
            )
            return
        await self.app(scope, _replay(body, receive), send)

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except _BodyTooLarge as exc:
            # reached only where no handler answered it (a plain ASGI route, say)
            if started:
                raise
            await _answer(send, 413, exc.detail, close=True)


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out the body already read, then waits on the real one (for
    the disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _answer(send: Send, status: int, detail: Any, *, close: bool = False) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        # the body was not read to its end, so the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def require_json_body(request: Request) -> None:
    """Route dependency: a route that reads a JSON body answers 415 to any other content
    type, instead of trying to validate the bytes as if they were JSON."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return
    if isinstance(route.body_field.field_info, Form):
        return
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        raise HTTPException(
            415, f"send the body as application/json (got {content_type or 'no content type'})"
        )
