"""batchyard: durable batch processing on SQLite or PostgreSQL."""

from batchyard import folds
from batchyard.accumulator import (
    AddResult,
    BatchInfo,
    BatchStatus,
    FlushContext,
    FlushReason,
    FlushRecord,
    FlushResult,
)
from batchyard.aggregator import AggregatorRun, AggregatorStatus, ParkedEvent
from batchyard.clock import Clock, ManualClock, SystemClock
from batchyard.errors import (
    Backpressure,
    BatchyardError,
    ConfigError,
    Conflict,
    HandlerNotFound,
    InvalidInput,
    LeaseLost,
    NotFound,
    ProducerError,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from batchyard.iterator import BatchContext, IteratorStatus, Page
from batchyard.producer import Producer, ProducerStats
from batchyard.retry import RetryPolicy
from batchyard.signals import ItemFailures
from batchyard.store import open_store
from batchyard.yard import Yard

__version__ = "0.1.0"

__all__ = [
    "AddResult",
    "AggregatorRun",
    "AggregatorStatus",
    "Backpressure",
    "BatchContext",
    "BatchInfo",
    "BatchStatus",
    "BatchyardError",
    "Clock",
    "ConfigError",
    "Conflict",
    "FlushContext",
    "FlushReason",
    "FlushRecord",
    "FlushResult",
    "HandlerNotFound",
    "InvalidInput",
    "ItemFailures",
    "IteratorStatus",
    "LeaseLost",
    "ManualClock",
    "NotFound",
    "Page",
    "ParkedEvent",
    "Producer",
    "ProducerError",
    "ProducerStats",
    "RetryPolicy",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreReadOnly",
    "StoreUnavailable",
    "SystemClock",
    "Yard",
    "__version__",
    "folds",
    "open_store",
]
