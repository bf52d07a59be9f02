"""An iterator job's error history: every failed step, not only the last.

The job's row keeps its last error and traceback (what the status shows); this keeps each
failed attempt - which page, which attempt, whether it was the one that failed the job, the
error, when - so that a job that fails now and then shows how often and with what. Each is
written in the transaction that records the failure, so the history and the books agree.
It stays bounded: the last `KEPT` of a job, and a job's delete takes its history along.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from batchyard.clock import to_datetime
from batchyard.store import Store, Tx

KEPT = 50  # failed steps kept per job, the newest


@dataclass(frozen=True)
class IteratorError:
    """One failed step of an iterator job."""

    batch: int  # the step's page number
    attempt: int
    final: bool  # the attempt after which the job was failed
    error: str
    failed_at: datetime


class ErrorHistory:
    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def record(tx: Tx, job_id: str, batch: int, attempt: int, final: bool, error: str) -> None:
        """Keep one failed step (in the failure's own transaction), and forget the oldest
        beyond `KEPT`."""
        params = {"job_id": job_id, "batch": batch, "attempt": attempt, "final": int(final)}
        tx.execute(
            "INSERT INTO batchyard_iterator_errors (job_id, batch, attempt, final, error, "
            "failed_at) VALUES (:job_id, :batch, :attempt, :final, :error, {now})",
            {**params, "error": error},
        )
        tx.execute(
            "DELETE FROM batchyard_iterator_errors WHERE job_id = :job_id AND id <= "
            "(SELECT id FROM batchyard_iterator_errors WHERE job_id = :job_id "
            "ORDER BY id DESC LIMIT 1 OFFSET :kept)",
            {"job_id": job_id, "kept": KEPT},
        )

    @staticmethod
    def forget(tx: Tx, job_id: str) -> None:
        tx.execute(
            "DELETE FROM batchyard_iterator_errors WHERE job_id = :job_id", {"job_id": job_id}
        )

    def read(self, job_id: str, limit: int = KEPT, offset: int = 0) -> list[IteratorError]:
        """A job's failed steps, newest first, after skipping `offset`."""
        with self.store.transaction(write=False) as tx:
            rows = tx.all(
                "SELECT batch, attempt, final, error, failed_at FROM batchyard_iterator_errors "
                "WHERE job_id = :job_id ORDER BY id DESC LIMIT :limit OFFSET :offset",
                {"job_id": job_id, "limit": limit, "offset": offset},
            )
        return [
            IteratorError(
                batch=int(r["batch"]),
                attempt=int(r["attempt"]),
                final=bool(r["final"]),
                error=r["error"],
                failed_at=_dt(r["failed_at"]),
            )
            for r in rows
        ]


def _dt(epoch: float) -> datetime:
    value = to_datetime(float(epoch))
    assert value is not None
    return value
