"""Ready-made folds for aggregators: count, sum, min, max, last - or write your own `Fold`.

A fold has two halves: `step` folds one event into a key's delta (starting from None), and
`merge` adds a delta to a stored total (None when the key has none yet). Deltas and totals
are JSON values, so totals can live in the store.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]


@dataclass(frozen=True)
class Fold:
    """A pair of functions: ``step(delta, event) -> delta`` and ``merge(total, delta) ->
    total``. `merge` must be associative, because deltas are merged page by page."""

    step: Callable[[Any, Event], Any]
    merge: Callable[[Any, Any], Any]
    name: str = "custom"


def count() -> Fold:
    """How many events a key has: an int."""
    return Fold(step=lambda d, e: (d or 0) + 1, merge=lambda t, d: (t or 0) + d, name="count")


def sum(*fields: str) -> Fold:
    """Per key, the sum of each of `fields`: a dict ``{field: total}``."""
    if not fields:
        raise ValueError("sum() needs at least one field")

    def step(delta: dict[str, Any] | None, event: Event) -> dict[str, Any]:
        delta = dict.fromkeys(fields, 0) if delta is None else delta
        for field in fields:
            value = event[field]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"field {field!r} is {value!r}, not a number")
            delta[field] += value
        return delta

    def merge(total: dict[str, Any] | None, delta: dict[str, Any]) -> dict[str, Any]:
        return delta if total is None else {f: total.get(f, 0) + delta[f] for f in fields}

    return Fold(step=step, merge=merge, name="sum")


def _extreme(field: str, pick: Callable[[Any, Any], Any], name: str) -> Fold:
    def step(delta: Any, event: Event) -> Any:
        value = event[field]
        return value if delta is None else pick(delta, value)

    return Fold(step=step, merge=lambda t, d: d if t is None else pick(t, d), name=name)


def min(field: str) -> Fold:
    """Per key, the smallest value of `field`."""
    return _extreme(field, builtins.min, "min")


def max(field: str) -> Fold:
    """Per key, the largest value of `field`."""
    return _extreme(field, builtins.max, "max")


def last(field: str | None = None) -> Fold:
    """Per key, the latest event (or its `field`) in stream order."""

    def step(delta: Any, event: Event) -> Any:
        return event if field is None else event[field]

    return Fold(step=step, merge=lambda t, d: d, name="last")
