"""The keyset source: pages through a table of the yard's own store by a compound key.

The key is an order column plus a unique tie-breaker, compared as a pair, so rows that share
an order value (a timestamp, say) are never skipped or repeated at a page boundary. By
default the job stops at the highest key present when it starts (the bound), so it does not
chase rows inserted after it; ``follow=True`` keeps going until a page comes back short.
Without `follow` the source can be cut into key ranges, for a job started with
``parallelism``: each range holds the same number of rows, however the keys are spread.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from batchyard.errors import InvalidInput
from batchyard.iterator.records import Page
from batchyard.sources.sliced import Sliced
from batchyard.store import Store, Tx

if TYPE_CHECKING:
    from batchyard.yard import Yard

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _identifier(value: str, field: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise InvalidInput(f"{field} must be a plain SQL identifier, not {value!r}", field=field)
    return value


def sql_keyset(
    yard: Yard,
    name: str,
    *,
    table: str,
    order_by: str,
    tie_breaker: str,
    columns: list[str] | None = None,
    follow: bool = False,
) -> str:
    """Register a source named `name` over `table` and return the name (pass it as
    ``get_next_batch``). Items are rows as dicts of `columns` (default: all)."""
    table = _identifier(table, "table")
    order = _identifier(order_by, "order_by")
    tie = _identifier(tie_breaker, "tie_breaker")
    selected = ", ".join(_identifier(c, "columns") for c in columns) if columns else "*"
    # the key columns come back with the rows unless `columns` leaves them out
    order_key, tie_key = order.rsplit(".", 1)[-1], tie.rsplit(".", 1)[-1]
    keyed = columns is None or {order_key, tie_key} <= {c.rsplit(".", 1)[-1] for c in columns}
    if not keyed:
        selected += f", {order} AS batchyard_o, {tie} AS batchyard_t"
        order_key, tie_key = "batchyard_o", "batchyard_t"
    after = yard.store.keyset(order, tie, ">", "order_value", "tie_value")
    upto = yard.store.keyset(order, tie, "<=", "bound_order", "bound_tie")
    top_sql = (
        f"SELECT {order} AS o, {tie} AS t FROM {table} ORDER BY {order} DESC, {tie} DESC LIMIT 1"
    )

    def within(cursor: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The WHERE clause of the rows after the cursor, up to its bound."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if cursor["after"] is not None:
            where.append(after)
            params.update(order_value=cursor["after"][0], tie_value=cursor["after"][1])
        if cursor["bound"] is not None:
            where.append(upto)
            params.update(bound_order=cursor["bound"][0], bound_tie=cursor["bound"][1])
        return (" WHERE " + " AND ".join(where) if where else ""), params

    def read(tx: Tx, cursor: dict[str, Any] | None, batch_size: int) -> Callable[[], Page]:
        if cursor is None:  # the first page: fix the bound
            cursor = {"after": None, "bound": None}
            if not follow:
                top = tx.one(top_sql)
                if top is None:
                    empty = Page(items=[], cursor=cursor, done=True, total=0)
                    return lambda: empty
                cursor["bound"] = [top["o"], top["t"]]
        where, params = within(cursor)
        rows = tx.later_dicts(
            f"SELECT {selected} FROM {table}{where} ORDER BY {order}, {tie} LIMIT :limit",
            {**params, "limit": batch_size},
        )
        return lambda: page_of(cursor, rows.all(), batch_size)

    def page_of(cursor: dict[str, Any], items: list[dict[str, Any]], batch_size: int) -> Page:
        if not items:
            return Page(items=[], cursor=cursor, done=True)
        next_cursor = {**cursor, "after": [items[-1][order_key], items[-1][tie_key]]}
        if not keyed:
            for item in items:
                del item["batchyard_o"], item["batchyard_t"]
        return Page(items=items, cursor=next_cursor, done=len(items) < batch_size)

    def cut(cursor: dict[str, Any] | None, parts: int) -> list[tuple[dict[str, Any], int]]:
        """Cut at the keys that share the rows left evenly: by count, not by key value, so a
        skewed key gives slices of equal work (a count, and an index walk from each cut to
        the next: the rows are walked once, not once per cut)."""
        whole = cursor is None
        # the whole source is the whole table up to its top key: seen in one snapshot, its
        # count needs no bound, and a bare count is the store's fastest (SQLite counts the
        # b-tree without reading a row; a bound is checked row by row)
        with yard.store.snapshot() if whole else yard.store.transaction(write=False) as tx:
            if cursor is None:
                top = tx.one(top_sql)
                if top is None:
                    return []
                cursor = {"after": None, "bound": [top["o"], top["t"]]}
            where, params = within(cursor)
            count_sql = f"SELECT COUNT(*) AS n FROM {table}{'' if whole else where}"
            count = int(tx.one(count_sql, params)["n"])
            pieces, start, taken = [], cursor["after"], 0
            for position in sorted({count * i // parts for i in range(1, parts)} - {0}):
                where, params = within({**cursor, "after": start})
                key = tx.one(
                    f"SELECT {order} AS o, {tie} AS t FROM {table}{where} "
                    f"ORDER BY {order}, {tie} LIMIT 1 OFFSET :skip",
                    {**params, "skip": position - taken - 1},
                )
                end = [key["o"], key["t"]]
                pieces.append(({**cursor, "after": start, "bound": end}, position - taken))
                start, taken = end, position
        pieces.append(({**cursor, "after": start}, count - taken))
        return pieces

    # with follow there is no end to cut up to: such a source runs as one slice
    pages = _Pages(yard.store, read)
    yard.handler(name)(pages if follow else _SlicedPages(pages, cut))
    return name


class _Pages:
    """The keyset's pages (a `PageReader`): each read in a transaction of its own, or in one
    the caller holds - a step reads the next page in the transaction that checkpoints the
    one before."""

    def __init__(self, store: Store, read: Callable[[Tx, Any, int], Callable[[], Page]]) -> None:
        self._store, self.read = store, read

    def __call__(self, cursor: Any, batch_size: int) -> Page:
        with self._store.transaction(write=False) as tx:
            return self.read(tx, cursor, batch_size)()


class _SlicedPages(Sliced):
    """The keyset's pages (read as `_Pages` reads them), and its cut into key ranges."""

    def __init__(self, pages: _Pages, cut: Callable[[Any, int], list[tuple[Any, int]]]) -> None:
        super().__init__(pages, cut)
        self.read = pages.read
