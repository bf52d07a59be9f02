"""Every exception batchyard raises, in one tree.

    BatchyardError
    ├── ConfigError              bad settings, unknown store scheme
    │   └── MissingExtra         an optional extra (batchyard[embeddings]) is not installed
    ├── InvalidInput             bad arguments or items (carries field / index)
    ├── HandlerNotFound          a configuration names no registered handler
    ├── StoreError               the store failed (driver error kept as __cause__)
    │   ├── StoreUnavailable     transient: cannot be reached now (lost or refused connection,
    │   │                        restart, failover, lock or serialization timeout)
    │   ├── StoreFull            transient: the disk or the database's size limit is full
    │   ├── StoreReadOnly        transient: the store refuses writes (file mode, standby)
    │   ├── StoreCorrupt         the file is not a database, or is damaged
    │   ├── NotFound             the record does not exist
    │   ├── Conflict             the record exists in a state that forbids the change
    │   └── LeaseLost            a write under a stale fencing token was refused
    ├── Backpressure             a bounded buffer stayed full past its timeout
    └── ProducerError            the producer's background writes failed

Signals that user code raises on purpose live in `batchyard.signals`, apart from these.
"""

from __future__ import annotations

from typing import Any


class BatchyardError(Exception):
    """A batchyard operation failed."""

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.fields = fields
        for name, value in fields.items():
            setattr(self, name, value)
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(BatchyardError):
    """batchyard is configured wrongly."""


class MissingExtra(ConfigError):
    """An optional extra of batchyard is not installed."""


class InvalidInput(BatchyardError, ValueError):
    """An argument or item is invalid."""


class HandlerNotFound(BatchyardError, LookupError):
    """No handler is registered under that name."""


class StoreError(BatchyardError):
    """The store failed."""

    #: worth retrying as it is: the store may answer again without anyone changing the call
    #: (workers, the producer's writer and the HTTP API - 503 - treat it as an outage)
    transient: bool = False


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; retry later."""

    transient = True


class StoreFull(StoreError):
    """The store is out of space; nothing of this change was written."""

    transient = True


class StoreReadOnly(StoreError):
    """The store refuses writes."""

    transient = True


class StoreCorrupt(StoreError):
    """The store's file is not a batchyard database, or it is damaged."""


class NotFound(StoreError, LookupError):
    """The record does not exist."""


class Conflict(StoreError):
    """The record is in a state that forbids this change."""


class LeaseLost(Conflict):
    """The task's lease was taken over; this write came from a stale runner."""


class Backpressure(BatchyardError):
    """A bounded buffer stayed full past its timeout."""


class ProducerError(BatchyardError):
    """The producer's background writes failed; its items stay buffered."""
