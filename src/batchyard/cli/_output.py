"""How every command prints records: a table for people, JSON with ``--json`` for machines.

A listing prints a table of chosen columns, or a JSON array of every field; a command that
shows one record (or the result of an action) prints it as a two-column table of its
fields, or a JSON object. JSON keys are the records' Python field names (snake_case), with
moments in ISO 8601 and numbers exact.

Ids are never cut nor wrapped: someone will copy them into the next command. An id column is
as wide as its longest id; when the ids and a narrow rest do not fit the terminal, the
records are shown one below the other, a field a line (as psql's expanded display does).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchyard.cli._units import cell

console = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

# a column that is not an id gives way down to this many characters (or its header's) before
# the records are shown one below the other
NARROWEST = 8
# what each column adds to the width of a table: a space either side and its border
COLUMN_EXTRA = 3


@dataclass(frozen=True)
class Column:
    """A field of the records shown as a column: its header (default: the field name) and
    whether it holds ids (never wrapped nor cut)."""

    field: str
    header: str | None = None
    id: bool = False


def Id(field: str, header: str | None = None) -> Column:
    """A column of ids."""
    return Column(field, header, id=True)


def fields(record: Any) -> dict[str, Any]:
    """A record (dataclass, pydantic model or dict) as a dict of its fields."""
    if isinstance(record, BaseModel):
        return record.model_dump()
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    return dict(record)


def to_json(value: Any) -> Any:
    """`value` with moments in ISO 8601 and tuples as lists, ready for `json.dumps`."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    return value


def print_json(value: Any) -> None:
    print(json.dumps(to_json(value), ensure_ascii=False, default=str))


def show_list(records: Iterable[Any], as_json: bool, columns: Sequence[Column]) -> None:
    """`records` as a table of `columns`, or a JSON array of all their fields."""
    rows = [fields(record) for record in records]
    if as_json:
        print_json(rows)
        return
    cells = [[cell(c.field, row.get(c.field)) for c in columns] for row in rows]
    headers = [c.header or c.field for c in columns]
    table = Table()
    floor = 1
    for column, header, width in zip(
        columns,
        headers,
        [max([len(h), *(len(line[i]) for line in cells)]) for i, h in enumerate(headers)],
        strict=True,
    ):
        if column.id:
            table.add_column(header, no_wrap=True, min_width=width)
            floor += width + COLUMN_EXTRA
        else:
            table.add_column(header, overflow="fold")
            floor += min(width, max(len(header), NARROWEST)) + COLUMN_EXTRA
    if floor > console.width:
        table = _expanded(headers, cells)
    else:
        for line in cells:
            table.add_row(*(Text(text) for text in line))
    console.print(table)


def show_one(record: Any, as_json: bool, omit: Sequence[str] = ()) -> None:
    """One record as a table of its fields (those in `omit` left out), or a JSON object."""
    values = fields(record)
    if as_json:
        print_json(values)
        return
    names = [name for name in values if name not in omit]
    console.print(_expanded(names, [[cell(name, values[name]) for name in names]]))


def say(line: str) -> None:
    """One line for people, printed as it is (no markup, no highlighting)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _expanded(names: Sequence[str], records: Sequence[Sequence[str]]) -> Table:
    """Records one below the other, a field a line, a rule between records."""
    table = Table(show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for record in records:
        for name, text in zip(names, record, strict=True):
            table.add_row(name, Text(text))
        table.add_section()
    return table
