"""Running bulk-job chunks: the task kind the worker runs for every chunk of a job.

A chunk commits its effects, its per-item errors and results, and the job's progress in one
transaction fenced by the task's token, so a chunk retried after a crash goes on after its
last commit and nothing is counted twice. Work that runs user code (transforms, embedding
models) commits at least once a second, so progress moves while a slow chunk runs; a chunk
past its time limit (30 s) gives its worker slot back after its next commit and is queued
again to go on from there. Chunks that run no user code are claimed and committed up to
`CHUNK_GROUP` of one job at a time, in one transaction. A kind that computes in batches may
ask for its chunks in groups (`JobType.group_chunks`: an embedding model sorts a group's
texts by length and pads less): a worker slot then computes a group's items in one call and
commits them in one transaction; if that fails, each chunk runs alone as above.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from batchyard import tracing
from batchyard.bulk.completion import Completions
from batchyard.bulk.kinds import JobType
from batchyard.bulk.records import BulkJobStatus
from batchyard.signals import RetryLater
from batchyard.store import Tx
from batchyard.tasks import Grouping, Task, TaskKind
from batchyard.throttling import throttle_wait

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

CHUNK_TASK = "job.chunk"
CHUNK_GROUP = 50  # chunks of one job one commit may do (5,000 items, well under a second)
CHUNK_TIME_LIMIT = 30.0
PROGRESS_EVERY = 1.0  # seconds between progress commits while user code runs


class ChunkRunner:
    """Runs the chunks of bulk jobs of the given types (declares the chunk task kind)."""

    def __init__(
        self, runtime: Runtime, types: dict[str, JobType], completions: Completions
    ) -> None:
        self.runtime = runtime
        self.completions = completions
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.types = types
        self.time_limit = CHUNK_TIME_LIMIT
        runtime.kinds.add(
            TaskKind(
                CHUNK_TASK,
                tracing.traced("batchyard.bulk.chunk", self.run_chunk),
                on_dead=self.on_dead_chunk,
                grouping=Grouping(
                    self.chunk_group,
                    tracing.traced("batchyard.bulk.chunks", self.run_chunks),
                    self.group_size,
                ),
            )
        )

    def run_chunk(self, task: Task) -> None:
        if self._throttled([task]):
            return
        kind, options = self.types[task.payload["type"]], task.payload["options"]
        if not kind.computes:  # all in the database: one transaction does the chunk
            self._commit(kind, options, [_Part(task)])
            return
        for part in self._unfinished([task]):
            deadline = time.monotonic() + self.time_limit
            remaining, position = part.segment or [], part.position
            while remaining:
                segment, computed = self._compute(kind, options, remaining, deadline)
                if not self._commit(
                    kind, options, [_Part(task, segment, position, part.size, computed)]
                ):
                    return
                position += len(segment)
                remaining = remaining[len(segment) :]
                if remaining and time.monotonic() > deadline:
                    # past the time limit: hand the slot back and go on from this commit
                    # later (not a failed attempt - the chunk is making progress)
                    with self.store.transaction(self.runtime.now()) as tx:
                        self.tasks.postpone(tx, task, 0.0)
                    return

    def chunk_group(self, task: Task) -> str | None:
        """The key prefix of the chunks this one may run with (its job's), or None when it
        runs user code a batch at a time and goes alone."""
        kind = self.types[task.payload["type"]]
        if kind.computes and kind.group_chunks <= 1:
            return None
        return f"job:{task.payload['job_id']}:"

    def group_size(self, task: Task) -> int:
        """How many chunks of this one's job a worker slot does at once."""
        kind = self.types[task.payload["type"]]
        return kind.group_chunks if kind.computes else CHUNK_GROUP

    def run_chunks(self, tasks: list[Task]) -> None:
        """Do several chunks of one job in one transaction: one fenced completion, one write
        of all their items, one progress update. It commits all of them or none. A kind
        that computes gets the items still to do of every chunk in one call first."""
        if self._throttled(tasks):
            return
        kind, options = self.types[tasks[0].payload["type"]], tasks[0].payload["options"]
        if not kind.computes:
            self._commit(kind, options, [_Part(task) for task in tasks])
            return
        parts = self._unfinished(tasks)
        if not parts:
            return
        items = [item for part in parts for _, item in part.segment or ()]
        outcomes = kind.run_compute(self.runtime, options, items)
        computed, start = [], 0
        for part in parts:
            end = start + len(part.segment or ())
            computed.append(replace(part, computed=outcomes[start:end]))
            start = end
        self._commit(kind, options, computed)

    def _throttled(self, tasks: list[Task]) -> bool:
        """Ask the job's throttle, if it has one, before its chunks run; when it says to
        wait, queue them again for then (not a failed attempt) and count the wait."""
        job_id, name = tasks[0].payload["job_id"], tasks[0].payload.get("throttle")
        if name is None:
            return False
        wait = throttle_wait(self.runtime.handlers, name, job_id)
        if not wait:
            return False
        with self.store.transaction(self.runtime.now()) as tx:
            for task in tasks:
                self.tasks.postpone(tx, task, wait)
            tx.execute(
                "UPDATE batchyard_jobs SET throttled_seconds = throttled_seconds + :wait "
                "WHERE id = :id",
                {"id": job_id, "wait": wait},
            )
        return True

    def _unfinished(self, tasks: list[Task]) -> list[_Part]:
        """Each task's items still to do, from its chunk's last commit on (`_Part`s with no
        outcomes yet); the tasks of a deleted or cancelled job, or of a chunk that is done,
        are completed here instead."""
        job_id = tasks[0].payload["job_id"]
        with self.store.transaction(write=False) as tx:
            job = tx.one("SELECT status FROM batchyard_jobs WHERE id = :id", {"id": job_id})
            rows = {
                row["chunk"]: row
                for row in tx.all(
                    "SELECT chunk, done, items FROM batchyard_job_chunks WHERE job_id = :id "
                    "AND chunk IN {json_int_values}",
                    {
                        "id": job_id,
                        "values": orjson.dumps([t.payload["chunk"] for t in tasks]).decode(),
                    },
                )
            }
        parts, gone = [], []
        for task in tasks:
            row = rows.get(task.payload["chunk"])
            items = _chunk_items(task, row)
            if job is None or items is None or job["status"] == BulkJobStatus.CANCELLED:
                gone.append(task)
                continue
            position = 0 if row is None else int(row["done"])
            parts.append(_Part(task, items[position:], position, len(items)))
        if gone:
            with self.store.transaction(self.runtime.now()) as tx:
                self.tasks.complete_many(tx, gone)  # nothing more to do
        return parts

    def _compute(
        self, kind: JobType, options: dict[str, Any], segment: list[list[Any]], deadline: float
    ) -> tuple[list[list[Any]], list[tuple[Any, str | None]]]:
        """Run user code a batch at a time (one item, unless the kind takes batches) until
        a second has passed (or the time limit)."""
        until = min(time.monotonic() + PROGRESS_EVERY, deadline)
        size = max(1, kind.batch_size(options))
        outcomes: list[tuple[Any, str | None]] = []
        while len(outcomes) < len(segment):
            batch = [item for _, item in segment[len(outcomes) : len(outcomes) + size]]
            try:
                outcomes.extend(kind.run_compute(self.runtime, options, batch))
            except RetryLater:
                if outcomes:  # keep what was done; the retry starts at this batch
                    break
                raise
            if time.monotonic() >= until:
                break
        return segment[: len(outcomes)], outcomes

    def _commit(self, kind: JobType, options: dict[str, Any], parts: list[_Part]) -> bool:
        """Commit the parts' effects (chunks of one job) and the job's progress in one
        transaction fenced by their tokens; False if the job was cancelled meanwhile (the
        tasks are completed then, and nothing more is done)."""
        job_id = parts[0].task.payload["job_id"]
        try:
            with self.store.transaction(self.runtime.now()) as tx:
                finished = [part.task for part in parts if part.last]
                if finished:  # fenced: these chunks end with this commit
                    self.tasks.complete_many(tx, finished)
                for part in parts:
                    if not part.last:
                        self.tasks.fence(tx, part.task)
                segments = self._segments(tx, job_id, parts)
                segment = [entry for part in segments for entry in part]
                outcomes = self._apply(tx, kind, options, parts, segment)
                errors, results = [], []
                for (index, item), (result, error) in zip(segment, outcomes, strict=True):
                    if error is not None:
                        # the item kept with its error: `retry_failed_items` takes it again
                        errors.append(
                            {
                                "job_id": job_id,
                                "idx": index,
                                "error": error,
                                "item": orjson.dumps(item).decode(),
                            }
                        )
                    elif result is not None:
                        results.append(
                            {
                                "job_id": job_id,
                                "idx": index,
                                "result": orjson.dumps(result).decode(),
                            }
                        )
                if errors:
                    tx.executemany(
                        "INSERT INTO batchyard_job_errors (job_id, idx, error, item) "
                        "VALUES (:job_id, :idx, :error, :item)",
                        errors,
                    )
                if results:
                    tx.executemany(
                        "INSERT INTO batchyard_job_results (job_id, idx, result) "
                        "VALUES (:job_id, :idx, :result)",
                        results,
                    )
                # where a retry goes on from; a chunk that is done lets its items go
                tx.executemany(
                    "UPDATE batchyard_job_chunks SET done = :done, items = CASE "
                    "WHEN :last = 1 THEN NULL ELSE items END "
                    "WHERE job_id = :id AND chunk = :chunk",
                    [
                        {
                            "done": part.position + len(part_segment),
                            "last": int(part.last),
                            "id": job_id,
                            "chunk": part.task.payload["chunk"],
                        }
                        for part, part_segment in zip(parts, segments, strict=True)
                    ],
                )
                # the job's row last: on PostgreSQL its lock serialises the commits of one
                # job, so it is held from here to the commit only (and not while the items
                # are written); a cancelled job's row is left alone, and the whole
                # transaction with it
                progress = tx.one(
                    "UPDATE batchyard_jobs SET processed = processed + :ok, "
                    "failed = failed + :bad, chunks_left = chunks_left - :last, status = CASE "
                    "WHEN chunks_left - :last > dead_chunks THEN 'processing' "
                    "WHEN failed + :bad > 0 OR dead_chunks > 0 THEN 'failed' "
                    "ELSE 'completed' END, completed_at = CASE "
                    "WHEN chunks_left - :last > dead_chunks THEN NULL ELSE {now} END, "
                    "updated_at = {now} WHERE id = :id AND status <> 'cancelled' "
                    "RETURNING completed_at",
                    {
                        "ok": len(segment) - len(errors),
                        "bad": len(errors),
                        "last": len(finished),
                        "id": job_id,
                    },
                )
                if progress is None:
                    raise _Cancelled()
                if progress["completed_at"] is not None:  # this commit ended the job
                    self.completions.job_ended(tx, job_id)
        except _Cancelled:
            with self.store.transaction(self.runtime.now()) as tx:
                self.tasks.complete_many(tx, [part.task for part in parts])
            return False
        return True

    @staticmethod
    def _segments(tx: Tx, job_id: str, parts: list[_Part]) -> list[list[list[Any]]]:
        """Each part's items: those it came with, or its whole chunk's, read from the
        chunks' rows in one query (missing ones - a cancelled job's - are empty)."""
        wanted = [
            part.task.payload["chunk"]
            for part in parts
            if part.segment is None and "items" not in part.task.payload
        ]
        stored = (
            {
                row["chunk"]: row
                for row in tx.all(
                    "SELECT chunk, items FROM batchyard_job_chunks WHERE job_id = :id "
                    "AND chunk IN {json_int_values}",
                    {"id": job_id, "values": orjson.dumps(wanted).decode()},
                )
            }
            if wanted
            else {}
        )
        return [
            part.segment
            if part.segment is not None
            else _chunk_items(part.task, stored.get(part.task.payload["chunk"])) or []
            for part in parts
        ]

    def _apply(
        self,
        tx: Tx,
        kind: JobType,
        options: dict[str, Any],
        parts: list[_Part],
        segment: list[list[Any]],
    ) -> list[tuple[Any, str | None]]:
        """Each item's (result, error): the kind's `apply` over the items - or, when user
        code ran, over the values it computed without an error."""
        if parts[0].computed is None:
            return kind.apply(self.runtime, tx, options, [item for _, item in segment])
        computed = [outcome for part in parts for outcome in part.computed or ()]
        ok = [(i, value) for i, (value, error) in enumerate(computed) if error is None]
        applied = kind.apply(self.runtime, tx, options, [value for _, value in ok])
        outcomes = list(computed)
        for (i, _), outcome in zip(ok, applied, strict=True):
            outcomes[i] = outcome
        return outcomes

    def on_dead_chunk(self, tx: Tx, task: Task, error: str) -> None:
        """A chunk used up its retries: the job is failed once nothing else is left."""
        job = tx.one(
            "UPDATE batchyard_jobs SET dead_chunks = dead_chunks + 1, last_error = :error, "
            "status = CASE WHEN status = 'cancelled' THEN status "
            "WHEN chunks_left > dead_chunks + 1 THEN 'processing' ELSE 'failed' END, "
            "completed_at = CASE WHEN chunks_left > dead_chunks + 1 THEN NULL "
            "ELSE {now} END, updated_at = {now} WHERE id = :id RETURNING status",
            {"id": task.payload["job_id"], "error": error},
        )
        if job is not None and job["status"] == "failed":  # its last chunk: the job ended
            self.completions.job_ended(tx, task.payload["job_id"])

    # -- steering -----------------------------------------------------------------------


class _Cancelled(Exception):
    """The job was cancelled while a chunk ran: its commit rolls back."""


@dataclass(frozen=True)
class _Part:
    """One chunk's share of a commit: `segment`, its items from `position` of `size`,
    with the outcomes of the user code that ran on them; or, with no segment, the whole
    chunk at once, its items read in the commit."""

    task: Task
    segment: list[list[Any]] | None = None
    position: int = 0
    size: int = 0
    computed: list[tuple[Any, str | None]] | None = None

    @property
    def last(self) -> bool:
        """Whether the chunk ends with this commit."""
        return self.segment is None or self.position + len(self.segment) == self.size


def _chunk_items(task: Task, row: Any) -> list[list[Any]] | None:
    """A chunk's [index, item] pairs: in its task's payload if it was queued before they
    moved to the chunk's row, else in that row (None once the chunk is done or its job
    cancelled)."""
    if "items" in task.payload:
        return task.payload["items"]  # type: ignore[no-any-return]
    if row is None or row["items"] is None:
        return None
    return orjson.loads(row["items"])  # type: ignore[no-any-return]
