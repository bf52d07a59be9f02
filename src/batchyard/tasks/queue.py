"""The task queue: durable tasks in one table, the verbs every capability schedules with.

A task is queued with a kind, a payload and optionally a key (one live task per key: a
second enqueue brings the first forward instead). A worker claims due tasks with a lease
and a fencing token; every write about a task carries its token, and a write from a runner
whose lease was taken over is refused (`LeaseLost`). Capabilities never write the table
themselves: keys are matched by prefix here, one way (`substr`: SQLite's LIKE ignores case
and '_' would be a wildcard).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from batchyard import metrics
from batchyard.errors import LeaseLost, NotFound
from batchyard.handlers import HandlerLimit
from batchyard.store import Store, Tx
from batchyard.store.base import Row, Rows
from batchyard.tasks import handoff, limits, sql
from batchyard.tasks.directed import Directed
from batchyard.tasks.records import Task, task_of

# a task to queue: its key, its payload, and the key of the task it waits for
Queued = tuple[str | None, Mapping[str, Any], str | None]


class TaskQueue:
    """The task verbs over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # whether some handler has a limit (set by `publish_limits`): only then does a claim
        # look for limited handlers' tasks, a round trip of its own
        self.limited = False
        self.directed = Directed(store)  # tasks this process queued, for its workers

    def enqueue(
        self,
        tx: Tx,
        kind: str,
        payload: Mapping[str, Any],
        *,
        delay: float = 0.0,
        key: str | None = None,
        max_attempts: int = 5,
        after: str | None = None,
        handler: str | None = None,
    ) -> None:
        """Schedule a task `delay` seconds from now. A task with the same `key` that is still
        queued is brought forward to the earlier of the two times instead of duplicated.
        `after` names the key of a task that must be done (or discarded) before this one
        runs; `handler` the handler whose limits the task keeps (see `limits`)."""
        self.enqueue_many(
            tx,
            kind,
            [(key, payload, after)],
            delay=delay,
            max_attempts=max_attempts,
            handler=handler,
        )

    def enqueue_many(
        self,
        tx: Tx,
        kind: str,
        tasks: Sequence[tuple[str | None, Mapping[str, Any]] | Queued],
        *,
        delay: float = 0.0,
        max_attempts: int = 5,
        handler: str | None = None,
        announce: bool = False,
    ) -> None:
        """Schedule tasks given as (key, payload) or (key, payload, after), keys distinct, as
        `enqueue` does each - in one statement, however many (a statement per task costs a
        round trip each, and on SQLite a wait for the GIL each while other threads run).
        `announce`: tell the workers of this process which tasks were queued, for them to
        claim directly (see `directed`)."""
        if not tasks:
            return
        params = {
            "kind": kind,
            "pairs": orjson.dumps(
                [(task[0], orjson.dumps(task[1]).decode(), *task[2:]) for task in tasks]
            ).decode(),
            "delay": float(delay),
            "max_attempts": max_attempts,
            "handler": handler,
        }
        if delay <= 0 and any(len(task) > 2 and task[2] for task in tasks):
            # some wait for others: each whose predecessor is there now is parked
            tx.execute(handoff.ENQUEUE_PARKING, {**params, "park": handoff.PARK_SECONDS})
        else:
            tx.execute(sql.ENQUEUE, params)
        if delay <= 0:
            if announce:  # heard before the wake-up: both after the commit, in this order
                self.directed.announce(tx, kind, tasks, handler)
            self.store.notify_work(tx)

    def fence(self, tx: Tx, task: Task) -> None:
        """Make this transaction commit only while `task` is still held with its token (a
        partial result of a long task is fenced like its completion)."""
        tx.require(
            "UPDATE batchyard_tasks SET updated_at = {now} WHERE id = :id AND token = :token "
            "RETURNING id",
            {"id": task.id, "token": task.token},
            _lost(task),
        )

    def claim(
        self,
        worker_id: str,
        limit: int,
        lease: float,
        now: float | None = None,
        *,
        look: bool = True,
    ) -> list[Task]:
        """Take up to `limit` due tasks - queued ones whose time has come and running ones
        whose lease expired - with a new fencing token and a lease of `lease` seconds.

        The claim is one statement, a transaction of its own (no BEGIN or COMMIT to wait
        for). On a store with one writer an idle poller first looks without the write lock,
        so that it does not queue behind producers for SQLite's writer; ``look=False`` skips
        that look when work is known to be waiting (the last claim came back full)."""
        self.store.watch_for_work()
        if look and self.store.single_writer:
            with self.store.transaction(now, write=False) as tx:
                if tx.one(sql.ANY_DUE) is None:
                    return []
        claimed = self._claim_limited(worker_id, limit, lease, now) if self.limited else []
        if len(claimed) < limit:
            params = {"limit": limit - len(claimed), "worker_id": worker_id, "lease": lease}
            claimed += self.store.all(sql.CLAIM_SQL, params, now)
        tasks = sorted((task_of(row) for row in claimed), key=lambda t: t.id)
        self.directed.taken(tasks)
        return tasks

    def _claim_limited(
        self, worker_id: str, limit: int, lease: float, now: float | None
    ) -> list[Row]:
        """Claim the due tasks of limited handlers that have room (see `limits`): the limit
        rows locked, then counted and claimed, in one round trip."""
        with self.store.transaction(now, pipeline=True) as tx:
            tx.later(limits.LOCK_LIMITS)
            tx.execute(limits.PRUNE_STARTS)
            claimed = tx.later(
                sql.CLAIM_LIMITED_SQL, {"limit": limit, "worker_id": worker_id, "lease": lease}
            )
            tx.execute(limits.RECORD_STARTS)
        return list(claimed.all())

    def publish_limits(
        self, limits_by_handler: Mapping[str, HandlerLimit | None], now: float | None
    ) -> None:
        """Put this process's handler limits in the store (a worker does, as it starts), and
        from then on claim limited handlers' tasks too when any handler has a limit."""
        self.limited = limits.publish(self.store, limits_by_handler, now)
        self.directed.limited = frozenset(
            name for name, limit in limits_by_handler.items() if limit is not None
        )

    def handler_loads(self, now: float | None = None) -> list[limits.HandlerLoad]:
        """Every limited handler's limits and load (in flight, recent starts, waiting)."""
        with self.store.transaction(now, write=False) as tx:
            return limits.loads(tx, sql.FREE_GATE)

    def claim_group(
        self,
        worker_id: str,
        kind: str,
        prefix: str,
        limit: int,
        lease: float,
        now: float | None = None,
    ) -> list[Task]:
        """Like `claim`, but only tasks of `kind` whose key starts with `prefix`: the rest of
        a group that one worker does at once (the chunks of one job)."""
        rows = self.store.all(
            sql.CLAIM_GROUP_SQL,
            {
                "limit": limit,
                "worker_id": worker_id,
                "lease": lease,
                "kind": kind,
                "prefix": prefix,
            },
            now,
        )
        return sorted((task_of(row) for row in rows), key=lambda t: t.id)

    def register_worker(self, worker_id: str, now: float | None = None) -> None:
        """List a worker that starts (its host and process), for the heartbeat to keep."""
        with self.store.transaction(now) as tx:
            tx.execute(
                "INSERT INTO batchyard_workers (id, host, pid, started_at, heartbeat_at) "
                "VALUES (:id, :host, :pid, {now}, {now})",
                {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid()},
            )

    def unregister_worker(self, worker_id: str, now: float | None = None) -> None:
        with self.store.transaction(now) as tx:
            tx.execute("DELETE FROM batchyard_workers WHERE id = :id", {"id": worker_id})

    def heartbeat(
        self, worker_id: str, tasks: Sequence[Task], lease: float, now: float | None = None
    ) -> set[int]:
        """Extend the leases of `tasks`; return the ids whose lease was lost."""
        lost: set[int] = set()
        with self.store.transaction(now) as tx:
            for task in tasks:
                cursor = tx.execute(
                    "UPDATE batchyard_tasks SET due_at = {now} + :lease "
                    "WHERE id = :id AND token = :token",
                    {"id": task.id, "token": task.token, "lease": lease},
                )
                if cursor.rowcount != 1:
                    lost.add(task.id)
            tx.execute(
                "UPDATE batchyard_workers SET heartbeat_at = {now} WHERE id = :id",
                {"id": worker_id},
            )
        return lost

    def complete(self, tx: Tx, task: Task, *, release: bool = False) -> None:
        """Remove a finished task, refusing a stale token (the caller's writes roll back).
        Fenced by `Tx.require`, so it may be written in a pipelined transaction. `release`
        brings forward the tasks parked behind it (where one may wait for it)."""
        tx.require(
            "DELETE FROM batchyard_tasks WHERE id = :id AND token = :token RETURNING id",
            {"id": task.id, "token": task.token},
            _lost(task),
        )
        if release and task.key is not None:
            tx.execute(handoff.UNPARK, {"key": task.key})

    def hand_over_place(
        self, tx: Tx, task: Task, worker_id: str, lease: float, handler: str
    ) -> Rows:
        """Claim in `tx` the oldest due task of the limited `handler` in the place that the
        end of `task` frees (see `handoff`). Call it before the write that ends `task`, and
        `handed` after the commit for the task to run next."""
        params = {"worker_id": worker_id, "lease": lease, "handler": handler}
        return tx.later(sql.HAND_OFF_LIMITED, {**params, "id": task.id, "token": task.token})

    def hand_over_next(self, tx: Tx, task: Task, worker_id: str, lease: float) -> Rows:
        """Claim in `tx` the task that waited for `task` (see `handoff`). Call it after the
        completion of `task` that brought it forward (`complete(release=True)`): the
        deletion goes first, as in every transaction that queues a task behind it (each
        locks the row it waits for), so that the two never wait for each other."""
        return tx.later(
            sql.HAND_OFF_NEXT, {"worker_id": worker_id, "lease": lease, "key": task.key}
        )

    def claim_ahead(self, tx: Tx, holder: Task, worker_id: str, lease: float, handler: str) -> Rows:
        """Claim in `tx` the oldest due task of the limited `handler` ahead, for the place
        that the running task `holder` holds (see `handoff`): held by this worker, not
        running until it takes the place (`take_place`). Read it with `handed`."""
        params = {"worker_id": worker_id, "lease": lease, "handler": handler}
        return tx.later(sql.CLAIM_AHEAD, {**params, "id": holder.id, "token": holder.token})

    def take_place(self, tx: Tx, task: Task, holder: Task, worker_id: str, lease: float) -> Rows:
        """In the transaction that ends `holder`, before that end: `task`, claimed ahead for
        its place, runs in that place now, with a fresh lease - while `holder` holds it.
        Its row after the commit if it did."""
        params = {"id": task.id, "token": task.token, "worker_id": worker_id, "lease": lease}
        return tx.later(
            handoff.TAKE_PLACE, {**params, "holder": holder.id, "holder_token": holder.token}
        )

    def wake_others(self, tx: Tx, task: Task, *, completed: bool, handler: str | None) -> None:
        """After the write that ended `task` and its hand-off: wake the other workers if
        what the end freed is still to be taken (its successor, or its limited `handler`'s
        place with a due task waiting); a hand-off that took it wakes no one."""
        waits = []
        if completed and task.key is not None:
            waits.append(handoff.NEXT_WAITS)
        if handler is not None:
            waits.append(handoff.PLACE_WAITS)
        if waits:
            condition = " OR ".join(f"({wait})" for wait in waits)
            self.store.notify_work(tx, condition, {"key": task.key, "handler": handler})

    @staticmethod
    def handed(rows: Rows | None) -> Task | None:
        """The task a `hand_off` claimed, if any (read after the commit)."""
        found = [] if rows is None else rows.all()
        return task_of(found[0]) if found else None

    def complete_many(self, tx: Tx, tasks: Sequence[Task]) -> None:
        """Remove finished tasks in one statement, all or none: one stale token among them
        refuses them all (the caller's writes roll back). Not in a pipelined transaction."""
        done = tx.executemany(
            "DELETE FROM batchyard_tasks WHERE id = :id AND token = :token",
            [{"id": task.id, "token": task.token} for task in tasks],
        )
        if done != len(tasks):
            raise LeaseLost(
                f"{len(tasks) - done} of tasks {[t.id for t in tasks]} are no "
                "longer held with their tokens",
                task_id=tasks[0].id,
            )

    def retry(self, tx: Tx, task: Task, error: str, delay: float) -> None:
        """Queue the task again after `delay` seconds, keeping its error."""
        tx.require(
            "UPDATE batchyard_tasks SET state = 'queued', due_at = {now} + :delay, "
            "last_error = :error, worker_id = NULL, updated_at = {now} "
            "WHERE id = :id AND token = :token RETURNING id",
            {"id": task.id, "token": task.token, "error": error, "delay": float(delay)},
            _lost(task),
        )
        tx.after_commit.append(metrics.TASK_RETRIES.labels(task.kind).inc)

    def postpone(self, tx: Tx, task: Task, delay: float) -> None:
        """Queue the task again after `delay` seconds without counting this attempt (it was
        not tried: something it must wait for is still busy)."""
        tx.require(
            "UPDATE batchyard_tasks SET state = 'queued', due_at = {now} + :delay, "
            "attempts = attempts - 1, worker_id = NULL, updated_at = {now} "
            "WHERE id = :id AND token = :token RETURNING id",
            {"id": task.id, "token": task.token, "delay": float(delay)},
            _lost(task),
        )

    def release(self, tasks: Sequence[Task], now: float | None = None) -> None:
        """Give leases back at shutdown: due at once, and the attempt does not count."""
        with self.store.transaction(now) as tx:
            self.give_back(tx, tasks)

    def give_back(self, tx: Tx, tasks: Sequence[Task]) -> None:
        """`release`, in `tx`."""
        for task in tasks:
            tx.execute(
                "UPDATE batchyard_tasks SET state = 'queued', due_at = {now}, "
                "attempts = attempts - 1, worker_id = NULL WHERE id = :id AND token = :token",
                {"id": task.id, "token": task.token},
            )
        if tasks:
            self.store.notify_work(tx)

    def dead_letter(self, tx: Tx, task: Task, error: str) -> None:
        """Move the task to the dead letters with its last error."""
        params = {"id": task.id, "token": task.token, "error": error}
        tx.require(
            "INSERT INTO batchyard_dead_tasks (id, kind, key, payload, attempts, max_attempts, "
            "last_error, after_key, handler, created_at, died_at) "
            "SELECT id, kind, key, payload, attempts, max_attempts, :error, after_key, "
            "handler, created_at, {now} "
            "FROM batchyard_tasks WHERE id = :id AND token = :token RETURNING id",
            params,
            _lost(task),
        )
        tx.execute("DELETE FROM batchyard_tasks WHERE id = :id", params)
        tx.after_commit.append(metrics.TASK_DEAD_LETTERS.labels(task.kind).inc)

    def redrive(self, tx: Tx, *, task_id: int | None = None, key: str | None = None) -> int:
        """Queue a dead task again (by id or key) with a fresh attempt count; return its id."""
        where = "id = :task_id" if task_id is not None else "key = :key"
        params = {"task_id": task_id, "key": key}
        row = tx.one(f"SELECT id FROM batchyard_dead_tasks WHERE {where}", params)
        if row is None:
            raise NotFound(
                f"no dead task with {'id' if task_id is not None else 'key'} "
                f"{task_id if task_id is not None else key!r}"
            )
        tx.execute(
            "INSERT INTO batchyard_tasks (id, kind, key, payload, state, due_at, attempts, "
            "max_attempts, last_error, after_key, handler, created_at, updated_at) "
            "SELECT id, kind, key, payload, 'queued', {now}, 0, max_attempts, last_error, "
            "after_key, handler, created_at, {now} FROM batchyard_dead_tasks WHERE id = :id",
            {"id": row["id"]},
        )
        tx.execute("DELETE FROM batchyard_dead_tasks WHERE id = :id", {"id": row["id"]})
        self.store.notify_work(tx)
        return int(row["id"])

    def dead_tasks(
        self,
        kind: str | None = None,
        limit: int = 100,
        *,
        prefix: str = "",
        offset: int = 0,
        tx: Tx | None = None,
    ) -> list[Row]:
        """Dead tasks (of `kind`, with keys under `prefix`), oldest first, after skipping
        `offset`; in `tx` if given."""
        if tx is None:
            with self.store.transaction(write=False) as read:
                return self.dead_tasks(kind, limit, prefix=prefix, offset=offset, tx=read)
        rows: list[Row] = tx.all(
            "SELECT id, kind, key, payload, attempts, last_error, created_at, died_at "
            "FROM batchyard_dead_tasks WHERE (CAST(:kind AS TEXT) IS NULL OR kind = :kind) "
            f"AND {sql.UNDER_PREFIX} ORDER BY id LIMIT :limit OFFSET :offset",
            {"kind": kind, "limit": limit, "prefix": prefix, "offset": max(0, offset)},
        )
        return rows

    def dead_task(self, tx: Tx, task_id: int, kind: str) -> Row | None:
        """One dead task of `kind`, or None."""
        row: Row | None = tx.one(
            "SELECT id, kind, key, payload, attempts, last_error, created_at, died_at "
            "FROM batchyard_dead_tasks WHERE id = :id AND kind = :kind",
            {"id": task_id, "kind": kind},
        )
        return row

    def discard_dead(self, tx: Tx, key: str) -> None:
        """Drop the dead task of `key` for good (its capability has closed its books); a
        task that waited for it is free to run."""
        tx.execute("DELETE FROM batchyard_dead_tasks WHERE key = :key", {"key": key})
        tx.execute(handoff.UNPARK, {"key": key})
        self.store.notify_work(tx)

    def cancel_queued(self, tx: Tx, kind: str, prefix: str) -> int:
        """Drop the queued tasks of `kind` whose key starts with `prefix` (a running one
        finishes; its writes are the capability's to refuse); return how many went."""
        return int(
            tx.execute(
                f"DELETE FROM batchyard_tasks WHERE kind = :kind "
                f"AND state = 'queued' AND {sql.UNDER_PREFIX}",
                {"kind": kind, "prefix": prefix},
            ).rowcount
        )

    def running(self, tx: Tx, kind: str, prefix: str, *, besides: int | None = None) -> bool:
        """Whether a task of `kind` under `prefix`, other than task `besides`, holds a live
        lease (an expired one is a dead runner's)."""
        return (
            tx.one(
                "SELECT 1 FROM batchyard_tasks WHERE kind = :kind AND state = 'running' "
                f"AND {sql.UNDER_PREFIX} AND id <> :besides AND due_at > {{now}} LIMIT 1",
                {"kind": kind, "prefix": prefix, "besides": -1 if besides is None else besides},
            )
            is not None
        )

    def next_due(self, now: float | None = None) -> float | None:
        """Seconds until the next task can be claimed (0 when one can now), None when idle:
        a task that waits for another is not counted, nor one of a limited handler before
        the handler has room again (a lease ends, or a start leaves the rate window)."""
        # with limits, both queries go in one pipeline: no round trip more than without
        with self.store.transaction(now, write=False, pipeline=self.limited) as tx:
            first = tx.later(sql.NEXT_DUE)
            limited = tx.later(sql.LIMITED_WAITS) if self.limited else None
        [row] = first.all()
        waits = [] if row["wait"] is None else [float(row["wait"])]
        if limited is not None:
            waits += limits.waits(list(limited.all()))
        return max(0.0, min(waits)) if waits else None


def _lost(task: Task) -> LeaseLost:
    return LeaseLost(
        f"task {task.id} ({task.kind}) is no longer held with token {task.token}",
        task_id=task.id,
    )
