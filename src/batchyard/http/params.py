"""Text a client puts in a path or a query string - batch and job ids, namespaces, filters -
may not hold control characters.

Checked once for every route, as an app-wide dependency, so that no route (nor a page of the
dashboard) can forget it: PostgreSQL text cannot hold NUL at all, and no name batchyard hands
out holds a control character, so such text is a mistake or an attack, answered with a 422
naming the parameter instead of a lookup.
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.exceptions import RequestValidationError

# C0 controls (NUL, newline, ESC ...), DEL, and the C1 controls
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def refuse_control_characters(request: Request) -> None:
    """App dependency: a 422 (``loc`` ``["path", name]`` or ``["query", name]``) for each
    path or query parameter holding a control character."""
    problems = [
        _problem("path", name, value)
        for name, value in request.path_params.items()
        if isinstance(value, str) and _CONTROL.search(value)
    ]
    problems += [
        _problem("query", name, value)
        for name, value in request.query_params.multi_items()
        if _CONTROL.search(value) or _CONTROL.search(name)
    ]
    if problems:
        raise RequestValidationError(problems)


def _problem(where: str, name: str, value: str) -> dict[str, object]:
    found = _CONTROL.search(value) or _CONTROL.search(name)
    assert found is not None
    return {
        "type": "control_character",
        "loc": [where, name],
        "msg": f"must not contain control characters (found U+{ord(found[0]):04X})",
    }
