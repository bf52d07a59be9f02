"""Signals that handlers raise on purpose (not failures of batchyard itself)."""

from __future__ import annotations

from collections.abc import Mapping


class ItemFailures(Exception):
    """Raised by a flush handler when some items failed and the rest succeeded.

    ``failures`` maps the index of each failed item (in the list the handler received) to a
    message. Only those items stay pending and are retried; the others count as delivered.
    """

    def __init__(self, failures: Mapping[int, str]) -> None:
        self.failures = {int(index): str(message) for index, message in failures.items()}
        super().__init__(f"{len(self.failures)} item(s) failed")


class RetryLater(Exception):
    """Raised by a transform (or other bulk-job user code) for a transient failure that is
    not the item's fault: the chunk is retried with backoff from this item on, and after its
    retries it goes to the dead letters. Any other exception is that item's error."""
