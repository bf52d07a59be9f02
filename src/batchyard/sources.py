"""Ready-made `get_next_batch` sources for the table iterator.

`sql_keyset` pages through a table of the yard's own store by a compound key: an order
column plus a unique tie-breaker, compared as a pair, so rows that share an order value (a
timestamp, say) are never skipped or repeated at a page boundary. By default the job stops
at the highest key present when it starts (the bound), so it does not chase rows inserted
after it; ``follow=True`` keeps going until a page comes back short.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from batchyard.errors import InvalidInput
from batchyard.iterator import Page

if TYPE_CHECKING:
    from batchyard.yard import Yard

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _identifier(value: str, field: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise InvalidInput(f"{field} must be a plain SQL identifier, not {value!r}", field=field)
    return value


def sql_keyset(yard: Yard, name: str, *, table: str, order_by: str, tie_breaker: str,
               columns: list[str] | None = None, follow: bool = False) -> str:
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
    # (o > :o OR (o = :o AND t > :t)) rather than a row value: SQLite's index use for a row
    # value range stops at its first column, which would rescan every shared order value
    after = (f"({order} > :order_value OR ({order} = :order_value AND {tie} > :tie_value))")
    upto = (f"({order} < :bound_order OR ({order} = :bound_order AND {tie} <= :bound_tie))")

    def next_batch(cursor: dict[str, Any] | None, batch_size: int) -> Page:
        with yard.store.transaction(write=False) as tx:
            if cursor is None:  # the first page: fix the bound
                cursor = {"after": None, "bound": None}
                if not follow:
                    top = tx.one(f"SELECT {order} AS o, {tie} AS t FROM {table} "
                                 f"ORDER BY {order} DESC, {tie} DESC LIMIT 1")
                    if top is None:
                        return Page(items=[], cursor=cursor, done=True, total=0)
                    cursor["bound"] = [top["o"], top["t"]]
            where, params = [], {"limit": batch_size}
            if cursor["after"] is not None:
                where.append(after)
                params.update(order_value=cursor["after"][0], tie_value=cursor["after"][1])
            if cursor["bound"] is not None:
                where.append(upto)
                params.update(bound_order=cursor["bound"][0], bound_tie=cursor["bound"][1])
            sql = (f"SELECT {selected} FROM {table}"
                   + (" WHERE " + " AND ".join(where) if where else "")
                   + f" ORDER BY {order}, {tie} LIMIT :limit")
            items = [dict(row) for row in tx.all(sql, params)]
        if not items:
            return Page(items=[], cursor=cursor, done=True)
        next_cursor = {**cursor, "after": [items[-1][order_key], items[-1][tie_key]]}
        if not keyed:
            for item in items:
                del item["batchyard_o"], item["batchyard_t"]
        return Page(items=items, cursor=next_cursor, done=len(items) < batch_size)

    yard.handler(name)(next_batch)
    return name
