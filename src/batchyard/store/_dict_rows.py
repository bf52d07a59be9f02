"""Rows as plain dicts, built as fast as CPython can build them.

A page of a keyset source is a thousand rows handed over as dicts. ``dict(row)`` of a
driver's row, or ``dict(zip(names, row))``, costs a call and an iteration per row; a dict
display with constant keys in a comprehension costs neither, and a worker running several
slices at once does this work under one interpreter lock, so it bounds how far the slices
overlap. The comprehension is compiled once per tuple of column names: the names are
written into it with `repr`, so no name can be anything but a string key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

DictRows = Callable[[Sequence[Sequence[Any]]], list[dict[str, Any]]]


@lru_cache(maxsize=256)
def dict_rows(names: tuple[str, ...]) -> DictRows:
    """A function from rows (tuples in the order of `names`) to dicts keyed by `names`
    (a name that comes twice keeps its last value, as in ``dict(zip(...))``)."""
    if not names:
        return lambda rows: [{} for _ in rows]
    values = [f"_{position}" for position in range(len(names))]
    keys = ", ".join(f"{name!r}: {value}" for name, value in zip(names, values, strict=True))
    source = f"lambda rows: [{{{keys}}} for ({', '.join(values)},) in rows]"
    made: DictRows = eval(source, {"__builtins__": {}})
    return made
