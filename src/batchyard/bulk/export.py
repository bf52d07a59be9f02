"""Export a namespace of things as JSON, CSV or NDJSON: a stream of bytes read from one
consistent snapshot of the store, in bounded memory (rows are fetched a page at a time and
the output leaves in chunks of about 64 KiB).

CSV has a header of the thing's fields followed by one `data.<key>` column per top-level key
of `data` across the namespace (nested values are written as JSON). A text cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'`` so that a
spreadsheet shows it instead of running it as a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from itertools import islice, repeat
from types import SimpleNamespace
from typing import Any

import orjson

from batchyard.bulk.things import THING_COLUMNS
from batchyard.errors import InvalidInput
from batchyard.isotime import iso_memo
from batchyard.store import Store, Tx

FORMATS = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
}
CHUNK_BYTES = 64 * 1024
_FIELDS = ["ns", "id", "type", "content", "visibility", "createdAt", "updatedAt"]
_FORMULA_STARTS = frozenset("=+-@\t\r")


def export_to_format(
    store: Store, ns: str, format: str, on_rows: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The things of `ns` in `format`, ordered by id. Checks its arguments at once; reading
    starts with the first chunk. `on_rows(n)` is told how many rows each chunk carried."""
    if not isinstance(ns, str) or not ns:
        raise InvalidInput("ns must be a non-empty string", field="ns")
    if format not in FORMATS:
        raise InvalidInput(
            f"format must be one of {', '.join(FORMATS)}, not {format!r}", field="format"
        )
    writer = {"json": _json, "csv": _csv, "ndjson": _ndjson}[format]
    return _chunked(_snapshot_rows(store, ns, writer), on_rows)


def _snapshot_rows(store: Store, ns: str, writer: Any) -> Iterator[tuple[bytes, int]]:
    with store.snapshot() as tx:
        yield from writer(tx, ns)


_SELECT = f"SELECT {THING_COLUMNS} FROM batchyard_things WHERE ns = :ns ORDER BY id"
_BLOCK_ROWS = 256  # things per block: about one chunk of output


def _json_blocks(tx: Tx, ns: str) -> Iterator[list[bytes]]:
    """Each thing's JSON, in lists of up to `_BLOCK_ROWS` (fewer steps per thing)."""
    # built here rather than by the database: on PostgreSQL row_to_json and to_char per row
    # cost more than orjson does; data is spliced in as stored, never reparsed
    dumps, fragment, when = orjson.dumps, orjson.Fragment, iso_memo()
    rows = tx.stream(_SELECT, {"ns": ns})
    while block := [
        dumps(
            {
                "ns": ns_,
                "id": id,
                "type": type,
                "data": fragment(data),
                "content": content,
                "visibility": visibility,
                "createdAt": when(created),
                "updatedAt": when(updated),
            }
        )
        for ns_, id, type, data, content, visibility, created, updated in islice(rows, _BLOCK_ROWS)
    ]:
        yield block


# each writer yields (bytes, how many rows they hold)


def _ndjson(tx: Tx, ns: str) -> Iterator[tuple[bytes, int]]:
    for block in _json_blocks(tx, ns):
        block.append(b"")  # the last line's end
        yield b"\n".join(block), len(block) - 1


def _json(tx: Tx, ns: str) -> Iterator[tuple[bytes, int]]:
    separator = b"["
    for block in _json_blocks(tx, ns):
        yield separator + b",".join(block), len(block)
        separator = b","
    yield (b"[]" if separator == b"[" else b"]"), 0


def _csv(tx: Tx, ns: str) -> Iterator[tuple[bytes, int]]:
    keys = sorted({row["key"] for row in tx.all("{data_keys}", {"ns": ns})})
    lines: list[str] = []  # what the writer wrote since the last yield
    out = csv.writer(SimpleNamespace(write=lines.append), lineterminator="\r\n")
    out.writerow(_FIELDS + [f"data.{key}" for key in keys])
    ns_cell = "'" + ns if ns[:1] in _FORMULA_STARTS else ns  # every row's: checked once
    when = iso_memo()
    rows = tx.stream(_SELECT, {"ns": ns})
    # the hot loop, written for speed: a block of rows is turned into columns, and each
    # column gets only the care it needs, in one comprehension per column rather than per
    # row (the id is text, the other text columns text or NULL, the times ISO text that
    # starts with a digit; `data` values may be anything)
    while block := list(islice(rows, _BLOCK_ROWS)):
        _, ids, types, datas, contents, visibilities, created, updated = zip(*block, strict=True)
        data = list(map(orjson.loads, datas))
        out.writerows(
            zip(
                repeat(ns_cell),
                _texts(ids),
                _texts(types),
                _texts(contents),
                _texts(visibilities),
                map(when, created),
                map(when, updated),
                *[_values([values.get(key) for values in data]) for key in keys],
            )
        )
        yield "".join(lines).encode(), len(block)
        lines.clear()
    if lines:  # no things: the header alone
        yield "".join(lines).encode(), 0


def _texts(column: tuple[str | None, ...]) -> list[str | None]:
    """A column of text (or NULL) cells, those that need care taken."""
    starts = _FORMULA_STARTS
    return [text if text is None or text[:1] not in starts else "'" + text for text in column]


def _values(column: list[Any]) -> list[Any]:
    """A column of `data` values, those that need care taken: numbers and null as they are."""
    starts, plain, dumps = _FORMULA_STARTS, _PLAIN, orjson.dumps
    return [
        value
        if (kind := value.__class__) in plain or (kind is str and value[:1] not in starts)
        else "'" + value
        if kind is str
        else dumps(value).decode()  # objects, arrays, booleans: as JSON
        for value in column
    ]


_PLAIN = frozenset({int, float, type(None)})


def _chunked(
    parts: Iterator[tuple[bytes, int]], on_rows: Callable[[int], None] | None
) -> Iterator[bytes]:
    """Gather small pieces into chunks of about `CHUNK_BYTES`."""
    pending: list[bytes] = []
    size = rows = 0
    for part, count in parts:
        pending.append(part)
        size += len(part)
        rows += count
        if size >= CHUNK_BYTES:
            if on_rows is not None:
                on_rows(rows)
            yield b"".join(pending)
            pending, size, rows = [], 0, 0
    if pending:
        if on_rows is not None:
            on_rows(rows)
        yield b"".join(pending)
