"""batchyard: durable batch processing on SQLite or PostgreSQL."""

from importlib.metadata import version as _version

from batchyard import folds
from batchyard.accumulator import (
    AddResult,
    BatchInfo,
    BatchItem,
    BatchStatus,
    DiscardResult,
    FlushContext,
    FlushReason,
    FlushRecord,
    FlushResult,
)
from batchyard.aggregator import AggregatorRun, AggregatorStatus, ParkedEvent
from batchyard.bulk.records import (
    BatchJobRecord,
    BatchStats,
    DeadChunk,
    JobError,
    JobResult,
    JobStatus,
)
from batchyard.bulk.search import SearchHit
from batchyard.clock import Clock, ManualClock, SystemClock
from batchyard.embedder import Embedder
from batchyard.errors import (
    Backpressure,
    BatchyardError,
    ConfigError,
    Conflict,
    HandlerNotFound,
    InvalidInput,
    LeaseLost,
    MissingExtra,
    NotFound,
    ProducerError,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from batchyard.folds import Fold
from batchyard.iterator import BatchContext, IteratorStatus, Page
from batchyard.producer import Producer, ProducerStats
from batchyard.retry import RetryPolicy
from batchyard.signals import ItemFailures, RetryLater
from batchyard.store import Store, open_store
from batchyard.worker import Worker
from batchyard.yard import Yard

# the one version, [project] version in pyproject.toml, as installed
__version__ = _version("batchyard")

__all__ = [
    "AddResult",
    "AggregatorRun",
    "AggregatorStatus",
    "Backpressure",
    "BatchContext",
    "BatchInfo",
    "BatchItem",
    "BatchJobRecord",
    "BatchStats",
    "BatchStatus",
    "BatchyardError",
    "Clock",
    "ConfigError",
    "Conflict",
    "DeadChunk",
    "DiscardResult",
    "Embedder",
    "FlushContext",
    "FlushReason",
    "FlushRecord",
    "FlushResult",
    "Fold",
    "HandlerNotFound",
    "InvalidInput",
    "ItemFailures",
    "IteratorStatus",
    "JobError",
    "JobResult",
    "JobStatus",
    "LeaseLost",
    "ManualClock",
    "MissingExtra",
    "NotFound",
    "Page",
    "ParkedEvent",
    "Producer",
    "ProducerError",
    "ProducerStats",
    "RetryLater",
    "RetryPolicy",
    "SearchHit",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreReadOnly",
    "StoreUnavailable",
    "SystemClock",
    "Worker",
    "Yard",
    "__version__",
    "folds",
    "open_store",
]
