"""Reading bulk jobs: one job with its first errors, results, retries and deliveries; lists,
pages of errors and results, dead chunks, stats. Transactions that only read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from batchyard.bulk.chunks import CHUNK_TASK
from batchyard.bulk.records import (
    BulkItemError,
    BulkItemResult,
    BulkJob,
    BulkJobStats,
    DeadChunk,
    delivery_record,
    job_record,
)
from batchyard.clock import to_datetime
from batchyard.errors import NotFound
from batchyard.store import Tx
from batchyard.store.filters import under_prefix

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

PAGE_LIMIT = 1000
LISTED_ERRORS = 10  # the first errors of each failed job a list shows (`get` shows 100)


class JobReader:
    """The bulk jobs of one runtime, read. Reached through `Yard` methods."""

    def __init__(self, runtime: Runtime) -> None:
        self.store = runtime.store
        self.tasks = runtime.tasks

    def dead_chunks(
        self, job_id: str | None = None, limit: int = 100, *, offset: int = 0, job_prefix: str = ""
    ) -> list[DeadChunk]:
        """Dead chunks, oldest first: of one job, or of the jobs whose id starts with
        `job_prefix` (chunk keys are ``job:<id>:<chunk>``)."""
        rows = self.tasks.dead_tasks(
            CHUNK_TASK,
            _limit(limit),
            prefix=f"job:{job_prefix}" if job_id is None else f"job:{job_id}:",
            offset=offset,
        )
        chunks = []
        for row in rows:
            payload = orjson.loads(row["payload"])
            chunks.append(
                DeadChunk(
                    task_id=row["id"],
                    job_id=payload["job_id"],
                    chunk=payload["chunk"],
                    items=payload.get("size", len(payload.get("items", ()))),
                    attempts=row["attempts"],
                    error=row["last_error"],
                    died_at=to_datetime(row["died_at"]),
                )
            )
        return chunks

    def get(self, job_id: str) -> BulkJob:
        with self.store.transaction(write=False) as tx:
            row = self.row(tx, job_id)
            errors = self._errors(tx, job_id, -1, 100)
            results = self._results(tx, job_id, -1, 100)
            retries = [
                r["id"]
                for r in tx.all(
                    "SELECT id FROM batchyard_jobs WHERE parent_id = :id ORDER BY created_at, id",
                    {"id": job_id},
                )
            ]
            deliveries = [
                delivery_record(r)
                for r in reversed(
                    tx.all(
                        "SELECT * FROM batchyard_job_deliveries WHERE job_id = :id "
                        "ORDER BY id DESC LIMIT 20",
                        {"id": job_id},
                    )
                )
            ]
        return job_record(row, errors, [r.result for r in results], retries, deliveries)

    def list_jobs(
        self,
        status: str | None = None,
        type: str | None = None,
        limit: int = 100,
        offset: int = 0,
        prefix: str | None = None,
    ) -> list[BulkJob]:
        page = (
            "SELECT * FROM batchyard_jobs WHERE "
            "(CAST(:status AS TEXT) IS NULL OR status = :status) AND "
            f"(CAST(:type AS TEXT) IS NULL OR type = :type) AND {under_prefix('id')} "
            "ORDER BY created_at DESC, id LIMIT :limit OFFSET :offset"
        )
        params = {
            "status": status,
            "type": type,
            "limit": _limit(limit),
            "offset": max(0, int(offset)),
            "prefix": prefix,
        }
        retries: dict[str, list[str]] = {}
        with self.store.transaction(write=False) as tx:
            rows = tx.all(page, params)
            for retry in tx.all(
                f"SELECT parent_id, id FROM batchyard_jobs WHERE parent_id IN "
                f"(SELECT id FROM ({page}) listed) ORDER BY created_at, id",
                params,
            ):
                retries.setdefault(retry["parent_id"], []).append(retry["id"])
            # a failed job's first errors say why at a glance; one read per failed job,
            # in the same snapshot as the list
            errors = {
                row["id"]: self._errors(tx, row["id"], -1, LISTED_ERRORS)
                for row in rows
                if row["failed"]
            }
        return [
            job_record(row, errors.get(row["id"], []), [], retries.get(row["id"])) for row in rows
        ]

    def errors(self, job_id: str, after: int = -1, limit: int = 100) -> list[BulkItemError]:
        with self.store.transaction(write=False) as tx:
            self.row(tx, job_id)
            return self._errors(tx, job_id, after, limit)

    def results(self, job_id: str, after: int = -1, limit: int = 100) -> list[BulkItemResult]:
        with self.store.transaction(write=False) as tx:
            self.row(tx, job_id)
            return self._results(tx, job_id, after, limit)

    def count_things(self, ns: str) -> int:
        with self.store.transaction(write=False) as tx:
            return int(
                tx.one("SELECT COUNT(*) AS n FROM batchyard_things WHERE ns = :ns", {"ns": ns})["n"]
            )

    def stats(self) -> BulkJobStats:
        with self.store.transaction(write=False) as tx:
            counts = {
                row["status"]: int(row["n"])
                for row in tx.all(
                    "SELECT status, COUNT(*) AS n FROM batchyard_jobs GROUP BY status"
                )
            }
        completed, failed = counts.get("completed", 0), counts.get("failed", 0)
        finished = completed + failed
        rate = completed / finished if finished else 0.0
        return BulkJobStats(
            total=sum(counts.values()),
            pending=counts.get("pending", 0),
            processing=counts.get("processing", 0),
            completed=completed,
            failed=failed,
            cancelled=counts.get("cancelled", 0),
            success_rate=f"{100.0 * rate:.2f}%",
            success_rate_value=rate,
        )

    @staticmethod
    def _errors(tx: Tx, job_id: str, after: int, limit: int) -> list[BulkItemError]:
        return [
            BulkItemError(index=row["idx"], error=row["error"])
            for row in tx.all(
                "SELECT idx, error FROM batchyard_job_errors WHERE job_id = :id AND idx > :after "
                "ORDER BY idx LIMIT :limit",
                {"id": job_id, "after": after, "limit": _limit(limit)},
            )
        ]

    @staticmethod
    def _results(tx: Tx, job_id: str, after: int, limit: int) -> list[BulkItemResult]:
        return [
            BulkItemResult(index=row["idx"], result=orjson.loads(row["result"]))
            for row in tx.all(
                "SELECT idx, result FROM batchyard_job_results WHERE job_id = :id "
                "AND idx > :after ORDER BY idx LIMIT :limit",
                {"id": job_id, "after": after, "limit": _limit(limit)},
            )
        ]

    @staticmethod
    def row(tx: Tx, job_id: str, lock: bool = False) -> Any:
        row = tx.one(
            "SELECT * FROM batchyard_jobs WHERE id = :id" + (" {for_update}" if lock else ""),
            {"id": job_id},
        )
        if row is None:
            raise NotFound(f"no bulk job {job_id!r}", job_id=job_id)
        return row


def _limit(limit: int) -> int:
    return max(1, min(PAGE_LIMIT, int(limit)))
