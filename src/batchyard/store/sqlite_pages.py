"""A page of rows from SQLite in one step: each column as one JSON array, exact to the type.

Python's sqlite3 module lets go of the interpreter lock around every step of a statement,
so reading a page of a thousand rows hands the lock to any other thread that waits for it
up to a thousand times - and a worker running several slices of a job has such threads
(one back from its handler's wait, one with its checkpoint's result). On a busy machine
each hand-off is a context switch, and a page's read cost several times its own work
(hundreds of switches a page). Here SQLite builds the page as one JSON array per column
(``json_group_array``) in one step, without the lock, and orjson decodes it.

JSON alone would not give every value back as it was, so each value goes in a form that
does: an integer (64 bits), a text, NULL as themselves; a REAL in a form exact by
construction - an integer-valued one as its integer with ".0" (``-0.0`` kept by its sign
from ``atan2``), any other from 1 up to 2**62 in magnitude as ``[a, b]``, its integer part
and its fraction times 2**52 (both integers, which the REAL is exactly ``a + b / 2**52``),
and one from 2**-52 up to 1 as ``[a, b, 1]``, the pair of the REAL times 2**52.
No rendering of a double by SQLite is relied on (its 15 digits in JSON lose precision, and
its text-to-double conversion is not correctly rounded). A value none of these can carry -
a BLOB (SQLite's JSON refuses it), a REAL below 2**-52 in magnitude other than zero, or
beyond 2**62, an infinity, a text that is not UTF-8 - sends that statement row by row from then
on (`RowByRow`), which also reads this page: the rows the caller gets are the driver's own.

The rows come in the order of the query's ORDER BY: the page is a subquery with a LIMIT
under an aggregate, which SQLite runs as a co-routine feeding the aggregate row by row in
order (such a subquery is never flattened into its aggregate).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import orjson

from batchyard.store._dict_rows import dict_rows

# A REAL as JSON that reads back exactly the same double, or ``[]`` where no form here can
# carry it (the integer literals are exact powers of two: 2**53, 2**62, 2**52).
_PAIR = "CAST({r} AS INTEGER), CAST(({r} - CAST({r} AS INTEGER)) * 4503599627370496 AS INTEGER)"
_VALUE = (
    "CASE WHEN typeof({c}) <> 'real' THEN {c} "
    "WHEN {c} = CAST({c} AS INTEGER) AND abs({c}) < 9007199254740992 THEN "
    "json(CASE WHEN {c} = 0 AND atan2({c}, -1) < 0 THEN '-0.0' "
    "ELSE CAST({c} AS INTEGER) || '.0' END) "
    "WHEN abs({c}) >= 1 AND abs({c}) < 4611686018427387904 THEN "
    f"json_array({_PAIR.format(r='{c}')}) "
    # below 1 (down to 2**-52), the pair of the REAL times 2**52 (exact: a power of two)
    "WHEN abs({c}) < 1 AND abs({c}) * 4503599627370496 >= 1 THEN "
    f"json_array({_PAIR.format(r='({c} * 4503599627370496)')}, 1) "
    "ELSE json_array() END"
)
_FRACTION = 2.0**-52


class _NotExact(Exception):
    """A value of the page has no exact form here."""


class PageReader:
    """Reads pages as dicts; remembers, per statement, its column names and whether it goes
    row by row (the first page of a statement does, to learn its columns)."""

    def __init__(self) -> None:
        self._columns: dict[str, tuple[str, ...]] = {}
        self._json: dict[str, str] = {}
        self._row_by_row: set[str] = set()
        self._lock = threading.Lock()

    def read(self, conn: sqlite3.Connection, sql: str, params: Any) -> list[dict[str, Any]]:
        """The rows of `sql` (the store's prepared text) as dicts by column name."""
        names = self._columns.get(sql)
        if names is not None and sql not in self._row_by_row:
            try:
                return dict_rows(names)(zip(*self._columns_of(conn, sql, params), strict=True))
            except (sqlite3.Error, orjson.JSONDecodeError, _NotExact):
                # this page, and this statement from now on, row by row: the driver's error
                # (a text that is not UTF-8, say), if any, is then the one the caller sees
                with self._lock:
                    self._row_by_row.add(sql)
        cursor = conn.cursor()
        cursor.row_factory = None
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        names = tuple(column[0] for column in cursor.description)
        with self._lock:
            self._columns[sql] = names
        return dict_rows(names)(rows)

    def _columns_of(self, conn: sqlite3.Connection, sql: str, params: Any) -> list[list[Any]]:
        json_sql = self._json.get(sql)
        if json_sql is None:
            json_sql = self._json[sql] = json_page(sql, len(self._columns[sql]))
        texts = conn.execute(json_sql, params).fetchone()
        columns = []
        for text in texts:
            column = orjson.loads(text)
            if "[" in text[1:]:  # a REAL carried as a pair (or a text with a bracket)
                column = [_real(value) if type(value) is list else value for value in column]
            columns.append(column)
        return columns


def json_page(sql: str, count: int) -> str:
    """The statement that reads the rows of `sql` (with `count` columns) as one JSON array
    per column, each value in its exact form. The columns are named by position: any name
    the query gives them (quoted, repeated) is left as it is."""
    names = [f"c{position}" for position in range(count)]
    arrays = ", ".join(f"json_group_array({_VALUE.format(c=name)})" for name in names)
    # (a line break before the parenthesis: the query may end with a comment)
    page = f"WITH batchyard_page({', '.join(names)}) AS ({sql}\n)"
    return f"{page} SELECT {arrays} FROM batchyard_page"


def _real(value: list[int]) -> float:
    if len(value) == 2:
        whole, fraction = value
        # exact: |whole| < 2**53 where there is a fraction, and the sum is the REAL itself
        return float(whole) + fraction * _FRACTION
    if len(value) == 3:  # the pair of the REAL times 2**52
        whole, fraction, _ = value
        return (float(whole) + fraction * _FRACTION) * _FRACTION
    raise _NotExact()
