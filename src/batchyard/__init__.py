"""batchyard: durable batch processing on SQLite or PostgreSQL.

Words mean one thing: a *batch* is the accumulator's, a *bulk job* the bulk job service's,
an *iterator* walks a source a *page* at a time.
"""

import warnings
from importlib.metadata import version as _version
from typing import Any

from batchyard import folds
from batchyard.accumulator import (
    AddResult,
    BatcherInfo,
    BatcherStatus,
    BatcherSummary,
    BatchInfo,
    BatchItem,
    BatchPage,
    BatchStatus,
    DiscardResult,
    FlushContext,
    FlushReason,
    FlushRecord,
    FlushResult,
    FlushTotals,
)
from batchyard.aggregator import AggregatorRun, AggregatorStatus, ParkedEvent
from batchyard.async_yard import AsyncYard
from batchyard.bulk.records import (
    BulkItemError,
    BulkItemResult,
    BulkJob,
    BulkJobStats,
    BulkJobStatus,
    BulkJobSubmission,
    DeadChunk,
    WebhookDelivery,
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
from batchyard.iterator import IteratorError, IteratorStatus, Page, PageContext, SliceStatus
from batchyard.producer import Producer, ProducerStats
from batchyard.retry import RetryPolicy
from batchyard.signals import ItemFailures, RetryLater
from batchyard.store import Store, open_store
from batchyard.tasks.limits import HandlerLoad
from batchyard.worker import Worker
from batchyard.yard import Yard

# the one version, [project] version in pyproject.toml, as installed
__version__ = _version("batchyard")

__all__ = [
    "AddResult",
    "AggregatorRun",
    "AggregatorStatus",
    "AsyncYard",
    "Backpressure",
    "BatchInfo",
    "BatchItem",
    "BatchPage",
    "BatchStatus",
    "BatcherInfo",
    "BatcherStatus",
    "BatcherSummary",
    "BatchyardError",
    "BulkItemError",
    "BulkItemResult",
    "BulkJob",
    "BulkJobStats",
    "BulkJobStatus",
    "BulkJobSubmission",
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
    "FlushTotals",
    "Fold",
    "HandlerLoad",
    "HandlerNotFound",
    "InvalidInput",
    "ItemFailures",
    "IteratorError",
    "IteratorStatus",
    "LeaseLost",
    "ManualClock",
    "MissingExtra",
    "NotFound",
    "Page",
    "PageContext",
    "ParkedEvent",
    "Producer",
    "ProducerError",
    "ProducerStats",
    "RetryLater",
    "RetryPolicy",
    "SearchHit",
    "SliceStatus",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreReadOnly",
    "StoreUnavailable",
    "SystemClock",
    "WebhookDelivery",
    "Worker",
    "Yard",
    "__version__",
    "folds",
    "open_store",
]

# the names of 0.1, before one word meant one thing; importing one warns
_RENAMED = {
    "BatchContext": "PageContext",
    "BatchJobRecord": "BulkJob",
    "BatchStats": "BulkJobStats",
    "JobError": "BulkItemError",
    "JobResult": "BulkItemResult",
    "JobStatus": "BulkJobStatus",
}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warnings.warn(
            f"batchyard.{name} is now batchyard.{_RENAMED[name]}",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module 'batchyard' has no attribute {name!r}")
