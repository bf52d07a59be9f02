"""A batch's items as stored, and the end of a dead batch that will never be delivered.

`get_batch_items` reads any batch's items page by page, each with the reason a partial flush
gave for it, so an operator can see what a dead batch holds before deciding. `discard_batch`
gives a dead batch up: it becomes ``discarded`` - a terminal status of its own, never
``completed``, which would claim its items were delivered - its dead flush task goes, and the
flush history gets a ``discarded`` row with the number of items dropped, so the books still
add up. Its items stay readable until retention prunes it, as it prunes completed batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from batchyard.accumulator import sql
from batchyard.accumulator.records import BatchStatus, split_base
from batchyard.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

MAX_PAGE = 1000
DISCARD_REASON = "discard"  # the history row's reason: no flush, a decision by hand


@dataclass(frozen=True)
class BatchItem:
    """One item of a batch: its place, the value as it was added, and why it failed when a
    partial flush said so (None otherwise - a whole failure is the batch's `last_error`)."""

    position: int
    payload: Any
    error: str | None


@dataclass(frozen=True)
class DiscardResult:
    batch_id: str
    item_count: int  # the items that were still pending and are now dropped
    status: str


def _full_id(batch_id: str, method: str) -> str:
    base, sequence = split_base(batch_id)
    if sequence is None:
        raise InvalidInput(f"{method} needs a full batch id like '{base}::0'", field="batch_id")
    return batch_id


class BatchItems:
    """A batch's items, read; a dead batch, discarded."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def get(self, batch_id: str, *, after: int | None = None, limit: int = 100) -> list[BatchItem]:
        """Items of one batch (any status) with a position above `after`, in order, at most
        `limit` (1..1000). Raises NotFound for no such batch, InvalidInput for bad arguments."""
        _full_id(batch_id, "get_batch_items")
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int) or after < 0
        ):
            raise InvalidInput("after must be a position (an integer >= 0) or None", field="after")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_PAGE}", field="limit")
        with self.runtime.store.transaction(write=False) as tx:
            batch = tx.one(
                "SELECT batch_no FROM batchyard_batches WHERE batch_id = :batch_id",
                {"batch_id": batch_id},
            )
            if batch is None:
                raise NotFound(f"no batch {batch_id!r}", batch_id=batch_id)
            rows = tx.all(
                "SELECT i.position, i.payload, f.error FROM batchyard_items i "
                "LEFT JOIN batchyard_item_failures f "
                "ON f.batch_no = i.batch_no AND f.position = i.position "
                "WHERE i.batch_no = :batch_no AND i.position > :after "
                "ORDER BY i.position LIMIT :limit",
                {
                    "batch_no": batch["batch_no"],
                    "after": -1 if after is None else after,
                    "limit": limit,
                },
            )
        # read as the handler reads them (items are accepted only if this gives them back equal)
        return [
            BatchItem(
                position=int(r["position"]), payload=orjson.loads(r["payload"]), error=r["error"]
            )
            for r in rows
        ]

    def discard(self, batch_id: str) -> DiscardResult:
        """Give up a dead batch: it becomes ``discarded`` with its pending items undelivered,
        recorded in the flush history. Raises NotFound for no such batch, Conflict unless it is
        dead."""
        _full_id(batch_id, "discard_batch")
        with self.runtime.store.transaction(self.runtime.now()) as tx:
            batch = tx.one(
                f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b "
                "WHERE b.batch_id = :batch_id {for_update}",
                {"batch_id": batch_id},
            )
            if batch is None:
                raise NotFound(f"no batch {batch_id!r}", batch_id=batch_id)
            if batch["status"] != BatchStatus.DEAD:
                raise Conflict(
                    f"batch {batch_id!r} is {batch['status']}: only a dead batch can be discarded",
                    batch_id=batch_id,
                    reason=batch["status"],
                )
            dropped = int(batch["pending_count"])
            tx.execute(
                "UPDATE batchyard_batches SET status = 'discarded', completed_at = {now}, "
                "updated_at = {now} WHERE batch_id = :batch_id",
                {"batch_id": batch_id},
            )
            # the next attempt number keeps (batch_id, attempt) unique; failed_count = item_count:
            # none of them was delivered
            tx.execute(
                "INSERT INTO batchyard_flushes (batch_id, base_id, sequence, attempt, reason, "
                "outcome, item_count, failed_count, error, worker_id, started_at, duration) "
                "SELECT :batch_id, :base_id, :sequence, COALESCE(MAX(attempt), 0) + 1, :reason, "
                "'discarded', :n, :n, :error, NULL, {now}, 0 FROM batchyard_flushes "
                "WHERE batch_id = :batch_id",
                {
                    "batch_id": batch_id,
                    "base_id": batch["base_id"],
                    "sequence": batch["sequence"],
                    "reason": DISCARD_REASON,
                    "n": dropped,
                    "error": f"discarded by hand; last error: {batch['last_error'] or '-'}",
                },
            )
            self.runtime.tasks.discard_dead(tx, f"flush:{batch_id}")
        return DiscardResult(batch_id=batch_id, item_count=dropped, status=BatchStatus.DISCARDED)
