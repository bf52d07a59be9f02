"""Trends: the accumulator's recent past in equal buckets of time, for the dashboard's charts.

Each bucket (an hour, or a day) counts the flushes that started in it, the items they
delivered, the failed ones, how long they took, and the backlog at its end. Everything is
derived from what the store keeps anyway - nothing is sampled or rolled up:

* flushes, items, failures and durations from the flush history (``batchyard_flushes``, read
  through its index on ``started_at``: one range per bucket, one statement for them all);
* the backlog from the batches: the items of every batch made by the bucket's end and not
  yet finished then (a batch finishes when it is delivered or discarded; a dead one waits).
  A partial flush's delivered items count until their batch finishes.

So a chart reaches back as far as the yard's retention keeps history (a day by default):
older buckets read as empty, not as zero traffic - the page says how far back it reaches.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import orjson

from batchyard.accumulator.records import ACTIVE_SQL, FINISHED_SQL
from batchyard.clock import Clock, to_datetime
from batchyard.errors import InvalidInput
from batchyard.store import Store

if TYPE_CHECKING:
    from batchyard.yard import Yard

# range -> (bucket width in seconds, buckets shown)
_INSTANT = 1e-6  # a bucket ends just before the next one starts
RANGES: dict[str, tuple[float, int]] = {"hour": (3600.0, 24), "day": (86400.0, 14)}

# Per bucket, in one statement: the buckets are rows (their index), each joined to the
# flushes that started in it - a range of the started_at index, so only the window is read.
_FLUSHES = (
    "SELECT e.idx AS idx, COUNT(*) AS flushes, "
    "SUM(CASE WHEN f.outcome = 'failed' THEN 0 ELSE f.item_count - f.failed_count END) "
    "AS items, SUM(CASE WHEN f.outcome = 'failed' THEN 1 ELSE 0 END) AS failed, "
    "SUM(CASE WHEN f.outcome = 'failed' THEN f.item_count ELSE f.failed_count END) "
    "AS failed_items, AVG(f.duration) AS mean_duration, MAX(f.duration) AS max_duration "
    "FROM {json_text_rows} e JOIN batchyard_flushes f "
    "ON f.started_at >= :since + e.idx * :width AND f.started_at < :since + (e.idx + 1) * :width "
    "WHERE f.outcome <> 'discarded' GROUP BY e.idx"
)
# The batches alive at some point of the window: the live ones (their own index) and those
# finished within it (the status index); a batch's item count is its highest position + 1.
_ITEMS = "(SELECT MAX(i.position) + 1 FROM batchyard_items i WHERE i.batch_no = b.batch_no)"
_ALIVE = (
    f"SELECT b.created_at, NULL AS completed_at, {_ITEMS} AS n FROM batchyard_batches b "
    f"WHERE b.status IN {ACTIVE_SQL} UNION ALL "
    f"SELECT b.created_at, b.completed_at, {_ITEMS} AS n FROM batchyard_batches b "
    f"WHERE b.status IN {FINISHED_SQL} AND b.completed_at >= :since"
)


@dataclass(frozen=True)
class Bucket:
    """One stretch of time: what the flushes that started in it did, and the backlog at its
    end (at the present, for the bucket under way)."""

    start: datetime
    flushes: int
    items_flushed: int
    failed_flushes: int
    failed_items: int
    mean_duration_seconds: float | None
    max_duration_seconds: float | None
    backlog: int


@dataclass(frozen=True)
class Trend:
    """The last buckets of one range, oldest first; the last one is under way."""

    range: str
    width_seconds: float
    buckets: list[Bucket]


class Trends:
    """Buckets of a store's flush history. `clock` matters only when it is manual (tests)."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock

    @classmethod
    def of(cls, yard: Yard) -> Trends:
        return cls(yard.store, yard.clock)

    def trend(self, span: str = "hour") -> Trend:
        """The buckets of `span` (``hour``: the last 24 hours; ``day``: the last 14 days),
        aligned to whole hours or days (UTC)."""
        if span not in RANGES:
            raise InvalidInput(
                f"range must be one of {', '.join(RANGES)}, not {span!r}", field="range"
            )
        width, count = RANGES[span]
        now_arg = self.clock.time() if self.clock is not None and self.clock.manual else None
        with self.store.transaction(now_arg, write=False) as tx:
            now = tx.clock()
            since = (math.floor(now / width) - count + 1) * width
            window = {"since": since, "width": width}
            flushes = {
                int(r["idx"]): r
                for r in tx.all(_FLUSHES, {**window, "values": orjson.dumps([""] * count).decode()})
            }
            alive = tx.all(_ALIVE, window)
        backlog = _Backlog([(float(r["created_at"]), r["completed_at"], r["n"]) for r in alive])
        buckets = []
        for idx in range(count):
            row = flushes.get(idx)
            buckets.append(
                Bucket(
                    start=_dt(since + idx * width),
                    flushes=int(row["flushes"]) if row else 0,
                    items_flushed=int(row["items"] or 0) if row else 0,
                    failed_flushes=int(row["failed"] or 0) if row else 0,
                    failed_items=int(row["failed_items"] or 0) if row else 0,
                    mean_duration_seconds=_float(row["mean_duration"]) if row else None,
                    max_duration_seconds=_float(row["max_duration"]) if row else None,
                    backlog=backlog.at(min(now, since + (idx + 1) * width - _INSTANT)),
                )
            )
        return Trend(range=span, width_seconds=width, buckets=buckets)


class _Backlog:
    """Items waiting at an instant: those of batches made by then, less those of batches
    finished by then - two sorted lists with running sums, so each instant is two bisects."""

    def __init__(self, batches: list[tuple[float, Any, Any]]) -> None:
        made = sorted((created, int(n or 0)) for created, _, n in batches)
        done = sorted(
            (float(completed), int(n or 0)) for _, completed, n in batches if completed is not None
        )
        self._made_at = [t for t, _ in made]
        self._made = [0, *accumulate(n for _, n in made)]
        self._done_at = [t for t, _ in done]
        self._done = [0, *accumulate(n for _, n in done)]

    def at(self, instant: float) -> int:
        made = self._made[bisect.bisect_right(self._made_at, instant)]
        done = self._done[bisect.bisect_right(self._done_at, instant)]
        return made - done


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _dt(epoch: float) -> datetime:
    value = to_datetime(epoch)
    assert value is not None
    return value
