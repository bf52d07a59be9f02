"""A source that a parallel job can cut into ranges: its pages, and its cut."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchyard.iterator.records import Page


class Sliced:
    """A source that a parallel job can cut into ranges (a `SliceableSource`)."""

    def __init__(
        self,
        pages: Callable[[Any, int], Page],
        cut: Callable[[Any, int], list[tuple[Any, int]]],
    ) -> None:
        self._pages, self._cut = pages, cut

    def __call__(self, cursor: Any, batch_size: int) -> Page:
        return self._pages(cursor, batch_size)

    def slice(self, cursor: Any, parts: int) -> list[tuple[Any, int]]:
        return self._cut(cursor, parts)
