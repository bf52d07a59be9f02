"""The batch accumulator: items gathered into named batches and flushed to a handler.

A base id names a sequence of batches, ``base::0``, ``base::1``, ... At most one of them is
``accumulating``; it closes (``flushing``) when it holds ``max_batch_size`` items or, with a
byte limit, when the next item would take it past ``max_batch_bytes``; when its timer - set
once, when the batch is created - fires (after its interval, or after its idle time with no
add), or by hand. A closed batch never takes another item, so an item belongs to exactly
one batch and a flush is never larger than the limits.

    records.py   states, results, batch ids        sql.py       the SQL, once for both stores
    adding.py    Adder: items into batches          flushing.py  Flusher: close, flush, books
    configs.py   a batch's options, validated       sizing.py    item sizes, placing by bytes
    reading.py   Reader: status, history, delete    items.py     a batch's items; discard
    pruning.py   Pruner: the retention, in steps   lanes.py     one add in flight per base
    awaiting.py  LoopAdder: adds from an event loop (AsyncYard), through loop lanes
    batchers.py  Batchers: keyed batching configured once, bounded open keys; summaries
    outcomes.py  what an add returns to each call, and schedules for its batches
    filling.py   an add's transaction: new batches, items at their places, their flushes
    starting.py  FlushStarts: a flush's start, or the start made by the hand-off before it
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchyard.accumulator.adding import Adder
from batchyard.accumulator.batchers import BatcherInfo, Batchers, BatcherStatus, BatcherSummary
from batchyard.accumulator.flushing import Flusher
from batchyard.accumulator.items import BatchItem, BatchItems, DiscardResult
from batchyard.accumulator.pruning import Pruner
from batchyard.accumulator.reading import FlushTotals, Reader
from batchyard.accumulator.records import (
    FLUSH_TASK,
    AddResult,
    BatchInfo,
    BatchPage,
    BatchStatus,
    FlushContext,
    FlushReason,
    FlushRecord,
    FlushResult,
)

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

__all__ = [
    "FLUSH_TASK",
    "Accumulator",
    "AddResult",
    "BatchInfo",
    "BatchItem",
    "BatchPage",
    "BatchStatus",
    "BatcherInfo",
    "BatcherStatus",
    "BatcherSummary",
    "DiscardResult",
    "FlushContext",
    "FlushReason",
    "FlushRecord",
    "FlushResult",
    "FlushTotals",
]


class Accumulator:
    """The accumulator's parts on one runtime (the flusher declares the flush task kind)."""

    def __init__(self, runtime: Runtime) -> None:
        self.adder = Adder(runtime)
        self.flusher = Flusher(runtime)
        self.reader = Reader(runtime)
        self.pruner = Pruner(runtime)
        self.items = BatchItems(runtime)
        self.batchers = Batchers(runtime, self.adder, self.flusher)
