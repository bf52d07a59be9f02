"""The store contract: transactions over one SQL text for both dialects, and migrations.

SQL is written once with ``:name`` parameters and fragments that differ by dialect:
``{now}`` (the store's clock, in epoch seconds), ``{skip_locked}``, ``{for_update}`` and
``{for_share}`` and ``{for_key_share}`` (row locks others may share - the second one that only
keeps the row from being deleted; nothing on SQLite, whose writer is alone). Each
backend turns the text into its own form once and caches it. Above ``store/`` nothing knows
which backend it runs on.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, NamedTuple, Protocol

from batchyard.errors import InvalidInput
from batchyard.store._dict_rows import dict_rows
from batchyard.store.wakeup import Wakeup

Params = Mapping[str, Any]
Row = Mapping[str, Any]
# A ``:name`` parameter (not a PostgreSQL ``::`` cast, nor a name's middle)
PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Prepared(NamedTuple):
    """A statement in a backend's form: its text, and what orders its parameters as the
    driver binds them (None: by name, the parameters as they are)."""

    text: str
    order: Callable[[dict[str, Any]], Any] | None


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


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

    def __init__(
        self, store: Store, connection: Any, now: float | None, *, pipelined: bool = False
    ) -> None:
        self.store = store
        self.connection = connection
        self.now = now
        self.pipelined = pipelined
        self.after_commit: list[Callable[[], None]] = []
        # what each `require` raises when its statement wrote nothing, by the statement's
        # number (a pipelined transaction learns it only when the pipeline syncs)
        self.required: list[Exception] = []

    def execute(self, sql: str, params: Params | None = None) -> Cursor:
        text, bound = self.store.bind(sql, params, self.now)
        cursor: Cursor = self.connection.cursor()
        try:
            cursor.execute(text, bound)  # type: ignore[attr-defined]
        except OverflowError as exc:
            raise _out_of_range(exc) from None
        return cursor

    def executemany(self, sql: str, rows: Sequence[dict[str, Any]]) -> int:
        """Run `sql` once per row; return the rows it changed in all (not known in a
        pipelined transaction). The rows get their ``now`` set in place."""
        now = self.store.now_value(self.now)
        for row in rows:
            row["now"] = now
        text, order = self.store.prepare(sql)
        cursor = self.connection.cursor()
        try:
            cursor.executemany(text, rows if order is None else map(order, rows))
        except OverflowError as exc:
            raise _out_of_range(exc) from None
        return int(cursor.rowcount)

    def one(self, sql: str, params: Params | None = None) -> Any:
        return self.execute(sql, params).fetchone()

    def later(self, sql: str, params: Params | None = None) -> Rows:
        """Run a query whose rows are read once the transaction has ended (`Rows.all`): in a
        pipelined transaction, reading them inside it would wait for them - a round trip of
        its own - where after it they came with the commit."""
        if self.pipelined:
            return Rows(self.execute(sql, params))
        return Rows(self.all(sql, params))

    def require(self, sql: str, params: Params, lost: Exception) -> None:
        """Run a write statement that must change a row (a fenced write: ``... RETURNING``
        something), or a locking read that must find one (``SELECT ... {for_update}``), and
        fail the whole transaction with `lost` when it changed or found none - at
        once, or in a pipelined transaction when the pipeline syncs: the statement is then
        wrapped by the store so that it fails by itself, and the transaction rolls back."""
        if self.pipelined:
            self.required.append(lost)
            self.execute(self.store.required_sql(sql, len(self.required) - 1), params)
        elif not self.execute(sql, params).fetchall():  # stepped to its end: done with
            raise lost

    def stream(self, sql: str, params: Params | None = None, size: int = 1000) -> Iterator[Any]:
        """Yield the rows of a query as plain tuples in column order, a few at a time, never
        holding the whole result (on PostgreSQL through a server-side cursor)."""
        text, bound = self.store.bind(sql, params, self.now)
        cursor = self.store._streaming_cursor(self.connection)
        try:
            cursor.execute(text, bound)
            while rows := cursor.fetchmany(size):
                yield from rows
        finally:
            cursor.close()

    def all(self, sql: str, params: Params | None = None) -> list[Any]:
        with self.store.fetching:
            return self.execute(sql, params).fetchall()

    def dicts(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """The rows of a query as plain dicts by column name, made from the driver's
        tuples by one comprehension (see `_dict_rows`) - for rows handed to user code."""
        rows: list[dict[str, Any]] = self.later_dicts(sql, params).all()
        return rows

    def later_dicts(self, sql: str, params: Params | None = None) -> Rows:
        """`dicts`, read once the transaction has ended, as `later` reads its rows."""
        text, bound = self.store.bind(sql, params, self.now)
        cursor = self.store._tuple_cursor(self.connection)
        with nullcontext() if self.pipelined else self.store.fetching:
            try:
                cursor.execute(text, bound)
            except OverflowError as exc:
                raise _out_of_range(exc) from None
            rows = _AsDicts(cursor)
            return Rows(rows if self.pipelined else rows.fetchall())

    def clock(self) -> float:
        """The store's current time, in epoch seconds."""
        return float(self.one("SELECT {now} AS now")["now"])

    def clock_later(self) -> Callable[[], float]:
        """`clock`, read as `later` reads: with the rest of a pipelined read, in its one round
        trip on PostgreSQL. Call what it returns once the transaction has ended."""
        rows = self.later("SELECT {now} AS now")
        return lambda: float(rows.all()[0]["now"])


class _AsDicts:
    """A cursor of tuples whose rows are read as dicts by column name (see `_dict_rows`)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def fetchall(self) -> list[dict[str, Any]]:
        rows = self._cursor.fetchall()  # first: in a pipeline the description comes with them
        return dict_rows(tuple(column[0] for column in self._cursor.description))(rows)


class Rows:
    """A query's rows, read when asked (see `Tx.later`)."""

    def __init__(self, source: Cursor | _AsDicts | list[Any]) -> None:
        self._source = source

    def all(self) -> list[Any]:
        if isinstance(self._source, list):
            return self._source
        return self._source.fetchall()


class Store:
    """Base of both backends: transactions, migrations and the durable task engine."""

    dialect: ClassVar[str]
    # Every write transaction queues for the store's one writer (SQLite): an idle poller
    # then looks without the write lock before it claims. Where writers do not queue
    # (PostgreSQL, claims with SKIP LOCKED), the claim itself is the cheapest look.
    single_writer: ClassVar[bool] = False
    fragments: ClassVar[dict[str, str]]
    _prepared: ClassVar[dict[str, Prepared]] = {}
    # Held while a query's rows are stepped through and fetched into a list (`Tx.all`,
    # `Tx.later`, `Tx.later_dicts`): nothing here; SQLite's, see `SQLiteStore.fetching`.
    fetching: AbstractContextManager[Any] = nullcontext()

    def __init__(self, url: str) -> None:
        self.url = url
        self._wakeup = Wakeup()

    # -- what each backend provides -------------------------------------------------------

    def transaction(
        self, now: float | None = None, *, write: bool = True, pipeline: bool = False
    ) -> Any:
        """Context manager yielding a `Tx` that commits on success, rolls back on error.
        ``write=False`` is for reads and takes no write lock: one snapshot on SQLite, on
        PostgreSQL each statement on its own (as READ COMMITTED would see it in a transaction,
        without the round trips of BEGIN and COMMIT); `snapshot` is one view across statements
        on both, and where `Tx.stream` reads. ``pipeline=True`` lets
        PostgreSQL send statements without waiting for each result (read a cursor's rows to
        wait; `Tx.later` reads them after the commit instead); `rowcount` is not known
        until then, so fenced writes use `Tx.require`."""
        raise NotImplementedError

    # One write statement as a transaction of its own: no BEGIN or COMMIT to send. Only for
    # a statement that is a whole change by itself.

    def one(self, sql: str, params: Params, now: float | None = None) -> Any:
        """Run one write statement as a transaction of its own; return its first row."""
        rows = self._alone(sql, params, now, returning=True)
        return rows[0] if rows else None

    def all(self, sql: str, params: Params, now: float | None = None) -> list[Any]:
        """Run one write statement as a transaction of its own; return all its rows."""
        rows: list[Any] = self._alone(sql, params, now, returning=True)
        return rows

    def execute(self, sql: str, params: Params, now: float | None = None) -> int:
        """Run one write statement as a transaction of its own; return the rows it changed."""
        return int(self._alone(sql, params, now, returning=False))

    def _alone(self, sql: str, params: Params, now: float | None, returning: bool) -> Any:
        """The backend's statement alone: all its rows (`returning`), or its row count."""
        raise NotImplementedError

    def required_sql(self, sql: str, number: int) -> str:
        """`sql`, a write with ``RETURNING``, made to fail when it returns no row, in a way
        that `transaction()` knows as the `number`th `Tx.require` of a pipelined
        transaction (only backends that pipeline need it)."""
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
    def _convert(sql: str) -> Prepared:
        """Turn ``:name`` parameters into the driver's style."""
        raise NotImplementedError

    @staticmethod
    def _streaming_cursor(connection: Any) -> Any:
        cursor = connection.cursor()
        cursor.row_factory = None  # tuples: the fastest rows the driver makes
        return cursor

    @staticmethod
    def _tuple_cursor(connection: Any) -> Any:
        """A cursor whose rows are tuples (all read at once, unlike a streaming one)."""
        cursor = connection.cursor()
        cursor.row_factory = None
        return cursor

    def now_value(self, now: float | None) -> float | None:  # pragma: no cover
        """The value bound to ``:now``: the manual clock's time, or the backend's own."""
        raise NotImplementedError

    def wait_for_work(self, timeout: float) -> None:  # pragma: no cover - abstract
        """Block until another writer may have made work due, or `timeout` passes."""
        raise NotImplementedError

    def watch_for_work(self) -> None:
        """Remember what this thread has seen, so that a commit landing between now and its
        next `wait_for_work` still wakes that wait (a claim calls it before it looks)."""

    def reserve_connections(self, count: int) -> None:
        """Make room for `count` more threads that use the store at once (a worker's; a
        negative count gives the room back), where the store keeps a bounded pool of
        connections; nothing where it does not."""

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _notify_sql(self) -> str | None:
        """SQL that wakes other processes' workers once the transaction commits."""
        return None

    # -- shared machinery -------------------------------------------------------------------

    def prepare(self, sql: str) -> Prepared:
        """`sql` in this backend's form: fragments filled in, parameters converted (once per
        text: the same few statements run millions of times)."""
        prepared = self._prepared.get(sql)
        if prepared is None:
            text = _FRAGMENT.sub(lambda m: self.fragments.get(m[1], m[0]), sql)
            prepared = self._prepared[sql] = self._convert(text)
        return prepared

    def bind(self, sql: str, params: Params | None, now: float | None) -> tuple[str, Any]:
        """`sql` in this backend's form and `params`, with ``now`` (the clock to bind, see
        `now_value`), as its driver takes them."""
        text, order = self._prepared.get(sql) or self.prepare(sql)
        now_value = self.now_value(now)
        bound = {**params, "now": now_value} if params else {"now": now_value}
        return text, bound if order is None else order(bound)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._prepared = {}  # each backend its own

    def notify_work(self, tx: Tx, when: str | None = None, params: Params | None = None) -> None:
        """Wake idle workers (in this process at once, elsewhere on commit) - only if the SQL
        condition `when` holds at this point of the transaction, where workers of other
        processes are told by a statement (read after the commit: no round trip more)."""
        notify = self._notify_sql()
        if when is None:
            if notify:
                tx.execute(notify)
            tx.after_commit.append(self._wakeup.set)
            return
        # where no statement tells other processes, the condition is read all the same: a
        # worker of this process is woken only when it holds
        woke = tx.later(f"{notify or 'SELECT 1'} AS woke WHERE {when}", params)

        def wake_here() -> None:
            if woke.all():
                self._wakeup.set()

        tx.after_commit.append(wake_here)

    def secret(self, name: str) -> bytes:
        """A random 32-byte secret, made on first use and the same for every process that
        uses this store."""
        self.execute(
            "INSERT INTO batchyard_secrets (name, value) VALUES (:name, :value) "
            "ON CONFLICT (name) DO NOTHING",
            {"name": name, "value": secrets.token_hex(32)},
        )
        with self.transaction(write=False) as tx:
            row = tx.one("SELECT value FROM batchyard_secrets WHERE name = :name", {"name": name})
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
        (behind busy producers, a new worker could wait there for its whole start-up).
        Up to date means every version applied, not the newest: features land out of
        order, and a migration numbered below one a store already has must still run."""
        latest = self.latest_version()
        if not self._unapplied():
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

    def _unapplied(self) -> set[int]:
        """The versions of the migrations this store has not applied (read only)."""
        versions = {m.version for m in self.migrations()}
        with self.transaction(write=False) as tx:
            if not tx.one(self._table_exists_sql(), {"name": "batchyard_schema"}):
                return versions
            applied = tx.all("SELECT version FROM batchyard_schema")
        return versions - {row["version"] for row in applied}

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


def _out_of_range(exc: OverflowError) -> InvalidInput:
    # SQLite's driver refuses integers past 64 bits: the caller's number, not a store failure
    return InvalidInput(f"a number is out of the store's 64-bit integer range ({exc})")


_FRAGMENT = re.compile(r"\{(\w+)\}")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script on statement ends (our scripts keep ';' out of literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
