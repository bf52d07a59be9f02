"""A job's status from its row (and its slices' rows): progress, rate and ETA."""

from __future__ import annotations

from typing import Any

import orjson

from batchyard.clock import to_datetime
from batchyard.iterator.records import ACTIVE, IteratorStatus, SliceStatus


def status_of(row: Any, now: float, slices: tuple[SliceStatus, ...] = ()) -> IteratorStatus:
    """The status of a job; a parallel job's counts are the sums over its `slices` (its
    row keeps no cursor of its own, and its rate is all slices' rows over the job's time)."""
    end = row["completed_at"] or now
    elapsed = max(1e-9, end - row["started_at"])
    processed, batches = int(row["processed"]), int(row["batches"])
    updated_at = to_datetime(row["updated_at"])
    if slices:
        processed = sum(part.processed for part in slices)
        batches = sum(part.batches for part in slices)
        updated_at = max(updated_at, *(part.updated_at for part in slices))
    rate = processed / elapsed if processed else None
    total = None if row["total"] is None else int(row["total"])
    eta = None
    if rate and total is not None and row["status"] in ACTIVE:
        eta = max(0.0, (total - processed) / rate)
    return IteratorStatus(
        job_id=row["job_id"],
        status=row["status"],
        processed=processed,
        batches=batches,
        cursor=None if row["cursor"] is None else orjson.loads(row["cursor"]),
        total=total,
        rate_per_second=rate,
        eta_seconds=eta,
        last_error=row["last_error"],
        started_at=to_datetime(row["started_at"]),
        updated_at=updated_at,
        completed_at=to_datetime(row["completed_at"]),
        last_traceback=row["last_traceback"],
        batch_size=int(row["page_size"] or row["batch_size"]),
        throttled_seconds=float(row["throttled_seconds"]),
        get_next_batch=row["get_next_batch"],
        process_batch=row["process_batch"],
        parallelism=int(row["parallelism"]),
        slices=slices,
    )
