"""Cursor aggregation: fold event streams into per-key totals, exactly once.

Events are appended to a stream in one transaction each call. An aggregator reads them after
its cursor - a compound ``(position, id)`` compared as a tuple, never a timestamp - folds them
into per-key deltas, and in ONE transaction applies the deltas and moves the cursor with a
compare-and-set on the old value. A crash before the commit loses nothing and counts nothing;
a second runner (it cannot get the lease, but suppose it did) fails the compare-and-set.

On PostgreSQL an event's position is its transaction's id and reads stop below the oldest
transaction still running in the database (the safe high-water mark), so an event whose
transaction commits late is never left behind the cursor. A long-open write transaction in
the same database therefore holds aggregation back (visible as lag) but never makes it
wrong; transactions in the server's other databases do not.
"""

from batchyard.aggregator.records import (
    RUN_TASK,
    AggregatorConfig,
    AggregatorRun,
    AggregatorStatus,
    ParkedEvent,
)
from batchyard.aggregator.service import Aggregators
from batchyard.aggregator.streams import Streams

__all__ = [
    "RUN_TASK",
    "AggregatorConfig",
    "AggregatorRun",
    "AggregatorStatus",
    "Aggregators",
    "ParkedEvent",
    "Streams",
]
