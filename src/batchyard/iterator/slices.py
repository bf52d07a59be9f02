"""The slices of a parallel iterator job: ranges of one source, each with its own cursor.

A job started with ``parallelism=N`` has its source cut into N ranges by its first step
(`SliceableSource.slice`: key ranges of equal row counts, or byte ranges of a file cut at
record starts); each range is a slice with its own cursor, counters and step tasks, so
any worker runs any slice, and one worker runs several at once. The job's generation
fences them all: pause, resume and cancel act on the whole job.

Work stealing keeps a skewed job finishing together. A slice that runs out asks the slice
with the most left (if cut once more, each part would still be over a page) to split: it
adds one to that slice's `split_wanted`. The victim does the split itself, at its next
page, fenced by its own task: it cuts what is left after its cursor in 1 + split_wanted
parts, keeps the lowest and hands each other one to a new slice (so a slice whose runner
died, and that several slices asked meanwhile, splits as many ways when it is rescued).
Only the slice's own runner ever moves its cursor or its bound, so the
cursor can never pass the new bound and no row goes to two slices.

Locks are taken job row first, then slice rows: a checkpoint holds the job row shared (its
page commits under the generation it read, and pages of other slices commit alongside), a
slice that finishes holds it exclusively, so the last two slices cannot both think the
other still runs, and so does a split, so two splits cannot number their new slices alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from batchyard.clock import to_datetime
from batchyard.errors import InvalidInput
from batchyard.iterator.records import SliceableSource, SliceStatus
from batchyard.store import Tx
from batchyard.store.base import Rows

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

MAX_PARALLELISM = 64


def checked_parallelism(runtime: Runtime, parallelism: int, source: str) -> int:
    """`parallelism` from `start_iterator`, or `InvalidInput` naming the field."""
    if (
        isinstance(parallelism, bool)
        or not isinstance(parallelism, int)
        or not 1 <= parallelism <= MAX_PARALLELISM
    ):
        raise InvalidInput(
            f"parallelism must be an integer from 1 to {MAX_PARALLELISM}", field="parallelism"
        )
    if parallelism > 1 and not isinstance(runtime.handlers.get(source), SliceableSource):
        raise InvalidInput(
            f"parallelism needs a source that can be cut into ranges (sources.sql_keyset "
            f"without follow, sources.ndjson_file or sources.csv_file); {source!r} cannot",
            field="parallelism",
        )
    return parallelism


def source_of(runtime: Runtime, name: str) -> SliceableSource:
    source = runtime.handlers.get(name)
    if not isinstance(source, SliceableSource):
        raise TypeError(f"get_next_batch handler {name!r} cannot be cut into slices")
    return source


class Slices:
    """The slice rows of parallel jobs."""

    def create(self, tx: Tx, job_id: str, parts: list[tuple[str, int]]) -> list[int]:
        """The first slices of a job, from (cursor JSON, count) pairs; their numbers."""
        tx.executemany(
            "INSERT INTO batchyard_iterator_slices (job_id, slice, cursor, total, started_at, "
            "updated_at) VALUES (:job_id, :slice, :cursor, :total, {now}, {now})",
            [
                {"job_id": job_id, "slice": number, "cursor": cursor, "total": count}
                for number, (cursor, count) in enumerate(parts)
            ],
        )
        tx.execute(
            "UPDATE batchyard_iterators SET total = :total WHERE job_id = :job_id",
            {"job_id": job_id, "total": sum(count for _, count in parts)},
        )
        return list(range(len(parts)))

    def running(self, tx: Tx, job_id: str, number: int) -> Any:
        """The slice if it still has work, else None."""
        return tx.one(
            "SELECT * FROM batchyard_iterator_slices WHERE job_id = :job_id "
            "AND slice = :slice AND done = 0",
            {"job_id": job_id, "slice": number},
        )

    def unfinished(self, tx: Tx, job_id: str) -> list[int]:
        rows = tx.all(
            "SELECT slice FROM batchyard_iterator_slices WHERE job_id = :job_id AND done = 0 "
            "ORDER BY slice",
            {"job_id": job_id},
        )
        return [int(row["slice"]) for row in rows]

    def exist(self, tx: Tx, job_id: str) -> bool:
        return (
            tx.one(
                "SELECT 1 FROM batchyard_iterator_slices WHERE job_id = :job_id LIMIT 1",
                {"job_id": job_id},
            )
            is not None
        )

    def checkpoint(
        self, tx: Tx, job_id: str, number: int, cursor: str, items: int, next_size: int
    ) -> Rows:
        """Move the slice's cursor past a page; `asked_to_split` of what it returns says,
        after the commit, whether another slice asked it to split (read then, it costs no
        round trip of its own in a pipelined transaction)."""
        return tx.later(
            "UPDATE batchyard_iterator_slices SET cursor = :cursor, "
            "processed = processed + :n, batches = batches + 1, page_size = :size, "
            "updated_at = {now} WHERE job_id = :job_id AND slice = :slice "
            "RETURNING split_wanted",
            {"job_id": job_id, "slice": number, "cursor": cursor, "n": items, "size": next_size},
        )

    @staticmethod
    def asked_to_split(checkpointed: Rows) -> bool:
        rows = checkpointed.all()
        return bool(rows and rows[0]["split_wanted"])

    def finish(self, tx: Tx, job: Any, number: int) -> bool:
        """The slice ran out (the caller holds the job row exclusively). Whether the whole
        job is done now; if not, ask the slices with the most left to split."""
        job_id = job["job_id"]
        key = {"job_id": job_id, "slice": number}
        asked = tx.one(
            "SELECT split_wanted FROM batchyard_iterator_slices "
            "WHERE job_id = :job_id AND slice = :slice",
            key,
        )
        tx.execute(
            "UPDATE batchyard_iterator_slices SET done = 1, split_wanted = 0, "
            "completed_at = {now}, updated_at = {now} WHERE job_id = :job_id AND slice = :slice",
            key,
        )
        if not self.unfinished(tx, job_id):
            tx.execute(  # the sums stay on the job, for on_complete and for the list
                "UPDATE batchyard_iterators SET processed = (SELECT SUM(processed) "
                "FROM batchyard_iterator_slices WHERE job_id = :job_id), batches = (SELECT "
                "SUM(batches) FROM batchyard_iterator_slices WHERE job_id = :job_id) "
                "WHERE job_id = :job_id",
                {"job_id": job_id},
            )
            return True
        # a slice that was itself asked to split and ran out first passes the asks on
        for _ in range(1 + int(asked["split_wanted"] if asked is not None else 0)):
            # the slice whose parts would be largest after one more cut, if each part would
            # still be more than a page
            victim = tx.one(
                "SELECT slice FROM batchyard_iterator_slices WHERE job_id = :job_id "
                "AND done = 0 AND total - processed > (split_wanted + 2) * "
                "COALESCE(page_size, :batch_size) "
                "ORDER BY (total - processed) / (split_wanted + 2.0) DESC, slice LIMIT 1",
                {"job_id": job_id, "batch_size": int(job["batch_size"])},
            )
            if victim is None:
                break
            tx.execute(
                "UPDATE batchyard_iterator_slices SET split_wanted = split_wanted + 1 "
                "WHERE job_id = :job_id AND slice = :slice",
                {"job_id": job_id, "slice": victim["slice"]},
            )
        return False

    def split(
        self, tx: Tx, job_id: str, number: int, parts: list[tuple[str, int]], served: int
    ) -> list[int]:
        """Narrow the slice to the first of `parts` (what is left after its cursor, cut) and
        hand each other part to a new slice, for `served` of the asks; the new slices'
        numbers. Only the slice's own runner calls this."""
        tx.execute(
            "UPDATE batchyard_iterator_slices SET cursor = :cursor, "
            "total = processed + :left, split_wanted = CASE WHEN split_wanted > :served "
            "THEN split_wanted - :served ELSE 0 END, updated_at = {now} "
            "WHERE job_id = :job_id AND slice = :slice",
            {
                "job_id": job_id,
                "slice": number,
                "cursor": parts[0][0],
                "left": parts[0][1],
                "served": served,
            },
        )
        top = tx.one(
            "SELECT MAX(slice) AS top FROM batchyard_iterator_slices WHERE job_id = :job_id",
            {"job_id": job_id},
        )
        numbers = list(range(int(top["top"]) + 1, int(top["top"]) + len(parts)))
        tx.executemany(
            "INSERT INTO batchyard_iterator_slices (job_id, slice, cursor, total, page_size, "
            "started_at, updated_at) SELECT :job_id, :new, :cursor, :total, page_size, "
            "{now}, {now} FROM batchyard_iterator_slices "
            "WHERE job_id = :job_id AND slice = :slice",
            [
                {"job_id": job_id, "slice": number, "new": new, "cursor": cursor, "total": count}
                for new, (cursor, count) in zip(numbers, parts[1:], strict=True)
            ],
        )
        return numbers

    def decline(self, tx: Tx, job_id: str, number: int) -> None:
        """Too little was left to split: the ask is dropped."""
        tx.execute(
            "UPDATE batchyard_iterator_slices SET split_wanted = 0 "
            "WHERE job_id = :job_id AND slice = :slice",
            {"job_id": job_id, "slice": number},
        )

    def statuses(self, tx: Tx, job_id: str) -> tuple[SliceStatus, ...]:
        return self.statuses_of(self.rows_later(tx, job_id).all())

    @staticmethod
    def rows_later(tx: Tx, job_id: str) -> Rows:
        """The job's slices, read as `Tx.later` reads (with the rest of a pipelined read)."""
        return tx.later(
            "SELECT * FROM batchyard_iterator_slices WHERE job_id = :job_id ORDER BY slice",
            {"job_id": job_id},
        )

    @staticmethod
    def statuses_of(rows: list[Any]) -> tuple[SliceStatus, ...]:
        return tuple(
            SliceStatus(
                slice=int(row["slice"]),
                done=bool(row["done"]),
                processed=int(row["processed"]),
                batches=int(row["batches"]),
                total=int(row["total"]),
                cursor=orjson.loads(row["cursor"]),
                started_at=to_datetime(row["started_at"]),
                updated_at=to_datetime(row["updated_at"]),
                completed_at=to_datetime(row["completed_at"]),
            )
            for row in rows
        )

    def delete(self, tx: Tx, job_id: str) -> None:
        tx.execute(
            "DELETE FROM batchyard_iterator_slices WHERE job_id = :job_id", {"job_id": job_id}
        )
