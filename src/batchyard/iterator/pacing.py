"""How fast an iterator job goes: page sizes that adapt to a target duration, and throttling.

A pure decision, like the retry policy: given the size of the last page and how long it took,
the size of the next. A page grows or shrinks by at most `MAX_STEP` at a time, so one slow
page (a lock wait, a pause of the collector) cannot collapse the size, and a handler whose
time grows with the page converges on the size that takes `target_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchyard.errors import InvalidInput

MAX_STEP = 2.0  # a page is at most twice, and at least half, the size of the one before
ADAPTIVE_RANGE = 10  # without bounds given: from batch_size / 10 to batch_size * 10


@dataclass(frozen=True)
class Pacing:
    """Page sizes of one job: fixed at `batch_size`, or adapted between `min_size` and
    `max_size` so that a page takes about `target_seconds`."""

    batch_size: int
    target_seconds: float | None = None
    min_size: int | None = None
    max_size: int | None = None

    @classmethod
    def checked(
        cls,
        batch_size: int,
        target_seconds: float | None,
        min_size: int | None,
        max_size: int | None,
    ) -> Pacing:
        """A pacing from `start_iterator`'s arguments, or `InvalidInput` naming the field."""
        if target_seconds is None:
            if min_size is not None or max_size is not None:
                field = "min_batch_size" if min_size is not None else "max_batch_size"
                raise InvalidInput(f"{field} needs target_batch_seconds", field=field)
            return cls(batch_size)
        if isinstance(target_seconds, bool) or not isinstance(target_seconds, int | float):
            raise InvalidInput(
                "target_batch_seconds must be a number", field="target_batch_seconds"
            )
        if not 0 < target_seconds < float("inf"):
            raise InvalidInput(
                "target_batch_seconds must be a positive number", field="target_batch_seconds"
            )
        low = max(1, batch_size // ADAPTIVE_RANGE) if min_size is None else min_size
        high = batch_size * ADAPTIVE_RANGE if max_size is None else max_size
        for field, value in (("min_batch_size", low), ("max_batch_size", high)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{field} must be a positive integer", field=field)
        if not low <= batch_size <= high:
            raise InvalidInput(
                f"batch_size {batch_size} must lie between min_batch_size {low} and "
                f"max_batch_size {high}",
                field="batch_size",
            )
        return cls(batch_size, float(target_seconds), low, high)

    @classmethod
    def of(cls, row: Any) -> Pacing:
        """The pacing a job was started with, from its row."""
        return cls(
            int(row["batch_size"]),
            row["target_batch_seconds"],
            row["min_batch_size"],
            row["max_batch_size"],
        )

    def next_size(self, size: int, seconds: float) -> int:
        """The size of the page after one of `size` items that took `seconds`."""
        if self.target_seconds is None or self.min_size is None or self.max_size is None:
            return size
        factor = self.target_seconds / max(seconds, 1e-6)
        factor = min(MAX_STEP, max(1 / MAX_STEP, factor))
        return max(self.min_size, min(self.max_size, round(size * factor)))
