"""Bulk jobs: import things and relationships, export things, transform data, embed things.

`create_batch_job` validates every item first: an invalid item is recorded failed with its
index and a message naming the field, and its neighbours go on. The valid items are split
into chunks of at most 100, each a durable task (3 retries with backoff, then the dead
letters; redrive puts it back). A chunk commits its effects, its per-item errors and
results, and the job's progress in one transaction fenced by the task's token, so a chunk
that is retried after a crash goes on after its last commit and nothing is counted twice.
Work that runs user code (transforms, embedding models) commits at least once a second, so
progress moves while a slow chunk runs; a chunk that runs past its time limit (30 s) gives
its worker slot back after its next commit and is queued again to go on from there.

Chunks that run no user code (imports, exports) are claimed and committed up to
`CHUNK_GROUP` of one job at a time, in one transaction; if that transaction fails, each of
them commits alone, so a bad chunk still retries and dies by itself.

A job is `pending` until its first commit, then `processing`; once every chunk is done it
is `completed`, or `failed` if any item failed or a chunk is dead. `cancelled` stops new
chunks and the rest of running ones at their next commit.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from batchyard import payloads
from batchyard.bulk import embeddings
from batchyard.bulk.kinds import JobType, builtin_types
from batchyard.bulk.records import (
    BatchJobRecord,
    BatchStats,
    DeadChunk,
    JobError,
    JobResult,
    JobStatus,
    job_record,
)
from batchyard.bulk.things import (
    ItemError,
)
from batchyard.clock import to_datetime
from batchyard.errors import Conflict, InvalidInput, NotFound
from batchyard.signals import RetryLater
from batchyard.store import Tx
from batchyard.tasks import Grouping, Task, TaskKind

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

CHUNK_TASK = "job.chunk"
CHUNK_SIZE = 100
CHUNK_GROUP = 50  # chunks of one job one commit may do (5,000 items, well under a second)
CHUNK_ATTEMPTS = 4  # the first try and 3 retries, then the dead letters
CHUNK_TIME_LIMIT = 30.0
PROGRESS_EVERY = 1.0  # seconds between progress commits while user code runs
MAX_ITEMS_PER_JOB = 1_000_000
PAGE_LIMIT = 1000


def job_types() -> dict[str, JobType]:
    """Every bulk job type: the built-in ones, and generate-embeddings."""
    return {**builtin_types(), "generate-embeddings": embeddings.job_type()}


class BulkJobs:
    """The bulk job service on one runtime. Reached through `Yard` methods."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.types = job_types()
        self.tasks = runtime.tasks
        runtime.kinds.add(TaskKind(
            CHUNK_TASK, self.run_chunk, on_dead=self.on_dead_chunk,
            grouping=Grouping(self.chunk_group, self.run_chunks, CHUNK_GROUP)))
        self.time_limit = CHUNK_TIME_LIMIT
        self.max_items = MAX_ITEMS_PER_JOB

    # -- creating -----------------------------------------------------------------------

    def create(self, type: str, items: Sequence[Any] | None = None, *, input: Any = None,
               options: dict[str, Any] | None = None, request_id: str | None = None) -> str:
        kind = self.types.get(type) if isinstance(type, str) else None
        if kind is None:
            raise InvalidInput(f"type must be one of {', '.join(sorted(self.types))}, "
                               f"not {type!r}", field="type")
        if options is not None and not isinstance(options, dict):
            raise InvalidInput("options must be an object", field="options")
        options = options or {}
        kind.check_options(self.runtime, options)
        if request_id is not None and (not isinstance(request_id, str) or not request_id
                                       or len(request_id) > 256):
            raise InvalidInput("request_id must be a string of 1 to 256 characters",
                               field="request_id")
        # before the namespace is read: PostgreSQL cannot take a lone surrogate in a query
        for field, value in (("input", input), ("options", options)):
            try:
                payloads.encode(value)
            except payloads.NotStorable as exc:
                raise payloads.refused(exc, field) from None
        if not items and kind.expands_namespace and isinstance(input, dict) and "ns" in input:
            items = self._namespace_refs(input["ns"])
        if not isinstance(items, list | tuple) or not items:
            raise InvalidInput("items must be a non-empty list", field="items")
        if len(items) > self.max_items:
            raise InvalidInput(f"items: {len(items)} is over the limit of {self.max_items} "
                               "per job", field="items")
        fingerprint = None
        if request_id is not None:  # only a request that may come again needs its print
            request = [type, items, input, options]
            try:
                text = orjson.dumps(request, default=repr, option=orjson.OPT_SORT_KEYS)
            except TypeError:  # an integer past 64 bits: the slower encoder takes anything
                text = json.dumps(request, default=repr, sort_keys=True).encode()
            fingerprint = hashlib.sha256(text).hexdigest()
            existing = self._by_request(request_id, fingerprint)
            if existing is not None:
                return existing

        valid: list[list[Any]] = []
        errors: list[dict[str, Any]] = []
        # an item that would not come back as given fails alone, like any invalid item
        unstorable = payloads.refusals(items)
        for index, item in enumerate(items):
            problem = unstorable.get(index)
            if problem is not None:
                # named like the other item errors: "data.big: ...", or "item: ..."
                errors.append({"idx": index,
                               "error": problem.at("" if problem.path else "item")})
                continue
            try:
                valid.append([index, kind.validate(item)])
            except ItemError as exc:
                errors.append({"idx": index, "error": str(exc)})
        chunks = [valid[i:i + CHUNK_SIZE] for i in range(0, len(valid), CHUNK_SIZE)]
        job_id = uuid.uuid4().hex
        try:
            self._insert(job_id, type, items, input, options, request_id, fingerprint,
                         errors, chunks)
        except _SameRequest:  # the same request_id committed meanwhile: that job it is
            assert fingerprint is not None
            existing = self._by_request(str(request_id), fingerprint)
            assert existing is not None
            return existing
        return job_id

    def _insert(self, job_id: str, type: str, items: Sequence[Any], input: Any,
                options: dict[str, Any], request_id: str | None, fingerprint: str | None,
                errors: list[dict[str, Any]], chunks: list[list[list[Any]]]) -> None:
        with self.store.transaction(self.runtime.now()) as tx:
            inserted = tx.execute(
                "INSERT INTO batchyard_jobs (id, type, status, total, failed, chunks, "
                "chunks_left, input, options, request_id, request_hash, created_at, "
                "updated_at, completed_at) VALUES (:id, :type, :status, :total, :failed, "
                ":chunks, :chunks, :input, :options, :request_id, :hash, {now}, {now}, "
                "CASE WHEN :chunks = 0 THEN {now} END) ON CONFLICT (request_id) DO NOTHING",
                {"id": job_id, "type": type, "total": len(items), "failed": len(errors),
                 "chunks": len(chunks), "input": orjson.dumps(input, default=repr).decode(),
                 "options": orjson.dumps(options).decode(), "request_id": request_id,
                 "hash": fingerprint,
                 "status": JobStatus.PENDING if chunks else JobStatus.FAILED},
            ).rowcount
            if inserted != 1:
                raise _SameRequest()  # rolls this transaction back
            for error in errors:
                error["job_id"] = job_id
            tx.executemany("INSERT INTO batchyard_job_errors (job_id, idx, error) "
                           "VALUES (:job_id, :idx, :error)", errors)
            # the items once, in their chunks' rows; the tasks say where to find them
            tx.executemany("INSERT INTO batchyard_job_chunks (job_id, chunk, items) "
                           "VALUES (:job_id, :chunk, :items)",
                           [{"job_id": job_id, "chunk": n,
                             "items": orjson.dumps(chunk).decode()}
                            for n, chunk in enumerate(chunks)])
            self.tasks.enqueue_many(
                tx, CHUNK_TASK,
                [(f"job:{job_id}:{n}", {"job_id": job_id, "chunk": n, "type": type,
                                        "options": options, "size": len(chunk)})
                 for n, chunk in enumerate(chunks)],
                max_attempts=CHUNK_ATTEMPTS)

    def _by_request(self, request_id: str, fingerprint: str) -> str | None:
        with self.store.transaction(write=False) as tx:
            row = tx.one("SELECT id, request_hash FROM batchyard_jobs "
                         "WHERE request_id = :request_id", {"request_id": request_id})
        if row is None:
            return None
        if row["request_hash"] != fingerprint:
            raise InvalidInput(f"request_id {request_id!r} was used for a different request",
                               field="request_id")
        return str(row["id"])

    def _namespace_refs(self, ns: Any) -> list[dict[str, Any]]:
        if not isinstance(ns, str) or not ns:
            raise InvalidInput("input.ns must be a non-empty string", field="input.ns")
        with self.store.transaction(write=False) as tx:
            return [{"ns": ns, "id": row["id"]} for row in tx.all(
                "SELECT id FROM batchyard_things WHERE ns = :ns ORDER BY id LIMIT :limit",
                {"ns": ns, "limit": self.max_items + 1})]

    # -- running a chunk ----------------------------------------------------------------

    def run_chunk(self, task: Task) -> None:
        kind, options = self.types[task.payload["type"]], task.payload["options"]
        if not kind.computes:  # all in the database: one transaction does the chunk
            self._commit(kind, options, [_Part(task)])
            return
        job_id, number = task.payload["job_id"], task.payload["chunk"]
        with self.store.transaction(write=False) as tx:
            job = tx.one("SELECT status FROM batchyard_jobs WHERE id = :id", {"id": job_id})
            chunk = tx.one("SELECT done, items FROM batchyard_job_chunks WHERE job_id = :id "
                           "AND chunk = :chunk", {"id": job_id, "chunk": number})
        items = _chunk_items(task, chunk)
        if job is None or items is None or job["status"] == JobStatus.CANCELLED:
            with self.store.transaction(self.runtime.now()) as tx:
                self.tasks.complete(tx, task)  # deleted or cancelled: nothing more to do
            return
        deadline = time.monotonic() + self.time_limit
        position = int(chunk["done"])
        while position < len(items):
            segment, computed = self._compute(kind, options, items[position:], deadline)
            if not self._commit(kind, options,
                                [_Part(task, segment, position, len(items), computed)]):
                return
            position += len(segment)
            if position < len(items) and time.monotonic() > deadline:
                # past the time limit: hand the slot back and go on from this commit later
                # (not a failed attempt - the chunk is making progress)
                with self.store.transaction(self.runtime.now()) as tx:
                    self.tasks.postpone(tx, task, 0.0)
                return

    def chunk_group(self, task: Task) -> str | None:
        """The key prefix of the chunks this one may commit with (its job's), or None when
        it runs user code and goes alone."""
        if self.types[task.payload["type"]].computes:
            return None
        return f"job:{task.payload['job_id']}:"

    def run_chunks(self, tasks: list[Task]) -> None:
        """Do several whole chunks of one job (of a kind that runs no user code) in one
        transaction: one fenced completion, one write of all their items, one progress
        update. It commits all of them or none."""
        kind, options = self.types[tasks[0].payload["type"]], tasks[0].payload["options"]
        self._commit(kind, options, [_Part(task) for task in tasks])

    def _compute(self, kind: JobType, options: dict[str, Any], segment: list[list[Any]],
                 deadline: float) -> tuple[list[list[Any]], list[tuple[Any, str | None]]]:
        """Run user code a batch at a time (one item, unless the kind takes batches) until
        a second has passed (or the time limit)."""
        until = min(time.monotonic() + PROGRESS_EVERY, deadline)
        size = max(1, kind.batch_size(options))
        outcomes: list[tuple[Any, str | None]] = []
        while len(outcomes) < len(segment):
            batch = [item for _, item in segment[len(outcomes):len(outcomes) + size]]
            try:
                outcomes.extend(kind.run_compute(self.runtime, options, batch))
            except RetryLater:
                if outcomes:  # keep what was done; the retry starts at this batch
                    break
                raise
            if time.monotonic() >= until:
                break
        return segment[:len(outcomes)], outcomes

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
                for (index, _), (result, error) in zip(segment, outcomes, strict=True):
                    if error is not None:
                        errors.append({"job_id": job_id, "idx": index, "error": error})
                    elif result is not None:
                        results.append({"job_id": job_id, "idx": index,
                                        "result": orjson.dumps(result).decode()})
                if errors:
                    tx.executemany("INSERT INTO batchyard_job_errors (job_id, idx, error) "
                                   "VALUES (:job_id, :idx, :error)", errors)
                if results:
                    tx.executemany("INSERT INTO batchyard_job_results (job_id, idx, result) "
                                   "VALUES (:job_id, :idx, :result)", results)
                # where a retry goes on from; a chunk that is done lets its items go
                tx.executemany(
                    "UPDATE batchyard_job_chunks SET done = :done, items = CASE "
                    "WHEN :last = 1 THEN NULL ELSE items END "
                    "WHERE job_id = :id AND chunk = :chunk",
                    [{"done": part.position + len(part_segment), "last": int(part.last),
                      "id": job_id, "chunk": part.task.payload["chunk"]}
                     for part, part_segment in zip(parts, segments, strict=True)])
                # the job's row last: on PostgreSQL its lock serialises the commits of one
                # job, so it is held from here to the commit only (and not while the items
                # are written); a cancelled job's row is left alone, and the whole
                # transaction with it
                if tx.execute(
                    "UPDATE batchyard_jobs SET processed = processed + :ok, "
                    "failed = failed + :bad, chunks_left = chunks_left - :last, status = CASE "
                    "WHEN chunks_left - :last > dead_chunks THEN 'processing' "
                    "WHEN failed + :bad > 0 OR dead_chunks > 0 THEN 'failed' "
                    "ELSE 'completed' END, completed_at = CASE "
                    "WHEN chunks_left - :last > dead_chunks THEN NULL ELSE {now} END, "
                    "updated_at = {now} WHERE id = :id AND status <> 'cancelled'",
                    {"ok": len(segment) - len(errors), "bad": len(errors),
                     "last": len(finished), "id": job_id},
                ).rowcount != 1:
                    raise _Cancelled()
        except _Cancelled:
            with self.store.transaction(self.runtime.now()) as tx:
                self.tasks.complete_many(tx, [part.task for part in parts])
            return False
        return True

    @staticmethod
    def _segments(tx: Tx, job_id: str, parts: list[_Part]) -> list[list[list[Any]]]:
        """Each part's items: those it came with, or its whole chunk's, read from the
        chunks' rows in one query (missing ones - a cancelled job's - are empty)."""
        wanted = [part.task.payload["chunk"] for part in parts
                  if part.segment is None and "items" not in part.task.payload]
        stored = {row["chunk"]: row for row in tx.all(
            "SELECT chunk, items FROM batchyard_job_chunks WHERE job_id = :id "
            "AND chunk IN {json_int_values}",
            {"id": job_id, "values": orjson.dumps(wanted).decode()})} if wanted else {}
        return [part.segment if part.segment is not None else
                _chunk_items(part.task, stored.get(part.task.payload["chunk"])) or []
                for part in parts]

    def _apply(self, tx: Tx, kind: JobType, options: dict[str, Any], parts: list[_Part],
               segment: list[list[Any]]) -> list[tuple[Any, str | None]]:
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
        tx.execute(
            "UPDATE batchyard_jobs SET dead_chunks = dead_chunks + 1, last_error = :error, "
            "status = CASE WHEN status = 'cancelled' THEN status "
            "WHEN chunks_left > dead_chunks + 1 THEN 'processing' ELSE 'failed' END, "
            "completed_at = CASE WHEN chunks_left > dead_chunks + 1 THEN NULL "
            "ELSE {now} END, updated_at = {now} WHERE id = :id",
            {"id": task.payload["job_id"], "error": error})

    # -- steering -----------------------------------------------------------------------

    def cancel(self, job_id: str) -> BatchJobRecord:
        with self.store.transaction(self.runtime.now()) as tx:
            row = self._row(tx, job_id, lock=True)
            if row["status"] in (JobStatus.COMPLETED, JobStatus.FAILED):
                raise Conflict(f"job {job_id} is already {row['status']}", job_id=job_id,
                               status=row["status"])
            if row["status"] != JobStatus.CANCELLED:
                tx.execute("UPDATE batchyard_jobs SET status = 'cancelled', "
                           "completed_at = {now}, updated_at = {now} WHERE id = :id",
                           {"id": job_id})
                self.tasks.cancel_queued(tx, CHUNK_TASK, f"job:{job_id}:")
                # no chunk of it runs again: its items can go (a running one has them)
                tx.execute("UPDATE batchyard_job_chunks SET items = NULL WHERE job_id = :id",
                           {"id": job_id})
        return self.get(job_id)

    def dead_chunks(self, job_id: str | None = None, limit: int = 100) -> list[DeadChunk]:
        rows = self.tasks.dead_tasks(CHUNK_TASK, _limit(limit),
                                     prefix="job:" if job_id is None else f"job:{job_id}:")
        chunks = []
        for row in rows:
            payload = orjson.loads(row["payload"])
            chunks.append(DeadChunk(
                task_id=row["id"], job_id=payload["job_id"], chunk=payload["chunk"],
                items=payload.get("size", len(payload.get("items", ()))),
                attempts=row["attempts"],
                error=row["last_error"], died_at=to_datetime(row["died_at"])))
        return chunks

    def redrive(self, task_id: int) -> BatchJobRecord:
        """Put a dead chunk back in the queue; its job is processing again."""
        with self.store.transaction(self.runtime.now()) as tx:
            row = self.tasks.dead_task(tx, task_id, CHUNK_TASK)
            if row is None:
                raise NotFound(f"no dead chunk with task id {task_id}", task_id=task_id)
            job_id = orjson.loads(row["payload"])["job_id"]
            self.tasks.redrive(tx, task_id=task_id)
            tx.execute("UPDATE batchyard_jobs SET dead_chunks = dead_chunks - 1, "
                       "status = CASE WHEN status = 'cancelled' THEN status "
                       "ELSE 'processing' END, completed_at = CASE WHEN status = 'cancelled' "
                       "THEN completed_at END, updated_at = {now} WHERE id = :id",
                       {"id": job_id})
        return self.get(job_id)

    # -- reading ------------------------------------------------------------------------

    def get(self, job_id: str) -> BatchJobRecord:
        with self.store.transaction(write=False) as tx:
            row = self._row(tx, job_id)
            errors = self._errors(tx, job_id, -1, 100)
            results = self._results(tx, job_id, -1, 100)
        return job_record(row, errors, [r.result for r in results])

    def list_jobs(self, status: str | None = None, type: str | None = None, limit: int = 100,
             offset: int = 0) -> list[BatchJobRecord]:
        with self.store.transaction(write=False) as tx:
            rows = tx.all(
                "SELECT * FROM batchyard_jobs WHERE "
                "(CAST(:status AS TEXT) IS NULL OR status = :status) AND "
                "(CAST(:type AS TEXT) IS NULL OR type = :type) "
                "ORDER BY created_at DESC, id LIMIT :limit OFFSET :offset",
                {"status": status, "type": type, "limit": _limit(limit),
                 "offset": max(0, int(offset))})
        return [job_record(row, [], []) for row in rows]

    def errors(self, job_id: str, after: int = -1, limit: int = 100) -> list[JobError]:
        with self.store.transaction(write=False) as tx:
            self._row(tx, job_id)
            return self._errors(tx, job_id, after, limit)

    def results(self, job_id: str, after: int = -1, limit: int = 100) -> list[JobResult]:
        with self.store.transaction(write=False) as tx:
            self._row(tx, job_id)
            return self._results(tx, job_id, after, limit)

    def count_things(self, ns: str) -> int:
        with self.store.transaction(write=False) as tx:
            return int(tx.one("SELECT COUNT(*) AS n FROM batchyard_things WHERE ns = :ns",
                              {"ns": ns})["n"])

    def stats(self) -> BatchStats:
        with self.store.transaction(write=False) as tx:
            counts = {row["status"]: int(row["n"]) for row in tx.all(
                "SELECT status, COUNT(*) AS n FROM batchyard_jobs GROUP BY status")}
        completed, failed = counts.get("completed", 0), counts.get("failed", 0)
        finished = completed + failed
        rate = 100.0 * completed / finished if finished else 0.0
        return BatchStats(total=sum(counts.values()), pending=counts.get("pending", 0),
                          processing=counts.get("processing", 0), completed=completed,
                          failed=failed, cancelled=counts.get("cancelled", 0),
                          success_rate=f"{rate:.2f}%")

    @staticmethod
    def _errors(tx: Tx, job_id: str, after: int, limit: int) -> list[JobError]:
        return [JobError(index=row["idx"], error=row["error"]) for row in tx.all(
            "SELECT idx, error FROM batchyard_job_errors WHERE job_id = :id AND idx > :after "
            "ORDER BY idx LIMIT :limit", {"id": job_id, "after": after, "limit": _limit(limit)})]

    @staticmethod
    def _results(tx: Tx, job_id: str, after: int, limit: int) -> list[JobResult]:
        return [JobResult(index=row["idx"], result=orjson.loads(row["result"])) for row in
                tx.all("SELECT idx, result FROM batchyard_job_results WHERE job_id = :id "
                       "AND idx > :after ORDER BY idx LIMIT :limit",
                       {"id": job_id, "after": after, "limit": _limit(limit)})]

    @staticmethod
    def _row(tx: Tx, job_id: str, lock: bool = False) -> Any:
        row = tx.one("SELECT * FROM batchyard_jobs WHERE id = :id"
                     + (" {for_update}" if lock else ""), {"id": job_id})
        if row is None:
            raise NotFound(f"no batch job {job_id!r}", job_id=job_id)
        return row


class _SameRequest(Exception):
    """Two creations with one request_id raced; the loser returns the winner's job."""


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


def _limit(limit: int) -> int:
    return max(1, min(PAGE_LIMIT, int(limit)))
