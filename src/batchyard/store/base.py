"""The store contract: transactions over one SQL text for both dialects, and durable tasks.

SQL is written once with ``:name`` parameters and three fragments that differ by dialect:
``{now}`` (the store's clock, in epoch seconds), ``{skip_locked}`` and ``{for_update}``. Each
backend turns the text into its own form once and caches it. Above ``store/`` nothing knows
which backend it runs on.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, Protocol

import orjson

from batchyard import metrics
from batchyard.errors import InvalidInput, LeaseLost, NotFound

Params = Mapping[str, Any]
Row = Mapping[str, Any]


# The claim, in one statement: pick due tasks in due order, bump their fencing token and
# attempt, and set the lease. `due_at` carries the lease expiry of running tasks, so the same
# index range finds expired leases to rescue.
def _claim_sql(where: str) -> str:
    return (
        "WITH picked AS MATERIALIZED (SELECT id FROM batchyard_tasks "
        f"WHERE due_at <= {{now}}{where} ORDER BY due_at, id LIMIT :limit {{skip_locked}}) "
        "UPDATE batchyard_tasks SET state = 'running', token = token + 1, "
        "attempts = attempts + 1, worker_id = :worker_id, due_at = {now} + :lease, "
        "updated_at = {now} WHERE id IN (SELECT id FROM picked) "
        "RETURNING id, kind, key, payload, attempts, max_attempts, token, last_error"
    )


CLAIM_SQL = _claim_sql("")
# the same range, kept to one kind and one key prefix: the rest of a group (substr, not
# LIKE: SQLite's LIKE ignores case and '_' would be a wildcard)
CLAIM_GROUP_SQL = _claim_sql(
    " AND kind = :kind AND substr(key, 1, length(:prefix)) = :prefix")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class Task:
    """A claimed task: its fencing ``token`` must accompany every write about it."""

    id: int
    kind: str
    key: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    token: int
    last_error: str | None = None


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class Tx:
    """One open transaction. Runs dialect-neutral SQL; `now` is the clock to bind.

    Each `execute` gets a cursor of its own, so that in a pipelined transaction several
    statements can be sent before any result is read.
    """

    def __init__(self, store: Store, connection: Any, now: float | None) -> None:
        self.store = store
        self.connection = connection
        self.now = now
        self.after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Params | None = None) -> Cursor:
        bound = {**params, "now": self.store.now_value(self.now)} if params else {
            "now": self.store.now_value(self.now)}
        cursor: Cursor = self.connection.cursor()
        try:
            cursor.execute(self.store.prepare(sql), bound)  # type: ignore[attr-defined]
        except OverflowError as exc:
            raise _out_of_range(exc) from None
        return cursor

    def executemany(self, sql: str, rows: Sequence[dict[str, Any]]) -> int:
        """Run `sql` once per row; return the rows it changed in all (not known in a
        pipelined transaction). The rows get their ``now`` set in place."""
        now = self.store.now_value(self.now)
        for row in rows:
            row["now"] = now
        cursor = self.connection.cursor()
        try:
            cursor.executemany(self.store.prepare(sql), rows)
        except OverflowError as exc:
            raise _out_of_range(exc) from None
        return int(cursor.rowcount)

    def one(self, sql: str, params: Params | None = None) -> Any:
        return self.execute(sql, params).fetchone()

    def stream(self, sql: str, params: Params | None = None, size: int = 1000) -> Iterator[Any]:
        """Yield the rows of a query as plain tuples in column order, a few at a time, never
        holding the whole result (on PostgreSQL through a server-side cursor)."""
        bound = {**(params or {}), "now": self.store.now_value(self.now)}
        cursor = self.store._streaming_cursor(self.connection)
        try:
            cursor.execute(self.store.prepare(sql), bound)
            while rows := cursor.fetchmany(size):
                yield from rows
        finally:
            cursor.close()

    def all(self, sql: str, params: Params | None = None) -> list[Any]:
        return self.execute(sql, params).fetchall()

    def clock(self) -> float:
        """The store's current time, in epoch seconds."""
        return float(self.one("SELECT {now} AS now")["now"])


class Store:
    """Base of both backends: transactions, migrations and the durable task engine."""

    dialect: ClassVar[str]
    fragments: ClassVar[dict[str, str]]
    _prepared: ClassVar[dict[str, str]] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self._wakeup = threading.Event()

    # -- what each backend provides -------------------------------------------------------

    def transaction(self, now: float | None = None, *, write: bool = True,
                    pipeline: bool = False) -> Any:
        """Context manager yielding a `Tx` that commits on success, rolls back on error.
        ``write=False`` is a read snapshot that takes no write lock. ``pipeline=True`` lets
        PostgreSQL send statements without waiting for each result (read a cursor's rows to
        wait); `rowcount` is not known until then, so fenced writes do not use it."""
        raise NotImplementedError

    # One write statement as a transaction of its own: no BEGIN or COMMIT to send. Only for
    # a statement that is a whole change by itself.

    def one(self, sql: str, params: Params, now: float | None = None) -> Any:
        """Run one write statement as a transaction of its own; return its first row."""
        raise NotImplementedError

    def execute(self, sql: str, params: Params, now: float | None = None) -> int:
        """Run one write statement as a transaction of its own; return the rows it changed."""
        raise NotImplementedError

    def snapshot(self) -> Any:
        """Context manager yielding a read-only `Tx` in which every statement sees the same
        committed state (for exports that read more than once)."""
        raise NotImplementedError

    @staticmethod
    def keyset(order: str, tie: str, op: str, order_param: str, tie_param: str) -> str:
        """A compound-key comparison, `(order, tie) op (:order_param, :tie_param)`, written so
        that the store's planner reads it as one index range (a row value here)."""
        return f"({order}, {tie}) {op} (:{order_param}, :{tie_param})"

    @staticmethod
    def _convert(sql: str) -> str:
        """Turn ``:name`` parameters into the driver's style."""
        return sql

    @staticmethod
    def _streaming_cursor(connection: Any) -> Any:
        cursor = connection.cursor()
        cursor.row_factory = None  # tuples: the fastest rows the driver makes
        return cursor

    def now_value(self, now: float | None) -> float | None:  # pragma: no cover
        """The value bound to ``:now``: the manual clock's time, or the backend's own."""
        raise NotImplementedError

    def wait_for_work(self, timeout: float) -> None:  # pragma: no cover - abstract
        """Block until another writer may have made work due, or `timeout` passes."""
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _notify_sql(self) -> str | None:
        """SQL that wakes other processes' workers once the transaction commits."""
        return None

    # -- shared machinery -------------------------------------------------------------------

    def prepare(self, sql: str) -> str:
        """`sql` in this backend's form: fragments filled in, parameters converted (once per
        text: the same few statements run millions of times)."""
        prepared = self._prepared.get(sql)
        if prepared is None:
            text = _FRAGMENT.sub(lambda m: self.fragments.get(m[1], m[0]), sql)
            prepared = self._prepared[sql] = self._convert(text)
        return prepared

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._prepared = {}  # each backend its own

    def notify_work(self, tx: Tx) -> None:
        """Wake idle workers (in this process at once, elsewhere on commit)."""
        notify = self._notify_sql()
        if notify:
            tx.execute(notify)
        tx.after_commit.append(self._wakeup.set)

    def secret(self, name: str) -> bytes:
        """A random 32-byte secret, made on first use and the same for every process that
        uses this store."""
        self.execute("INSERT INTO batchyard_secrets (name, value) VALUES (:name, :value) "
                     "ON CONFLICT (name) DO NOTHING",
                     {"name": name, "value": secrets.token_hex(32)})
        with self.transaction(write=False) as tx:
            row = tx.one("SELECT value FROM batchyard_secrets WHERE name = :name",
                         {"name": name})
        return bytes.fromhex(row["value"])

    def migrations(self) -> list[Migration]:
        folder = resources.files("batchyard.store") / "migrations" / self.dialect
        found = []
        for entry in folder.iterdir():
            match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
            if match:
                found.append(Migration(int(match[1]), match[2], entry.read_text()))
        return sorted(found, key=lambda m: m.version)

    def migrate(self) -> int:
        """Apply every migration not yet applied; return the schema version. A store that is
        up to date is only read: opening a yard then never queues for SQLite's one writer
        (behind busy producers, a new worker could wait there for its whole start-up)."""
        latest = self.latest_version()
        if self.schema_version() == latest:
            return latest
        with self.transaction() as tx:
            self._lock_for_migration(tx)
            tx.execute(
                "CREATE TABLE IF NOT EXISTS batchyard_schema "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            applied = {row["version"] for row in tx.all("SELECT version FROM batchyard_schema")}
            for migration in self.migrations():
                if migration.version in applied:
                    continue
                self._run_script(tx, migration.sql)
                tx.execute(
                    "INSERT INTO batchyard_schema (version, name, applied_at) "
                    "VALUES (:version, :name, {now})",
                    {"version": migration.version, "name": migration.name},
                )
        return self.schema_version()

    def schema_version(self) -> int:
        with self.transaction(write=False) as tx:
            exists = tx.one(self._table_exists_sql(), {"name": "batchyard_schema"})
            if not exists:
                return 0
            row = tx.one("SELECT COALESCE(MAX(version), 0) AS v FROM batchyard_schema")
            return int(row["v"])

    def latest_version(self) -> int:
        return max(m.version for m in self.migrations())

    def _lock_for_migration(self, tx: Tx) -> None:
        """Serialise concurrent migrators (SQLite's write lock already does)."""

    def _run_script(self, tx: Tx, script: str) -> None:
        for statement in _statements(script):
            tx.execute(statement)

    def _table_exists_sql(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- durable tasks ------------------------------------------------------------------------

    def enqueue(
        self,
        tx: Tx,
        kind: str,
        payload: Mapping[str, Any],
        *,
        delay: float = 0.0,
        key: str | None = None,
        max_attempts: int = 5,
    ) -> None:
        """Schedule a task `delay` seconds from now. A task with the same `key` that is still
        queued is brought forward to the earlier of the two times instead of duplicated."""
        self.enqueue_many(tx, kind, [(key, payload)], delay=delay, max_attempts=max_attempts)

    def enqueue_many(self, tx: Tx, kind: str,
                     tasks: Sequence[tuple[str | None, Mapping[str, Any]]], *,
                     delay: float = 0.0, max_attempts: int = 5) -> None:
        """Schedule tasks given as (key, payload), keys distinct, as `enqueue` does each - in
        one statement, however many (a statement per task costs a round trip each, and on
        SQLite a wait for the GIL each while other threads run)."""
        if not tasks:
            return
        tx.execute(
            "INSERT INTO batchyard_tasks "
            "(kind, key, payload, state, due_at, max_attempts, created_at, updated_at) "
            "SELECT :kind, t.a, t.b, 'queued', {now} + :delay, :max_attempts, {now}, {now} "
            # WHERE true: SQLite's parser needs it before an upsert's ON CONFLICT
            "FROM {json_pairs} t WHERE true "
            "ON CONFLICT (key) DO UPDATE SET due_at = {least}(batchyard_tasks.due_at, "
            "excluded.due_at), updated_at = excluded.updated_at "
            "WHERE batchyard_tasks.state = 'queued'",
            {
                "kind": kind,
                "pairs": orjson.dumps([(key, orjson.dumps(payload).decode())
                                       for key, payload in tasks]).decode(),
                "delay": float(delay),
                "max_attempts": max_attempts,
            },
        )
        if delay <= 0:
            self.notify_work(tx)

    def fence(self, tx: Tx, task: Task) -> None:
        """Make this transaction commit only while `task` is still held with its token (a
        partial result of a long task is fenced like its completion)."""
        cursor = tx.execute(
            "UPDATE batchyard_tasks SET updated_at = {now} WHERE id = :id AND token = :token",
            {"id": task.id, "token": task.token},
        )
        self._fenced(cursor, task)

    def claim(
        self, worker_id: str, limit: int, lease: float, now: float | None = None
    ) -> list[Task]:
        """Take up to `limit` due tasks - queued ones whose time has come and running ones
        whose lease expired - with a new fencing token and a lease of `lease` seconds."""
        # look first without the write lock: idle workers polling must not queue up
        # behind producers for SQLite's single writer slot
        with self.transaction(now, write=False) as tx:
            if tx.one("SELECT id FROM batchyard_tasks WHERE due_at <= {now} LIMIT 1") is None:
                return []
        with self.transaction(now) as tx:
            rows = tx.all(CLAIM_SQL, {"limit": limit, "worker_id": worker_id, "lease": lease})
        return sorted((_task(row) for row in rows), key=lambda t: t.id)

    def claim_group(
        self, worker_id: str, kind: str, prefix: str, limit: int, lease: float,
        now: float | None = None,
    ) -> list[Task]:
        """Like `claim`, but only tasks of `kind` whose key starts with `prefix`: the rest of
        a group that one worker does at once (the chunks of one job)."""
        with self.transaction(now) as tx:
            rows = tx.all(CLAIM_GROUP_SQL, {"limit": limit, "worker_id": worker_id,
                                            "lease": lease, "kind": kind, "prefix": prefix})
        return sorted((_task(row) for row in rows), key=lambda t: t.id)

    def heartbeat(
        self, worker_id: str, tasks: Sequence[Task], lease: float, now: float | None = None
    ) -> set[int]:
        """Extend the leases of `tasks`; return the ids whose lease was lost."""
        lost: set[int] = set()
        with self.transaction(now) as tx:
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

    def complete(self, tx: Tx, task: Task) -> None:
        """Remove a finished task, refusing a stale token (the caller's writes roll back)."""
        cursor = tx.execute(
            "DELETE FROM batchyard_tasks WHERE id = :id AND token = :token",
            {"id": task.id, "token": task.token},
        )
        self._fenced(cursor, task)

    def complete_many(self, tx: Tx, tasks: Sequence[Task]) -> None:
        """Remove finished tasks in one statement, all or none: one stale token among them
        refuses them all (the caller's writes roll back). Not in a pipelined transaction."""
        done = tx.executemany("DELETE FROM batchyard_tasks WHERE id = :id AND token = :token",
                              [{"id": task.id, "token": task.token} for task in tasks])
        if done != len(tasks):
            raise LeaseLost(f"{len(tasks) - done} of tasks {[t.id for t in tasks]} are no "
                            "longer held with their tokens", task_id=tasks[0].id)

    def retry(self, tx: Tx, task: Task, error: str, delay: float) -> None:
        """Queue the task again after `delay` seconds, keeping its error."""
        cursor = tx.execute(
            "UPDATE batchyard_tasks SET state = 'queued', due_at = {now} + :delay, "
            "last_error = :error, worker_id = NULL, updated_at = {now} "
            "WHERE id = :id AND token = :token",
            {"id": task.id, "token": task.token, "error": error, "delay": float(delay)},
        )
        self._fenced(cursor, task)
        tx.after_commit.append(metrics.TASK_RETRIES.labels(task.kind).inc)

    def postpone(self, tx: Tx, task: Task, delay: float) -> None:
        """Queue the task again after `delay` seconds without counting this attempt (it was
        not tried: something it must wait for is still busy)."""
        cursor = tx.execute(
            "UPDATE batchyard_tasks SET state = 'queued', due_at = {now} + :delay, "
            "attempts = attempts - 1, worker_id = NULL, updated_at = {now} "
            "WHERE id = :id AND token = :token",
            {"id": task.id, "token": task.token, "delay": float(delay)},
        )
        self._fenced(cursor, task)

    def release(self, tasks: Sequence[Task], now: float | None = None) -> None:
        """Give leases back at shutdown: due at once, and the attempt does not count."""
        with self.transaction(now) as tx:
            for task in tasks:
                tx.execute(
                    "UPDATE batchyard_tasks SET state = 'queued', due_at = {now}, "
                    "attempts = attempts - 1, worker_id = NULL "
                    "WHERE id = :id AND token = :token",
                    {"id": task.id, "token": task.token},
                )
            if tasks:
                self.notify_work(tx)

    def dead_letter(self, tx: Tx, task: Task, error: str) -> None:
        """Move the task to the dead letters with its last error."""
        params = {"id": task.id, "token": task.token, "error": error}
        cursor = tx.execute(
            "INSERT INTO batchyard_dead_tasks "
            "(id, kind, key, payload, attempts, max_attempts, last_error, created_at, died_at) "
            "SELECT id, kind, key, payload, attempts, max_attempts, :error, created_at, {now} "
            "FROM batchyard_tasks WHERE id = :id AND token = :token",
            params,
        )
        self._fenced(cursor, task)
        tx.execute("DELETE FROM batchyard_tasks WHERE id = :id", params)
        tx.after_commit.append(metrics.TASK_DEAD_LETTERS.labels(task.kind).inc)

    def redrive(self, tx: Tx, *, task_id: int | None = None, key: str | None = None) -> int:
        """Queue a dead task again (by id or key) with a fresh attempt count; return its id."""
        where = "id = :task_id" if task_id is not None else "key = :key"
        params = {"task_id": task_id, "key": key}
        row = tx.one(f"SELECT id FROM batchyard_dead_tasks WHERE {where}", params)
        if row is None:
            raise NotFound(f"no dead task with {'id' if task_id is not None else 'key'} "
                           f"{task_id if task_id is not None else key!r}")
        tx.execute(
            "INSERT INTO batchyard_tasks (id, kind, key, payload, state, due_at, attempts, "
            "max_attempts, last_error, created_at, updated_at) "
            "SELECT id, kind, key, payload, 'queued', {now}, 0, max_attempts, last_error, "
            "created_at, {now} FROM batchyard_dead_tasks WHERE id = :id",
            {"id": row["id"]},
        )
        tx.execute("DELETE FROM batchyard_dead_tasks WHERE id = :id", {"id": row["id"]})
        self.notify_work(tx)
        return int(row["id"])

    def dead_tasks(self, kind: str | None = None, limit: int = 100) -> list[Row]:
        with self.transaction(write=False) as tx:
            rows: list[Row] = tx.all(
                "SELECT id, kind, key, payload, attempts, last_error, created_at, died_at "
                "FROM batchyard_dead_tasks WHERE (CAST(:kind AS TEXT) IS NULL OR kind = :kind) "
                "ORDER BY id LIMIT :limit",
                {"kind": kind, "limit": limit},
            )
        return rows

    def next_due(self, now: float | None = None) -> float | None:
        """Seconds until the next task falls due (0 when one is due now), None when idle."""
        with self.transaction(now, write=False) as tx:
            row = tx.one("SELECT MIN(due_at) - {now} AS wait FROM batchyard_tasks")
        return None if row["wait"] is None else max(0.0, float(row["wait"]))

    @staticmethod
    def _fenced(cursor: Cursor, task: Task) -> None:
        if cursor.rowcount != 1:
            raise LeaseLost(
                f"task {task.id} ({task.kind}) is no longer held with token {task.token}",
                task_id=task.id,
            )


def _out_of_range(exc: OverflowError) -> InvalidInput:
    # SQLite's driver refuses integers past 64 bits: the caller's number, not a store failure
    return InvalidInput(f"a number is out of the store's 64-bit integer range ({exc})")


def _task(row: Row) -> Task:
    return Task(
        id=int(row["id"]),
        kind=row["kind"],
        key=row["key"],
        payload=orjson.loads(row["payload"]),
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        token=int(row["token"]),
        last_error=row["last_error"],
    )


_FRAGMENT = re.compile(r"\{(\w+)\}")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script on statement ends (our scripts keep ';' out of literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
