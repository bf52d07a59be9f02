"""Reading and removing batches: status, lists, flush history; delete (prune: `pruning`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from batchyard.accumulator import sql
from batchyard.accumulator.records import (
    ACTIVE_SQL,
    BatchInfo,
    BatchPage,
    BatchStatus,
    FlushRecord,
    batch_info,
    flush_record,
    split_base,
)
from batchyard.errors import Conflict, InvalidInput, NotFound
from batchyard.store.filters import under_prefix

if TYPE_CHECKING:
    from batchyard.runtime import Runtime


_HISTORY_COLUMNS = (
    "batch_id, sequence, attempt, reason, outcome, item_count, failed_count, "
    "error, worker_id, started_at, duration, traceback"
)


@dataclass(frozen=True)
class FlushTotals:
    """What the flushes of some bases that started in a recent window did: attempts, items
    delivered, and items failed (all of a flush that failed whole, the reported ones of a
    partial flush). Discards are not flushes."""

    window_seconds: float
    flushes: int
    items_flushed: int
    failed_flushes: int
    failed_items: int


class Reader:
    """The accumulator's books, read - and a finished batch deleted by hand."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store

    def get_batch_status(self, batch_id: str) -> list[BatchInfo]:
        """The active (accumulating, flushing, dead) batches of a base id, or one batch."""
        base, sequence = split_base(batch_id)
        # both reads sent at once: one round trip on PostgreSQL
        with self.store.transaction(self.runtime.now(), write=False, pipeline=True) as tx:
            clock = tx.clock_later()
            if sequence is None:
                rows = tx.later(
                    f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b "
                    f"WHERE b.base_id = :base AND b.status IN {ACTIVE_SQL} "
                    "ORDER BY b.sequence",
                    {"base": base},
                )
            else:
                rows = tx.later(
                    f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b "
                    "WHERE b.batch_id = :batch_id",
                    {"batch_id": batch_id},
                )
        now = clock()
        return [batch_info(row, now) for row in rows.all()]

    def list_batches(self, status: str | None = None, limit: int = 100) -> list[BatchInfo]:
        # two texts, not one with "(:status IS NULL OR ...)": each walks its own index
        # (updated_at, or status then updated_at) backwards and stops at the limit, where
        # the one text could use neither and sorted every batch kept
        where = "" if status is None else "WHERE b.status = :status "
        with self.store.transaction(self.runtime.now(), write=False, pipeline=True) as tx:
            clock = tx.clock_later()
            rows = tx.later(
                f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b {where}"
                "ORDER BY b.updated_at DESC LIMIT :limit",
                {"status": status, "limit": limit},
            )
        now = clock()
        return [batch_info(row, now) for row in rows.all()]

    def page_batches(
        self,
        status: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
        prefix: str | None = None,
    ) -> BatchPage:
        """Batches newest first, keyed by their number (which never changes, unlike
        `updated_at`): a page starts below the last number of the previous one, so a batch
        made or changed meanwhile neither repeats nor shifts a later page. `prefix` keeps the
        batches whose id starts with it."""
        # conditions only where given, as in `list_batches`: the planner then walks the
        # primary key (or the status index) instead of weighing an OR it cannot resolve
        where = [
            *([] if status is None else ["b.status = :status"]),
            *([] if cursor is None else ["b.batch_no < :cursor"]),
            *([] if prefix is None else [under_prefix("b.batch_id")]),
        ]
        condition = f"WHERE {' AND '.join(where)} " if where else ""
        counted = " AND ".join(
            [
                *([] if status is None else ["status = :status"]),
                *([] if prefix is None else [under_prefix("batch_id")]),
            ]
        )
        counted = f"WHERE {counted}" if counted else ""
        # the clock, the page and the count sent at once: one round trip on PostgreSQL
        with self.store.transaction(self.runtime.now(), write=False, pipeline=True) as tx:
            clock = tx.clock_later()
            page = tx.later(
                f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b {condition}"
                "ORDER BY b.batch_no DESC LIMIT :limit",
                {"status": status, "cursor": cursor, "limit": limit + 1, "prefix": prefix},
            )
            counts = tx.later(
                f"SELECT COUNT(*) AS n FROM batchyard_batches {counted}",
                {"status": status, "prefix": prefix},
            )
        now, rows, total = clock(), page.all(), counts.all()[0]["n"]
        more = len(rows) > limit
        rows = rows[:limit]
        return BatchPage(
            batches=[batch_info(row, now) for row in rows],
            next_cursor=int(rows[-1]["batch_no"]) if more else None,
            total=int(total),
        )

    def get_flush_history(
        self,
        batch_id: str,
        limit: int = 20,
        offset: int = 0,
        outcome: str | None = None,
        prefix: str | None = None,
    ) -> list[FlushRecord]:
        """Flush attempts of a base id (or of one batch), newest first, after skipping
        `offset` of them; only those that ended in `outcome`, and of the batches whose id
        starts with `prefix`, if given."""
        base, sequence = split_base(batch_id)
        where = "base_id = :base" if sequence is None else "batch_id = :batch_id"
        if outcome is not None:
            where += " AND outcome = :outcome"
        if prefix is not None:
            where += f" AND {under_prefix('batch_id')}"
        with self.store.transaction(write=False) as tx:
            rows = tx.all(
                f"SELECT {_HISTORY_COLUMNS} FROM batchyard_flushes WHERE {where} "
                "ORDER BY id DESC LIMIT :limit OFFSET :offset",
                {
                    "base": base,
                    "batch_id": batch_id,
                    "limit": limit,
                    "offset": offset,
                    "outcome": outcome,
                    "prefix": prefix,
                },
            )
        return [flush_record(r) for r in rows]

    # The reads of the bases under a name (a batcher's keys, ``name:...``) look back over a
    # window of time, never the whole history. The base id is compared through substr,
    # which no index serves, so that the only index either planner can take is the one on
    # started_at: a read costs the window's flushes, however long the history kept (the
    # index on base_id would read every flush of the name's bases ever kept).

    def flush_totals(self, names: Sequence[str], window: float) -> dict[str, FlushTotals]:
        """Totals of the flushes of the bases ``<name>:...`` of each of `names` (names
        without ':', as a batcher's) that started in the last `window` seconds, in one
        pass over the window's flushes."""
        if not names:
            return {}
        # the text before a base id's first ':', the name its bases are under (none for a
        # base id without one: a plain base named like a batcher is not its)
        name = (
            "CASE WHEN {strpos}(base_id, ':') > 0 "
            "THEN substr(base_id, 1, {strpos}(base_id, ':') - 1) END"
        )
        with self.store.transaction(self.runtime.now(), write=False) as tx:
            rows = tx.all(
                f"SELECT {name} AS name, COUNT(*) AS n, "
                "SUM(CASE WHEN outcome = 'failed' THEN 0 ELSE item_count - failed_count END) "
                "AS items, SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) AS failed, "
                "SUM(CASE WHEN outcome = 'failed' THEN item_count ELSE failed_count END) "
                "AS failed_items FROM batchyard_flushes "
                "WHERE started_at >= {now} - :window AND outcome <> 'discarded' "
                f"AND {name} IN {{json_text_values}} GROUP BY {name}",
                {"values": orjson.dumps(list(names)).decode(), "window": window},
            )
        found = {r["name"]: r for r in rows}
        return {
            n: FlushTotals(
                window_seconds=window,
                flushes=int(found[n]["n"]) if n in found else 0,
                items_flushed=int(found[n]["items"] or 0) if n in found else 0,
                failed_flushes=int(found[n]["failed"] or 0) if n in found else 0,
                failed_items=int(found[n]["failed_items"] or 0) if n in found else 0,
            )
            for n in names
        }

    def recent_history(
        self,
        prefix: str,
        window: float,
        limit: int = 20,
        offset: int = 0,
        outcome: str | None = None,
    ) -> list[FlushRecord]:
        """Flush attempts of the bases under `prefix` that started in the last `window`
        seconds, newest first, after skipping `offset`; only those that ended in
        `outcome`, if given."""
        where = (
            "started_at >= {now} - :window "
            "AND substr(base_id, 1, length(CAST(:prefix AS TEXT))) = :prefix"
        )
        if outcome is not None:
            where += " AND outcome = :outcome"
        with self.store.transaction(self.runtime.now(), write=False) as tx:
            rows = tx.all(
                f"SELECT {_HISTORY_COLUMNS} FROM batchyard_flushes WHERE {where} "
                "ORDER BY started_at DESC, id DESC LIMIT :limit OFFSET :offset",
                {
                    "prefix": prefix,
                    "window": window,
                    "limit": limit,
                    "offset": offset,
                    "outcome": outcome,
                },
            )
        return [flush_record(r) for r in rows]

    def delete_batch(self, batch_id: str) -> None:
        """Delete a completed batch and its items; refused while it flushes or holds items."""
        base, sequence = split_base(batch_id)
        if sequence is None:
            raise InvalidInput(
                f"delete_batch needs a full batch id like '{base}::0'", field="batch_id"
            )
        with self.store.transaction(self.runtime.now()) as tx:
            row = tx.one(
                f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b WHERE b.batch_id = :batch_id",
                {"batch_id": batch_id},
            )
            if row is None:
                raise NotFound(f"no batch {batch_id!r}", batch_id=batch_id)
            if row["status"] == BatchStatus.FLUSHING:
                raise Conflict(
                    f"batch {batch_id!r} is flushing", batch_id=batch_id, reason="flushing"
                )
            if row["pending_count"]:
                raise Conflict(
                    f"batch {batch_id!r} has {row['pending_count']} pending items "
                    f"(status {row['status']}); flush or redrive it first",
                    batch_id=batch_id,
                    reason="pending items",
                )
            for table in ("batchyard_items", "batchyard_item_failures", "batchyard_batches"):
                tx.execute(
                    f"DELETE FROM {table} WHERE batch_no = :batch_no", {"batch_no": row["batch_no"]}
                )
