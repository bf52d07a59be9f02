"""Every dashboard list filters and pages the same way: a `ListView` reads the list's filter
and page from the URL and holds the page it shows; ``lists.html`` draws its filter form and
its pager.

A list's query parameters carry its name, so that two lists on one page (the bases and the
dead batches) page on their own: ``<name>_q`` (what the id or name starts with),
``<name>_status``, ``<name>_cursor`` and ``<name>_limit`` (rows per page). The cursor is the
HTTP API's own (`paging`): opaque, and a 422 naming the field when it is not one this
server made. Links keep every other parameter of the page, so paging one list leaves the
other where it was, and the live poll asks for the very page shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError

from batchyard.http.paging import (
    Page,
    decode_cursor,
    encode_cursor,
    keyed_page,
    offset_of,
    positional_page,
    slice_page,
)

PAGE_ROWS = 50
MAX_ROWS = 500
MAX_PREFIX = 200


@dataclass(frozen=True)
class ListView:
    """One list of a page: what the URL asks of it, and the rows it shows."""

    name: str
    params: tuple[tuple[str, str], ...]  # the page's query, in order
    prefix: str | None = None
    status: str | None = None
    statuses: tuple[str, ...] = ()
    cursor: str | None = None
    label: str = "id starts with"
    limit: int = PAGE_ROWS
    rows: list[Any] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None

    @classmethod
    def of(
        cls,
        request: Request,
        name: str,
        statuses: Sequence[str] = (),
        label: str = "id starts with",
        limit: int = PAGE_ROWS,
    ) -> ListView:
        """The list `name` of this request: its filter checked (a 422 naming the field)."""
        query = request.query_params
        prefix = query.get(f"{name}_q") or None
        if prefix is not None and (len(prefix) > MAX_PREFIX or "\x00" in prefix):
            raise HTTPException(
                422, f"{name}_q: at most {MAX_PREFIX} characters, and no NUL characters"
            )
        status = query.get(f"{name}_status") or None
        if status is not None and status not in statuses:
            choices = f"one of {', '.join(statuses)}" if statuses else "absent: no status here"
            raise HTTPException(422, f"{name}_status must be {choices}, not {status!r}")
        limit = _limit(query.get(f"{name}_limit"), f"{name}_limit", limit)
        return cls(
            name=name,
            params=tuple(query.multi_items()),
            prefix=prefix,
            status=status,
            statuses=tuple(statuses),
            cursor=query.get(f"{name}_cursor") or None,
            label=label,
            limit=limit,
        )

    # -- filling the page (each a `paging` helper, so the API and the pages agree) --------

    @property
    def offset(self) -> int:
        """Where the page starts, for a list paged by position."""
        with self._cursor_checked():
            return offset_of(self.cursor)

    def key(self, kind: type[int] | type[str]) -> int | str | None:
        """The key the page starts after, for a list paged by key."""
        with self._cursor_checked():
            return decode_cursor(self.cursor, kind)

    @contextmanager
    def _cursor_checked(self) -> Iterator[None]:
        """A cursor this list did not make is a 422 naming this list's parameter."""
        try:
            yield
        except RequestValidationError:
            raise HTTPException(422, f"{self.name}_cursor: not a cursor of this list") from None

    def positional(self, read: Callable[[int, int], Sequence[Any]]) -> ListView:
        """The page of `read(limit, offset)`, which reads rows from the offset on."""
        offset = self.offset
        return self._shown(positional_page(read(self.limit + 1, offset), self.limit, offset))

    def keyed(self, rows: Sequence[Any], key: Callable[[Any], int | str]) -> ListView:
        """The page of up to `limit` + 1 `rows` read after `key(...)` of the cursor."""
        return self._shown(keyed_page(rows, self.limit, key))

    def sliced(self, rows: Sequence[Any]) -> ListView:
        """The page of a short list held whole (already filtered)."""
        with self._cursor_checked():
            return self._shown(slice_page(rows, self.limit, self.cursor))

    def paged(self, rows: Sequence[Any], next_key: int | None, total: int | None) -> ListView:
        """The page of a reader that pages by key itself (its next key, or None)."""
        cursor = None if next_key is None else encode_cursor(next_key)
        return self._shown(Page(data=list(rows), total=total, next_cursor=cursor))

    def _shown(self, page: Page[Any]) -> ListView:
        return replace(self, rows=page.data, total=page.total, next_cursor=page.next_cursor)

    # -- links ------------------------------------------------------------------------

    def link(self, path: str, **changes: str | None) -> str:
        """`path` with this page's query, this list's parameters changed (None drops one)."""
        changed = {f"{self.name}_{k}": v for k, v in changes.items()}
        # an action's notice was said once: it does not follow the pages
        kept = [(k, v) for k, v in self.params if k not in changed and k != "notice"]
        query = urlencode(kept + [(k, v) for k, v in changed.items() if v])
        return f"{path}?{query}" if query else path

    @property
    def kept(self) -> list[tuple[str, str]]:
        """The other parameters of the page, which this list's filter form carries along
        (its own filter and cursor are what the form sets anew)."""
        own = {f"{self.name}_{k}" for k in ("q", "status", "cursor")}
        return [(k, v) for k, v in self.params if k not in own and k != "notice"]

    @property
    def filtered(self) -> bool:
        return self.prefix is not None or self.status is not None


def _limit(text: str | None, field: str, default: int) -> int:
    """Rows per page as asked (a 422 naming the field for what is not 1 to MAX_ROWS)."""
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ROWS:
        raise HTTPException(422, f"{field} must be a whole number from 1 to {MAX_ROWS}")
    return int(text)
