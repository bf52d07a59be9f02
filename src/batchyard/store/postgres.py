"""The shared store: PostgreSQL through psycopg 3 and its connection pool.

Claims use ``FOR UPDATE SKIP LOCKED`` so many workers on many machines never wait on each
other's rows; times come from the database's clock (``statement_timestamp()``) unless a manual
clock is injected; a commit that makes work due sends ``NOTIFY batchyard_tasks`` and idle
workers ``LISTEN`` for it, polling as a fallback.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from batchyard.errors import (
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from batchyard.logs import Redactor
from batchyard.store.base import PARAM, Params, Prepared, Store, Tx

_CHANNEL = "batchyard_tasks"
# How long an idle worker woken by a NOTIFY of its own process waits for that process's own
# wake-up, which comes once the committing thread has done what follows its commit (it tells
# the workers what it queued, see `batchyard.tasks.directed`); the NOTIFY may come first.
_OWN_COMMIT_SECONDS = 0.05
# How long a caller waits for a pooled connection: while the server answers, long enough to
# ride out a busy moment (longer, and the service is overloaded: 503 is the honest answer);
# once a connection was found dead, briefly - the caller gets StoreUnavailable (HTTP 503)
# at once instead of hanging through the outage.
_POOL_WAIT_SECONDS = 3.0
_POOL_WAIT_IN_OUTAGE_SECONDS = 0.5
# The pool reconnects in the background with backoff (1 s, 2 s, 4 s ...) for this long, then
# starts over on the next demand: so the first connection after an outage of any length is
# tried within a few seconds of the server's return, not minutes.
_RECONNECT_SECONDS = 10.0
_CONNECT_TIMEOUT_SECONDS = 5  # a server that does not answer at all (a dead host)

# Errors that say nothing about the statement, only that the server cannot serve it now: an
# administrator shutdown, a server starting up or failing over, a lost or refused connection
# (all OperationalError), a conflict another transaction won, a lock or statement timeout.
_TRANSIENT = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
)
_STREAMS = itertools.count()
_REQUIRED = "batchyard-required-"  # marks a failed `Tx.require` (see `required_sql`)


def _xid(value: str) -> str:
    return f"CAST(CAST({value} AS TEXT) AS BIGINT)"


# The safe mark for reading events: below it, every transaction has ended and is visible to
# the reading statement's snapshot, so no event can still commit behind a cursor. It is the
# snapshot's oldest running transaction - not counting transactions that run in another
# database of the cluster (they cannot write our events, and a long one, or a CREATE
# DATABASE, would otherwise hold aggregation back). The other databases' transactions are
# known by their 32-bit ids in pg_stat_activity / pg_prepared_xacts; an id that cannot be
# placed there (it ended meanwhile, or the view is hidden from this role) counts as ours,
# which can only make the mark lower: late, never wrong.
_OTHER_DATABASES_XIDS = (
    f"SELECT {_xid('backend_xid')} FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
    "AND datname IS DISTINCT FROM current_database() "
    f"UNION ALL SELECT {_xid('transaction')} FROM pg_prepared_xacts "
    "WHERE database <> current_database()"
)
_SAFE_POSITION = (
    # our own transaction, if it has an id, bounds the mark too (as a snapshot's xmin does)
    f"(SELECT LEAST(COALESCE(MIN({_xid('x')}), "
    f"{_xid('pg_snapshot_xmax(pg_current_snapshot())')}), "
    f"{_xid('pg_current_xact_id_if_assigned()')}) "
    "FROM pg_snapshot_xip(pg_current_snapshot()) AS x "
    f"WHERE mod({_xid('x')}, 4294967296) NOT IN ({_OTHER_DATABASES_XIDS}))"
)


@contextmanager
def _pipelined_transaction(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """The block's statements on one pipeline, synced once at its end (and flushed wherever
    the block reads a result): a transaction that reads once costs two round trips.
    PostgreSQL runs the statements between two syncs of a pipeline as one transaction,
    committed at the sync or rolled back there if one of them failed - so no BEGIN or COMMIT
    is sent, two statements fewer for the driver to build and the server to run (a quarter
    of the client's CPU for a transaction of three statements). psycopg's own
    `transaction()` inside a pipeline syncs at its entry and twice at its exit, to track a
    nesting we do not use: three more round trips per transaction."""
    try:
        with conn.pipeline():
            try:
                yield conn
            except BaseException:
                # the sync on leaving the pipeline would commit what the block sent before
                # it raised: roll that back first (on a pipeline a failed statement aborted,
                # the server skips this, and the sync rolls back anyway)
                with suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
        # leaving the pipeline synced it: the first error of the block or the commit is raised
    except BaseException:
        # psycopg's cache of prepared statements cannot be trusted after this. The server
        # skips the rest of a pipeline after a failed statement - the Parse of a statement
        # psycopg prepares there too - and psycopg still counts that one as prepared; it
        # forgets what it prepared on a ROLLBACK of a transaction it saw begin, which an
        # implicit transaction is not, and on a DEALLOCATE ALL only while that command is
        # new to it (the server then drops every statement, and psycopg kept their names:
        # each later run of any of them on this connection failed). A connection whose
        # pipelined transaction failed is closed; the pool opens another.
        conn.close()
        raise


class PostgresStore(Store):
    dialect = "postgres"
    fragments: ClassVar[dict[str, str]] = {
        "now": "COALESCE(CAST(:now AS double precision), "
        "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS double precision))",
        "skip_locked": "FOR UPDATE SKIP LOCKED",
        "for_update": "FOR UPDATE",
        # a lock on a name for the rest of the transaction
        "lock_name": "SELECT pg_advisory_xact_lock(hashtext(:lock))",
        "for_share": "FOR SHARE",
        "for_key_share": "FOR KEY SHARE",
        "least": "LEAST",
        # where a text first holds another, from 1 (0: nowhere): strpos(text, sought)
        "strpos": "strpos",
        # an event's position is its transaction's id, and readers stop below the oldest
        # transaction still running (see _SAFE_POSITION)
        "event_position": "CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)",
        "safe_position": _SAFE_POSITION,
        "json_text_values": "(SELECT jsonb_array_elements_text(CAST(:values AS jsonb)))",
        # json, not jsonb: the strings come back as sent, and nothing is built but the rows
        "json_text_rows": "(SELECT idx - 1 AS idx, value FROM json_array_elements_text("
        "CAST(:values AS json)) WITH ORDINALITY AS e(value, idx))",
        "json_text_rows_sized": "(SELECT idx - 1 AS idx, value, octet_length(value) AS octets "
        "FROM json_array_elements_text(CAST(:values AS json)) WITH ORDINALITY AS e(value, idx))",
        "json_int_values": "(SELECT CAST(jsonb_array_elements_text(CAST(:values AS jsonb)) "
        "AS BIGINT))",
        "json_pairs": "(SELECT value ->> 0 AS a, value ->> 1 AS b, value ->> 2 AS c "
        "FROM json_array_elements(CAST(:pairs AS json)))",
        "after_cursor": "(position, id) > (:position, :id)",
        "stream_order": "position, id",
        "data_keys": "SELECT DISTINCT json_object_keys(CAST(data AS json)) AS key "
        "FROM batchyard_things WHERE ns = :ns",
    }

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        super().__init__(url)
        self._pool_size = (min_size, max_size)
        self._pool = self._open_pool()
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_lock = threading.Lock()

    def _open_pool(self) -> ConnectionPool[Any]:
        self._pid = os.getpid()
        # the payload of this process's NOTIFYs, so that its own workers know them
        self._origin = secrets.token_hex(8)
        min_size, max_size = self._pool_size
        self._outage = False
        pool = ConnectionPool(
            self.url,
            min_size=min_size,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": _CONNECT_TIMEOUT_SECONDS,
            },
            open=False,
            name="batchyard",
            configure=_configure,
            check=self._check_connection,
            timeout=_POOL_WAIT_SECONDS,
            reconnect_timeout=_RECONNECT_SECONDS,
        )
        try:
            pool.open(wait=True, timeout=10)
        except Exception as exc:
            pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.name}: {_first_line(exc)}", store=self.name
            ) from exc
        return pool

    def _check_connection(self, conn: psycopg.Connection[Any]) -> None:
        """The pool's check of a connection it hands out, without a round trip: an idle
        pooled connection has nothing to read, so a readable socket holds the server's
        goodbye (an administrator shutdown, a restart) or its end. Such a connection is
        dropped for another, and callers meanwhile wait only briefly (see _POOL_WAIT_*).
        A check that sent a query would cost a round trip per transaction."""
        if not (conn.closed or conn.broken):
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
            if not readable:
                return
        self._outage = True
        conn.close()  # closed, the pool drops it and makes another (open, it would keep it)
        raise psycopg.OperationalError("the server closed the connection")

    @property
    def name(self) -> str:
        return Redactor()(self.url)  # the password masked, as in the logs

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; a driver error in the block comes out as a StoreError."""
        wait = _POOL_WAIT_IN_OUTAGE_SECONDS if self._outage else _POOL_WAIT_SECONDS
        try:
            with self._pool_here().connection(timeout=wait) as conn:
                yield conn
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        self._outage = False

    def _translate(self, exc: psycopg.Error) -> StoreError:
        """The driver's error in batchyard's vocabulary, naming the server."""
        kind: type[StoreError] = StoreError
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):  # a standby after failover
            kind = StoreReadOnly
        elif isinstance(exc, pg_errors.DiskFull):
            kind = StoreFull
        elif isinstance(exc, _TRANSIENT):
            kind = StoreUnavailable
            self._outage = isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
        return kind(f"PostgreSQL at {self.name}: {_first_line(exc)}", store=self.name)

    def _pool_here(self) -> ConnectionPool[Any]:
        if self._pid != os.getpid():
            # a forked child must not share the parent's sockets: it opens a pool of its
            # own and leaves the parent's connections alone
            self._inherited = (self._pool, self._listener)
            self._listener = None
            self._pool = self._open_pool()
        return self._pool

    def _alone(self, sql: str, params: Params, now: float | None, returning: bool) -> Any:
        # pooled connections are in autocommit: the statement is its own transaction, and
        # costs one round trip
        with self._connection() as conn:
            cursor = conn.execute(*self.bind(sql, params, now))
            return cursor.fetchall() if returning else cursor.rowcount

    @contextmanager
    def transaction(
        self, now: float | None = None, *, write: bool = True, pipeline: bool = False
    ) -> Iterator[Tx]:
        with self._connection() as conn:
            if pipeline:
                tx = Tx(self, conn, now, pipelined=True)
                try:
                    with _pipelined_transaction(conn):
                        yield tx
                except pg_errors.InvalidTextRepresentation as exc:
                    lost = _required_failed(tx, exc)
                    if lost is None:
                        raise
                    raise lost from None
            elif not write:
                # A read needs no transaction: under READ COMMITTED each statement sees a
                # snapshot of its own inside one too, and BEGIN and COMMIT would be a round
                # trip each - a status read across a network 3 round trips instead of 1.
                # (`snapshot()` is the one view across statements, and the place to stream.)
                tx = Tx(self, conn, now)
                yield tx
            else:
                with conn.transaction():
                    tx = Tx(self, conn, now)
                    yield tx
        for callback in tx.after_commit:
            callback()

    @contextmanager
    def snapshot(self) -> Iterator[Tx]:
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield Tx(self, conn, None)

    @staticmethod
    def _streaming_cursor(connection: Any) -> Any:
        return connection.cursor(name=f"batchyard_stream_{next(_STREAMS)}", row_factory=tuple_row)

    @staticmethod
    def _tuple_cursor(connection: Any) -> Any:
        return connection.cursor(row_factory=tuple_row)

    def now_value(self, now: float | None) -> float | None:
        return now  # None: the SQL falls back to the database's clock

    @staticmethod
    def _convert(sql: str) -> Prepared:
        # psycopg's placeholders are %(name)s: a % of the SQL itself (modulo) is doubled
        return Prepared(PARAM.sub(r"%(\1)s", sql.replace("%", "%%")), None)

    def required_sql(self, sql: str, number: int) -> str:
        # No statement of plain SQL raises an error of our choosing, but a cast does fail on
        # the text it is given: one that names the statement, built from the count of rows
        # written (so the planner cannot fold it into a failure before the write has run)
        return (
            f"WITH required AS ({sql}) SELECT CASE WHEN COUNT(*) = 0 THEN "
            f"CAST('{_REQUIRED}{number}:' || CAST(COUNT(*) AS TEXT) AS INTEGER) END "
            "FROM required"
        )

    def _notify_sql(self) -> str:
        return f"SELECT pg_notify('{_CHANNEL}', '{self._origin}')"

    def _lock_for_migration(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('batchyard_schema'))")

    def _run_script(self, tx: Tx, script: str) -> None:
        tx.connection.execute(script)

    def _table_exists_sql(self) -> str:
        return "SELECT 1 FROM pg_tables WHERE tablename = :name AND schemaname = current_schema()"

    def wait_for_work(self, timeout: float) -> None:
        if self._wakeup.wait(0):
            self._wakeup.clear()
            self._drop_notices()
            return
        with self._listener_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECONDS
                    )
                    self._listener.execute(f"LISTEN {_CHANNEL}")
                    # the NOTIFY of a commit of this process made before the LISTEN is not
                    # heard, but its wake-up is set
                    if self._wakeup.is_set():
                        timeout = 0
                notices = list(self._listener.notifies(timeout=0))
                if not notices and not self._wakeup.is_set():
                    # other processes' NOTIFYs, and this process's wake-up at once
                    ready = [self._listener.fileno(), self._wakeup.fileno()]
                    select.select(ready, [], [], timeout)
                    notices = list(self._listener.notifies(timeout=0))
                if any(notice.payload == self._origin for notice in notices):
                    self._wakeup.wait(_OWN_COMMIT_SECONDS)
            except (psycopg.Error, OSError):
                # the listener died: fall back to polling, reconnect next time
                if self._listener is not None:
                    self._listener.close()
                self._listener = None
                self._wakeup.wait(timeout)
        self._wakeup.clear()

    def _drop_notices(self) -> None:
        """Forget the NOTIFYs that arrived meanwhile: the caller looks for work now, and
        sees what they tell of (each comes after its commit). Left there, each would end
        the next wait at once - for nothing, or (one of this process) to wait for a wake-up
        of this process that has already come."""
        with self._listener_lock:
            if self._listener is not None and not self._listener.closed:
                try:
                    for _ in self._listener.notifies(timeout=0):
                        pass
                except psycopg.Error:
                    self._listener.close()
                    self._listener = None

    def reserve_connections(self, count: int) -> None:
        # a worker's threads each hold a connection for their transaction: without room of
        # their own they would wait for the connections of the application's threads
        min_size, max_size = self._pool_size
        self._pool_size = (min_size, max_size + count)
        self._pool_here().resize(min_size, max_size + count)

    def close(self) -> None:
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            self._wakeup.close()
        self._pool.close()


def _required_failed(tx: Tx, exc: psycopg.Error) -> Exception | None:
    """The error of the `Tx.require` whose statement failed the pipeline (see
    `PostgresStore.required_sql`), or None when `exc` is not one of ours."""
    match = re.search(rf"{_REQUIRED}(\d+):", str(exc))
    if match is None or int(match[1]) >= len(tx.required):
        return None
    return tx.required[int(match[1])]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Each new pooled connection: no JIT compilation. Every statement here is short and
    reads through an index, but before the planner has statistics of a table that just grew
    (a million items drained, before autovacuum's next ANALYZE) it estimates such a statement
    costly enough to compile it - a read of a few rows took 1.5-2.5 s, nearly all compiling.
    A session setting, sent once per connection (not a startup option, which a pooler such
    as PgBouncer may refuse)."""
    conn.execute("SET jit = off")
