"""The one shape of every list batchyard's own routes answer with, and its cursors.

A list is ``{"data": [...], "total": n | null, "next_cursor": "..." | null}``: `total`
counts everything the filter matches where that is cheap (null where it is not), and
`next_cursor`, passed back as ``?cursor=``, gives the next page (null on the last).

A cursor is opaque to clients: URL-safe base64 of a small JSON value that only the route
that made it reads - the key of the last row shown where the list has a stable key (a batch's
number, an item's position), else how many rows came before. A route may change which, and
clients notice nothing. A cursor that does not decode is a 422 naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

T = TypeVar("T")

MAX_LIMIT = 1000
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")]
Cursor = Annotated[
    str | None,
    Query(max_length=200, description="`next_cursor` of the previous page; omit for the first"),
]


class Page(BaseModel, Generic[T]):
    """A page of a list."""

    data: list[T]
    total: int | None = Field(description="rows the filter matches; null where not cheap")
    next_cursor: str | None = Field(description="`?cursor=` for the next page; null on the last")


def encode_cursor(key: int | str) -> str:
    text = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type[int] | type[str]) -> int | str | None:
    """The key a cursor holds (None for no cursor); a 422 for one this server did not make."""
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    # bool is an int to Python, never to a cursor; an offset or key is never negative
    if type(key) is not kind or (isinstance(key, int) and not 0 <= key < 2**62):
        raise RequestValidationError(
            [{"type": "cursor", "loc": ["query", "cursor"], "msg": "not a cursor of this list"}]
        )
    return key


def offset_of(cursor: str | None) -> int:
    """Where a page of a positional list starts."""
    offset = decode_cursor(cursor, int)
    return 0 if offset is None else int(offset)


def keyed_page(
    rows: Sequence[T], limit: int, key: Callable[[T], int | str], total: int | None = None
) -> Page[T]:
    """A page from up to `limit` + 1 rows read after the cursor's key: the extra row, if
    there is one, only says that another page follows."""
    shown = list(rows[:limit])
    more = len(rows) > limit
    return Page(
        data=shown, total=total, next_cursor=encode_cursor(key(shown[-1])) if more else None
    )


def positional_page(
    rows: Sequence[T], limit: int, offset: int, total: int | None = None
) -> Page[T]:
    """A page from up to `limit` + 1 rows read from `offset` on."""
    more = len(rows) > limit
    return Page(
        data=list(rows[:limit]),
        total=total,
        next_cursor=encode_cursor(offset + limit) if more else None,
    )


def slice_page(rows: Sequence[T], limit: int, cursor: str | None) -> Page[T]:
    """A page of a list held whole in memory (short by nature: a base's active batches,
    the aggregators), its total known."""
    offset = offset_of(cursor)
    return positional_page(rows[offset : offset + limit + 1], limit, offset, total=len(rows))
