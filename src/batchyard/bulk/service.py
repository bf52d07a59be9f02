"""The bulk job service: create, cancel, redrive and read bulk jobs.

`create_batch_job` validates every item first: an invalid item is recorded failed with its
index and a message naming the field, and its neighbours go on. The valid items are split
into chunks of at most 100, each a durable task (3 retries with backoff, then the dead
letters; redrive puts it back) that `batchyard.bulk.chunks` runs.

A job is `pending` until its first commit, then `processing`; once every chunk is done it
is `completed`, or `failed` if any item failed or a chunk is dead. `cancelled` stops new
chunks and the rest of running ones at their next commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from batchyard import payloads
from batchyard.bulk import embeddings
from batchyard.bulk.chunks import CHUNK_TASK, ChunkRunner
from batchyard.bulk.completion import Completions, check_callback_url
from batchyard.bulk.kinds import JobType, builtin_types
from batchyard.bulk.reading import JobReader
from batchyard.bulk.records import (
    BulkJob,
    BulkJobStatus,
    BulkJobSubmission,
)
from batchyard.bulk.things import (
    ItemError,
)
from batchyard.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

CHUNK_SIZE = 100
CHUNK_ATTEMPTS = 4  # the first try and 3 retries, then the dead letters
MAX_ITEMS_PER_JOB = 1_000_000


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
        self.read = JobReader(runtime)
        self.completions = Completions(runtime, self.read.get, self.webhook_secret)
        self.chunks = ChunkRunner(runtime, self.types, self.completions)
        self.max_items = MAX_ITEMS_PER_JOB

    # -- creating -----------------------------------------------------------------------

    def submit(
        self,
        type: str,
        items: Sequence[Any] | None = None,
        *,
        input: Any = None,
        options: dict[str, Any] | None = None,
        request_id: str | None = None,
        on_complete: str | None = None,
        callback_url: str | None = None,
        throttle: str | None = None,
    ) -> BulkJobSubmission:
        """Validate and queue a bulk job; say whether it was made now or an earlier request
        with the same `request_id` had made it (a replay, which an API reports as such)."""
        kind = self.types.get(type) if isinstance(type, str) else None
        if kind is None:
            raise InvalidInput(
                f"type must be one of {', '.join(sorted(self.types))}, not {type!r}", field="type"
            )
        if options is not None and not isinstance(options, dict):
            raise InvalidInput("options must be an object", field="options")
        options = options or {}
        kind.check_options(self.runtime, options)
        for field, name in (("on_complete", on_complete), ("throttle", throttle)):
            if name is not None:
                self.runtime.handlers.name_of(name, field)  # registered, or refused
        if callback_url is not None:
            check_callback_url(callback_url)
        if request_id is not None and (
            not isinstance(request_id, str) or not request_id or len(request_id) > 256
        ):
            raise InvalidInput(
                "request_id must be a string of 1 to 256 characters", field="request_id"
            )
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
            raise InvalidInput(
                f"items: {len(items)} is over the limit of {self.max_items} per job", field="items"
            )
        fingerprint = None
        if request_id is not None:  # only a request that may come again needs its print
            request = [type, items, input, options, on_complete, callback_url, throttle]
            try:
                text = orjson.dumps(request, default=repr, option=orjson.OPT_SORT_KEYS)
            except TypeError:  # an integer past 64 bits: the slower encoder takes anything
                text = json.dumps(request, default=repr, sort_keys=True).encode()
            fingerprint = hashlib.sha256(text).hexdigest()
            existing = self._by_request(request_id, fingerprint)
            if existing is not None:
                return BulkJobSubmission(existing, replayed=True)

        valid: list[list[Any]] = []
        errors: list[dict[str, Any]] = []
        # an item that would not come back as given fails alone, like any invalid item
        unstorable = payloads.refusals(items)
        for index, item in enumerate(items):
            problem = unstorable.get(index)
            if problem is not None:
                # named like the other item errors: "data.big: ...", or "item: ..."
                errors.append({"idx": index, "error": problem.at("" if problem.path else "item")})
                continue
            try:
                valid.append([index, kind.validate(item)])
            except ItemError as exc:
                errors.append({"idx": index, "error": str(exc)})
        chunks = [valid[i : i + CHUNK_SIZE] for i in range(0, len(valid), CHUNK_SIZE)]
        job_id = uuid.uuid4().hex
        try:
            self._insert(
                job_id,
                type,
                items,
                input,
                options,
                request_id,
                fingerprint,
                errors,
                chunks,
                tell=(on_complete, callback_url),
                throttle=throttle,
            )
        except _SameRequest:  # the same request_id committed meanwhile: that job it is
            assert fingerprint is not None
            existing = self._by_request(str(request_id), fingerprint)
            assert existing is not None
            return BulkJobSubmission(existing, replayed=True)
        return BulkJobSubmission(job_id, replayed=False)

    def _insert(
        self,
        job_id: str,
        type: str,
        items: Sequence[Any],
        input: Any,
        options: dict[str, Any],
        request_id: str | None,
        fingerprint: str | None,
        errors: list[dict[str, Any]],
        chunks: list[list[list[Any]]],
        parent_id: str | None = None,
        tell: tuple[str | None, str | None] = (None, None),
        throttle: str | None = None,
    ) -> None:
        with self.store.transaction(self.runtime.now()) as tx:
            inserted = tx.execute(
                "INSERT INTO batchyard_jobs (id, type, status, total, failed, chunks, "
                "chunks_left, input, options, request_id, request_hash, parent_id, "
                "on_complete, callback_url, throttle, created_at, updated_at, completed_at) VALUES "
                "(:id, :type, :status, :total, :failed, :chunks, :chunks, :input, :options, "
                ":request_id, :hash, :parent, :on_complete, :callback_url, :throttle, {now}, "
                "{now}, "
                "CASE WHEN :chunks = 0 THEN {now} END) "
                "ON CONFLICT (request_id) DO NOTHING",
                {
                    "id": job_id,
                    "type": type,
                    "total": len(items),
                    "failed": len(errors),
                    "chunks": len(chunks),
                    "input": orjson.dumps(input, default=repr).decode(),
                    "options": orjson.dumps(options).decode(),
                    "request_id": request_id,
                    "hash": fingerprint,
                    "parent": parent_id,
                    "on_complete": tell[0],
                    "callback_url": tell[1],
                    "throttle": throttle,
                    "status": BulkJobStatus.PENDING if chunks else BulkJobStatus.FAILED,
                },
            ).rowcount
            if inserted != 1:
                raise _SameRequest()  # rolls this transaction back
            if not chunks:  # no valid item: the job ends as it begins
                self.completions.job_ended(tx, job_id)
            if parent_id is not None:
                # the retry takes the items of the parent's dead chunks: redriving one of
                # them now would deliver its items twice
                every = MAX_ITEMS_PER_JOB // CHUNK_SIZE  # chunks a job can have
                for dead in self.tasks.dead_tasks(
                    CHUNK_TASK, every, prefix=f"job:{parent_id}:", tx=tx
                ):
                    self.tasks.discard_dead(tx, dead["key"])
                tx.execute(
                    "UPDATE batchyard_job_chunks SET items = NULL WHERE job_id = :id",
                    {"id": parent_id},
                )
            for error in errors:
                error["job_id"] = job_id
            tx.executemany(
                "INSERT INTO batchyard_job_errors (job_id, idx, error) "
                "VALUES (:job_id, :idx, :error)",
                errors,
            )
            # the items once, in their chunks' rows; the tasks say where to find them
            tx.executemany(
                "INSERT INTO batchyard_job_chunks (job_id, chunk, items) "
                "VALUES (:job_id, :chunk, :items)",
                [
                    {"job_id": job_id, "chunk": n, "items": orjson.dumps(chunk).decode()}
                    for n, chunk in enumerate(chunks)
                ],
            )
            self.tasks.enqueue_many(
                tx,
                CHUNK_TASK,
                [
                    (
                        f"job:{job_id}:{n}",
                        {
                            "job_id": job_id,
                            "chunk": n,
                            "type": type,
                            "options": options,
                            "size": len(chunk),
                            # asked before each run of the chunk (no read of the job first)
                            "throttle": throttle,
                        },
                    )
                    for n, chunk in enumerate(chunks)
                ],
                max_attempts=CHUNK_ATTEMPTS,
            )

    def _by_request(self, request_id: str, fingerprint: str) -> str | None:
        with self.store.transaction(write=False) as tx:
            row = tx.one(
                "SELECT id, request_hash FROM batchyard_jobs WHERE request_id = :request_id",
                {"request_id": request_id},
            )
        if row is None:
            return None
        if row["request_hash"] != fingerprint:
            raise InvalidInput(
                f"request_id {request_id!r} was used for a different request", field="request_id"
            )
        return str(row["id"])

    def _namespace_refs(self, ns: Any) -> list[dict[str, Any]]:
        if not isinstance(ns, str) or not ns:
            raise InvalidInput("input.ns must be a non-empty string", field="input.ns")
        with self.store.transaction(write=False) as tx:
            return [
                {"ns": ns, "id": row["id"]}
                for row in tx.all(
                    "SELECT id FROM batchyard_things WHERE ns = :ns ORDER BY id LIMIT :limit",
                    {"ns": ns, "limit": self.max_items + 1},
                )
            ]

    def retry_failed(self, job_id: str) -> BulkJobSubmission:
        """A new job of the same type, input and options from the items of `job_id` that
        failed while processing - each as it was accepted - and the items of its dead
        chunks; once per parent (a second call returns the same job, as a replay)."""
        request_id = f"retry-of:{job_id}"
        fingerprint = hashlib.sha256(request_id.encode()).hexdigest()
        existing = self._by_request(request_id, fingerprint)
        if existing is not None:
            return BulkJobSubmission(existing, replayed=True)
        with self.store.transaction(write=False) as tx:
            row = JobReader.row(tx, job_id)
            if row["status"] in (BulkJobStatus.PENDING, BulkJobStatus.PROCESSING):
                raise Conflict(
                    f"job {job_id} is {row['status']}: retry its failed items once it ends",
                    job_id=job_id,
                    status=row["status"],
                )
            failed = [
                (int(error["idx"]), orjson.loads(error["item"]))
                for error in tx.all(
                    "SELECT idx, item FROM batchyard_job_errors WHERE job_id = :id "
                    "AND item IS NOT NULL",
                    {"id": job_id},
                )
            ]
            # a dead chunk keeps the items it did not get to (a done or cancelled one none)
            for chunk in tx.all(
                "SELECT done, items FROM batchyard_job_chunks WHERE job_id = :id "
                "AND items IS NOT NULL",
                {"id": job_id},
            ):
                failed += [
                    (int(i), item) for i, item in orjson.loads(chunk["items"])[chunk["done"] :]
                ]
        if not failed:
            raise Conflict(f"job {job_id} has no failed items to retry", job_id=job_id)
        # in the parent's order, numbered afresh; already validated, so not validated again
        valid = [[n, item] for n, (_, item) in enumerate(sorted(failed, key=lambda f: f[0]))]
        chunks = [valid[i : i + CHUNK_SIZE] for i in range(0, len(valid), CHUNK_SIZE)]
        retry_id = uuid.uuid4().hex
        try:
            self._insert(
                retry_id,
                row["type"],
                valid,
                orjson.loads(row["input"]),
                orjson.loads(row["options"]),
                request_id,
                fingerprint,
                [],
                chunks,
                parent_id=job_id,
                tell=(row["on_complete"], row["callback_url"]),
                throttle=row["throttle"],
            )
        except _SameRequest:  # a concurrent call made it first
            existing = self._by_request(request_id, fingerprint)
            assert existing is not None
            return BulkJobSubmission(existing, replayed=True)
        return BulkJobSubmission(retry_id, replayed=False)

    # -- the rest of a job's life ---------------------------------------------------------

    def cancel(self, job_id: str) -> BulkJob:
        with self.store.transaction(self.runtime.now()) as tx:
            row = JobReader.row(tx, job_id, lock=True)
            if row["status"] in (BulkJobStatus.COMPLETED, BulkJobStatus.FAILED):
                raise Conflict(
                    f"job {job_id} is already {row['status']}", job_id=job_id, status=row["status"]
                )
            if row["status"] != BulkJobStatus.CANCELLED:
                tx.execute(
                    "UPDATE batchyard_jobs SET status = 'cancelled', "
                    "completed_at = {now}, updated_at = {now} WHERE id = :id",
                    {"id": job_id},
                )
                self.tasks.cancel_queued(tx, CHUNK_TASK, f"job:{job_id}:")
                self.completions.job_ended(tx, job_id)
                # no chunk of it runs again: its items can go (a running one has them)
                tx.execute(
                    "UPDATE batchyard_job_chunks SET items = NULL WHERE job_id = :id",
                    {"id": job_id},
                )
        return self.read.get(job_id)

    def redrive(self, task_id: int) -> BulkJob:
        """Put a dead chunk back in the queue; its job is processing again."""
        with self.store.transaction(self.runtime.now()) as tx:
            row = self.tasks.dead_task(tx, task_id, CHUNK_TASK)
            if row is None:
                raise NotFound(f"no dead chunk with task id {task_id}", task_id=task_id)
            job_id = orjson.loads(row["payload"])["job_id"]
            self.tasks.redrive(tx, task_id=task_id)
            tx.execute(
                "UPDATE batchyard_jobs SET dead_chunks = dead_chunks - 1, "
                "status = CASE WHEN status = 'cancelled' THEN status "
                "ELSE 'processing' END, completed_at = CASE WHEN status = 'cancelled' "
                "THEN completed_at END, updated_at = {now} WHERE id = :id",
                {"id": job_id},
            )
        return self.read.get(job_id)

    # -- reading ------------------------------------------------------------------------

    def webhook_secret(self) -> bytes:
        """The key webhooks are signed with: ``BATCHYARD_WEBHOOK_SECRET``, else one made once
        for this store (the same in every process on it)."""
        configured = os.environ.get("BATCHYARD_WEBHOOK_SECRET")
        if configured:
            return configured.encode()
        return self.store.secret("webhook-signing")


class _SameRequest(Exception):
    """Two creations with one request_id raced; the loser returns the winner's job."""
