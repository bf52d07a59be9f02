"""Overview: read-only views across every capability, for people and for machines.

The dashboard's pages, the gauges of ``/metrics`` and ``batchyard healthcheck`` read the same
numbers from here, so a page and a scrape can never disagree on what "pending" means. Every
view is one read transaction on the store; nothing here writes, and nothing needs the
handlers of the application (a dashboard without ``--app`` still sees everything).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from batchyard.accumulator.records import ACTIVE_SQL, FlushRecord, flush_record
from batchyard.accumulator.sql import BATCH_COLUMNS
from batchyard.aggregator import AggregatorStatus
from batchyard.clock import Clock, to_datetime
from batchyard.store import Store, Tx
from batchyard.store.filters import under_prefix
from batchyard.tasks import limits
from batchyard.tasks.limits import HandlerLoad
from batchyard.tasks.sql import FREE_GATE

if TYPE_CHECKING:
    from batchyard.yard import Yard

LAST_HOUR = 3600.0
# Batches still to deliver, with their derived counts. Completed batches stay out: they are
# kept for a day and may be many, and each would cost a count of its items.
_ACTIVE_BATCHES = f"SELECT {BATCH_COLUMNS} FROM batchyard_batches b WHERE b.status IN {ACTIVE_SQL}"


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker process and how long ago it last beat."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float


@dataclass(frozen=True)
class TaskCount:
    """Live tasks of one kind in one state. ``stuck`` counts running tasks whose lease has
    expired (their worker is gone; the next claim rescues them); ``due`` counts queued
    tasks whose time has come."""

    kind: str
    state: str
    count: int
    due: int
    stuck: int


@dataclass(frozen=True)
class BaseSummary:
    """One base id of the accumulator: its active batches and its last flush."""

    base_id: str
    active_batches: int  # accumulating, flushing or dead
    pending_items: int
    accumulating: bool
    flushing: int
    dead: int
    oldest_pending_age_seconds: float | None
    last_flush: FlushRecord | None


@dataclass(frozen=True)
class Snapshot:
    """The whole yard at one instant (one read transaction)."""

    now: datetime
    batches: dict[str, int]  # active status (accumulating, flushing, dead) -> batches
    pending_items: dict[str, int]  # status -> items still to deliver
    tasks: list[TaskCount]
    dead_tasks: dict[str, int]  # kind -> dead-lettered tasks
    iterators: dict[str, int]  # status -> jobs
    bulk_jobs: dict[str, int]  # status -> bulk jobs
    bulk_items_left: int  # items of pending and processing bulk jobs not yet done
    items_flushed_last_hour: int
    flushes_last_hour: int
    batches_completed_last_hour: int
    iterators_completed_last_hour: int
    oldest_pending_age_seconds: float | None  # oldest batch not yet delivered
    oldest_due_task_age_seconds: float | None  # a due task no worker has claimed yet
    workers: list[WorkerInfo]
    aggregators: list[AggregatorStatus] = field(default_factory=list)
    handlers: list[HandlerLoad] = field(default_factory=list)  # the limited handlers


class Overview:
    """Read-only views of a store. `clock` matters only when it is manual (tests)."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock

    @classmethod
    def of(cls, yard: Yard) -> Overview:
        return cls(yard.store, yard.clock)

    def _now(self) -> float | None:
        return self.clock.time() if self.clock is not None and self.clock.manual else None

    def snapshot(self) -> Snapshot:
        with self.store.transaction(self._now(), write=False) as tx:
            now = tx.clock()
            batches: dict[str, int] = {}
            oldest_pending = None
            # live batches only: finished ones are kept for the whole retention and a count
            # of them would grow with it (the last hour's are counted below)
            for row in tx.all(
                "SELECT status, COUNT(*) AS n, MIN(created_at) AS oldest "
                f"FROM batchyard_batches b WHERE b.status IN {ACTIVE_SQL} GROUP BY status"
            ):
                batches[row["status"]] = int(row["n"])
                if row["status"] in ("accumulating", "flushing"):
                    age = now - float(row["oldest"])
                    oldest_pending = age if oldest_pending is None else max(oldest_pending, age)
            pending = _counts(
                tx,
                "SELECT status AS k, SUM(pending_count) AS n "
                f"FROM ({_ACTIVE_BATCHES}) s GROUP BY status",
            )
            tasks = [
                TaskCount(
                    kind=r["kind"],
                    state=r["state"],
                    count=int(r["n"]),
                    due=int(r["due"] or 0),
                    stuck=int(r["stuck"] or 0),
                )
                for r in tx.all(
                    "SELECT kind, state, COUNT(*) AS n, "
                    "SUM(CASE WHEN state = 'queued' AND due_at <= {now} THEN 1 ELSE 0 END) "
                    "AS due, "
                    "SUM(CASE WHEN state = 'running' AND due_at <= {now} THEN 1 ELSE 0 END) "
                    "AS stuck FROM batchyard_tasks GROUP BY kind, state ORDER BY kind, state"
                )
            ]
            oldest_due = tx.one(
                "SELECT MIN(due_at) AS due FROM batchyard_tasks "
                "WHERE state = 'queued' AND due_at <= {now}"
            )["due"]
            dead = _counts(
                tx, "SELECT kind AS k, COUNT(*) AS n FROM batchyard_dead_tasks GROUP BY kind"
            )
            iterators = _counts(
                tx, "SELECT status AS k, COUNT(*) AS n FROM batchyard_iterators GROUP BY status"
            )
            bulk_jobs = _counts(
                tx, "SELECT status AS k, COUNT(*) AS n FROM batchyard_jobs GROUP BY status"
            )
            bulk_left = tx.one(
                "SELECT SUM(total - processed - failed) AS n FROM batchyard_jobs "
                "WHERE status IN ('pending', 'processing')"
            )["n"]
            hour = {"since": now - LAST_HOUR}
            flushed = tx.one(
                "SELECT COUNT(*) AS n, SUM(item_count - failed_count) AS items "
                "FROM batchyard_flushes WHERE started_at >= :since "
                "AND outcome <> 'discarded'",
                hour,
            )
            completed = tx.one(
                "SELECT (SELECT COUNT(*) FROM batchyard_batches WHERE status = 'completed' "
                "AND completed_at >= :since) AS batches, (SELECT COUNT(*) FROM "
                "batchyard_iterators WHERE status = 'completed' AND completed_at >= :since) "
                "AS iterators",
                hour,
            )
            workers = self._workers(tx, now)
            aggregators = self._aggregators(tx, now)
            handlers = limits.loads(tx, FREE_GATE)
        return Snapshot(
            now=_dt(now),
            batches=batches,
            pending_items=pending,
            tasks=tasks,
            dead_tasks=dead,
            iterators=iterators,
            bulk_jobs=bulk_jobs,
            bulk_items_left=int(bulk_left or 0),
            items_flushed_last_hour=int(flushed["items"] or 0),
            flushes_last_hour=int(flushed["n"]),
            batches_completed_last_hour=int(completed["batches"]),
            iterators_completed_last_hour=int(completed["iterators"]),
            oldest_pending_age_seconds=oldest_pending,
            oldest_due_task_age_seconds=None if oldest_due is None else now - float(oldest_due),
            workers=workers,
            aggregators=aggregators,
            handlers=handlers,
        )

    def bases(
        self, limit: int = 200, offset: int = 0, prefix: str | None = None
    ) -> list[BaseSummary]:
        """Base ids (those starting with `prefix`, if given) with their pending items and
        last flush, those with most pending first, after skipping `offset`."""
        with self.store.transaction(self._now(), write=False) as tx:
            now = tx.clock()
            rows = tx.all(
                "SELECT bb.base_id, s.batches, s.pending, s.accumulating, s.flushing, s.dead, "
                "s.oldest FROM batchyard_batch_bases bb LEFT JOIN (SELECT base_id, "
                "COUNT(*) AS batches, SUM(pending_count) AS pending, "
                "SUM(CASE WHEN status = 'accumulating' THEN 1 ELSE 0 END) AS accumulating, "
                "SUM(CASE WHEN status = 'flushing' THEN 1 ELSE 0 END) AS flushing, "
                "SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS dead, "
                "MIN(CASE WHEN status IN ('accumulating', 'flushing') THEN created_at END) "
                f"AS oldest FROM ({_ACTIVE_BATCHES}) a GROUP BY base_id) s "
                f"ON s.base_id = bb.base_id WHERE {under_prefix('bb.base_id')} "
                "ORDER BY COALESCE(s.pending, 0) DESC, bb.base_id LIMIT :limit OFFSET :offset",
                {"limit": limit, "offset": offset, "prefix": prefix},
            )
            last = {r["base_id"]: flush_record(r) for r in self._last_flushes(tx, rows)}
        return [
            BaseSummary(
                base_id=r["base_id"],
                active_batches=int(r["batches"] or 0),
                pending_items=int(r["pending"] or 0),
                accumulating=bool(r["accumulating"]),
                flushing=int(r["flushing"] or 0),
                dead=int(r["dead"] or 0),
                oldest_pending_age_seconds=None
                if r["oldest"] is None
                else now - float(r["oldest"]),
                last_flush=last.get(r["base_id"]),
            )
            for r in rows
        ]

    @staticmethod
    def _last_flushes(tx: Tx, bases: list[Any]) -> list[Any]:
        """The last flush of each base listed: one step down the index (base_id, id) per base
        (a MAX(id) grouped by base walked every flush kept), then the rows by their ids,
        named one by one - as a list the planner could not count, PostgreSQL read the table
        through to find them."""
        ids = [
            r["id"]
            for r in tx.all(
                "SELECT (SELECT MAX(f.id) FROM batchyard_flushes f "
                "WHERE f.base_id = bb.base_id) AS id FROM batchyard_batch_bases bb "
                "WHERE bb.base_id IN {json_text_values}",
                {"values": orjson.dumps([b["base_id"] for b in bases]).decode()},
            )
            if r["id"] is not None
        ]
        if not ids:
            return []
        return tx.all(
            "SELECT base_id, batch_id, sequence, attempt, reason, outcome, item_count, "
            "failed_count, error, worker_id, started_at, duration, NULL AS traceback "
            f"FROM batchyard_flushes WHERE id IN ({', '.join(f':id{n}' for n in range(len(ids)))})",
            {f"id{n}": i for n, i in enumerate(ids)},
        )

    def workers(self) -> list[WorkerInfo]:
        with self.store.transaction(self._now(), write=False) as tx:
            return self._workers(tx, tx.clock())

    def aggregators(self) -> list[AggregatorStatus]:
        with self.store.transaction(self._now(), write=False) as tx:
            return self._aggregators(tx, tx.clock())

    @staticmethod
    def _workers(tx: Tx, now: float) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=r["id"],
                host=r["host"],
                pid=int(r["pid"]),
                started_at=_dt(r["started_at"]),
                heartbeat_at=_dt(r["heartbeat_at"]),
                heartbeat_age_seconds=max(0.0, now - float(r["heartbeat_at"])),
            )
            for r in tx.all(
                "SELECT id, host, pid, started_at, heartbeat_at "
                "FROM batchyard_workers ORDER BY started_at, id"
            )
        ]

    @staticmethod
    def _aggregators(tx: Tx, now: float) -> list[AggregatorStatus]:
        # every aggregator row, registered in this process or not: lag is a fact of the
        # store. One count per aggregator, because the cursor comparison differs by dialect.
        found = []
        for row in tx.all(
            "SELECT a.*, (SELECT COUNT(*) FROM batchyard_parked_events p "
            "WHERE p.aggregator = a.name) AS parked "
            "FROM batchyard_aggregators a ORDER BY a.name"
        ):
            behind = tx.one(
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM batchyard_events "
                "WHERE stream = :stream AND {after_cursor}",
                {
                    "stream": row["stream"],
                    "position": row["cursor_position"],
                    "id": row["cursor_id"],
                },
            )
            found.append(
                AggregatorStatus(
                    name=row["name"],
                    stream=row["stream"],
                    cursor=(int(row["cursor_position"]), int(row["cursor_id"])),
                    lag_events=int(behind["n"]),
                    lag_seconds=0.0
                    if behind["oldest"] is None
                    else max(0.0, now - float(behind["oldest"])),
                    events_folded=int(row["events_folded"]),
                    last_run_at=to_datetime(row["last_run_at"]),
                    last_error=row["last_error"],
                    parked=int(row["parked"]),
                    running=row["lease_until"] is not None and float(row["lease_until"]) >= now,
                )
            )
        return found


def _counts(tx: Tx, sql: str) -> dict[str, int]:
    return {row["k"]: int(row["n"]) for row in tx.all(sql)}


def _dt(epoch: Any) -> datetime:
    value = to_datetime(float(epoch))
    assert value is not None
    return value
