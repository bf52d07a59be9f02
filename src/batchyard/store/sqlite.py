"""The embedded store: one SQLite file in WAL mode.

Writes run in ``BEGIN IMMEDIATE`` so a transaction takes the write lock up front and waits
for it (``busy_timeout``) instead of failing half-way with "database is locked". Durability
is ``synchronous=NORMAL`` by default - every commit survives a process crash; a power cut may
lose the last commits - and ``FULL`` with ``?synchronous=full`` in the URL.

Every driver error leaves this module as a `StoreError` of the kind its SQLite error code
says (full, read-only, corrupt, unavailable), naming the file, with the driver's error as
its cause.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from operator import itemgetter
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

from batchyard.errors import (
    ConfigError,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from batchyard.forks import forget_in_child
from batchyard.store.base import PARAM, Params, Prepared, Store, Tx
from batchyard.store.turns import WriterTurns

# How many times this process's line forked to make it: a thread's read connection made
# before a fork belongs to the parent (the store's locks and write connection are let go at
# the fork itself, see `SQLiteStore._forget_in_child`). Counted in the child by the fork
# itself, so that a statement checks a number, not the process id (a system call each time).
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)

_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}
_POLL_SECONDS = 0.01  # how often an idle worker looks at PRAGMA data_version


class SQLiteStore(Store):
    dialect = "sqlite"
    single_writer = True
    fragments: ClassVar[dict[str, str]] = {
        "now": ":now",
        "skip_locked": "",
        "for_update": "",
        # a write transaction already holds the one write lock
        "lock_name": "SELECT :lock",
        "for_share": "",
        "for_key_share": "",
        "least": "MIN",
        # where a text first holds another, from 1 (0: nowhere): strpos(text, sought)
        "strpos": "instr",
        # one writer at a time: id order is commit order, so every position is 0 and all
        # committed events are safe to read
        "event_position": "0",
        "safe_position": "1",
        "json_text_values": "(SELECT value FROM json_each(:values))",
        # the strings of a JSON array with their 0-based index, as rows (idx, value)
        "json_text_rows": "(SELECT key AS idx, value FROM json_each(:values))",
        # the same with each string's UTF-8 size, as rows (idx, value, octets)
        "json_text_rows_sized": "(SELECT key AS idx, value, length(CAST(value AS BLOB)) "
        "AS octets FROM json_each(:values))",
        "json_int_values": "(SELECT value FROM json_each(:values))",
        # a JSON array of [a, b] pairs (or [a, b, c] triples) of strings or nulls, as rows
        # (a, b, c); c is null where a pair has none
        "json_pairs": "(SELECT json_extract(value, '$[0]') AS a, json_extract(value, '$[1]') "
        "AS b, json_extract(value, '$[2]') AS c FROM json_each(:pairs))",
        # SQLite's index use for a row-value range stops at its first column, which is
        # always 0 here: compare ids alone, or every page rescans the stream from its start
        "after_cursor": "id > :id",
        "stream_order": "id",
        "data_keys": "SELECT DISTINCT j.key AS key FROM batchyard_things t, json_each(t.data) j "
        "WHERE t.ns = :ns",
    }

    def __init__(self, url: str, *, busy_timeout: float = 60.0, create: bool = True) -> None:
        """``create=False`` opens only a database file that exists: a mistyped path is a
        `StoreError` ("no SQLite database at ...") instead of a new, empty file."""
        super().__init__(url)
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigError(f"SQLite URL names no file: {url!r} (use sqlite:///path/to.db)")
        options = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        synchronous = options.get("synchronous", "normal")
        if synchronous not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be normal or full, not {synchronous!r}")
        self.path = path
        self.synchronous = _SYNCHRONOUS[synchronous]
        self.busy_timeout = busy_timeout
        self.create = create
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        # SQLite has one writer at a time: this process's writers queue here, woken as
        # soon as the writer before them is done, instead of in SQLite's busy handler,
        # which sleeps and polls (1, 2, 5, 10 ... ms); other processes take turns there
        self._writer = threading.RLock()
        self._write_conn: sqlite3.Connection | None = None
        self._turns: WriterTurns | None = None  # made with the first write connection
        # One query's rows fetched at a time in this process. The driver lets go of the
        # interpreter lock around each row's step, and a thread waiting for it takes it:
        # with several threads reading pages (an iterator's slices, a worker's flushes),
        # every row of each became a hand-over of the lock between threads, switches by
        # the hundred a page and more CPU than the reads themselves. Waiting here, a reader
        # does not compete for the interpreter lock until its turn.
        self.fetching = threading.Lock()
        forget_in_child(self._forget_in_child)

    def _forget_in_child(self) -> None:
        # a forked child: a thread that held a lock at the fork is not here, and the write
        # connection must not cross fork() - the child opens its own
        self._writer, self.fetching = threading.RLock(), threading.Lock()
        self._write_conn = None

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, for reads."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # a connection must not cross fork(): the child opens its own
        if conn is None or self._local.forks != _forks:
            conn = self._open()
            self._local.conn = conn
            self._local.forks = _forks
        return conn

    def _write_connection(self) -> sqlite3.Connection:
        """The process's one connection for writes (used under `_writer`): its page cache
        stays warm, where a connection per thread would find its cache stale after every
        other thread's commit and read the pages again."""
        if self._write_conn is None:
            conn = self._open()
            try:
                # it waits for the writer in `_turns`, where other processes see it wait
                # (set here, not at connect: `_open`'s PRAGMAs may have to wait in SQLite)
                conn.execute("PRAGMA busy_timeout=0")
            except sqlite3.Error as exc:
                conn.close()
                raise self._translate(exc) from exc
            if self._turns is None:
                # kept across fork(): a child holds none of its parent's record locks
                self._turns = WriterTurns(self.path)
            self._write_conn = conn
        return self._write_conn

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        with self._opened_lock:
            self._opened.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        """A new connection in autocommit mode; the file is created only if `create`."""
        # mode=rw fails on a missing file where a plain connect would make an empty one
        uri = f"file:{quote(self.path)}?mode={'rwc' if self.create else 'rw'}"
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        return translate(exc, self.path, create=self.create)

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """Roll back what is still open, never hiding the error that led here."""
        if not conn.in_transaction:
            return  # SQLite rolled back by itself (it does on a full disk or an I/O error)
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # the caller must see the error that failed the transaction, not this one; a
            # connection stuck in a transaction is not used again
            self._forget(conn)

    def _forget(self, conn: sqlite3.Connection) -> None:
        with self._opened_lock:
            if conn in self._opened:
                self._opened.remove(conn)
        if self._write_conn is conn:
            self._write_conn = None
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        conn.close()

    @contextmanager
    def transaction(
        self, now: float | None = None, *, write: bool = True, pipeline: bool = False
    ) -> Iterator[Tx]:
        with self._write_turn() if write else nullcontext():
            tx = self._transaction(write, now)
            with self._finished(tx.connection):
                yield tx
        for callback in tx.after_commit:
            callback()

    def _alone(self, sql: str, params: Params, now: float | None, returning: bool) -> Any:
        # The write connection is in autocommit: a write statement takes the write lock at
        # its start (waiting for it as BEGIN IMMEDIATE does) and commits once stepped to its
        # end - by fetchall() when it returns rows, within execute() when it does not.
        self._take_write_turn()
        try:
            conn = self._write_conn or self._write_connection()
            if conn.in_transaction:
                # this thread holds a transaction open (the turn is reentrant): the statement
                # would join it and commit only with it, as `transaction()` would refuse to
                raise StoreError(
                    f"a statement of its own cannot run on {self.path} inside "
                    f"a transaction this thread holds open"
                )
            cursor = self._take_writer(partial(conn.execute, *self.bind(sql, params, now)))
            if not returning:
                return cursor.rowcount
            return cursor.fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        finally:
            self._writer.release()

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        self._take_write_turn()
        try:
            yield
        finally:
            self._writer.release()

    def _take_write_turn(self) -> None:
        if not self._writer.acquire(timeout=self.busy_timeout):
            raise StoreUnavailable(
                f"cannot begin a transaction on {self.path}: another "
                f"thread kept the write lock for {self.busy_timeout:g} s"
            )

    def _take_writer(self, attempt: Callable[[], sqlite3.Cursor]) -> sqlite3.Cursor:
        assert self._turns is not None  # made with the write connection
        return self._turns.take(attempt, self.busy_timeout)

    def _transaction(self, write: bool, now: float | None) -> Tx:
        try:
            if write:
                conn = self._write_connection()
                self._take_writer(partial(conn.execute, "BEGIN IMMEDIATE"))
            else:
                conn = self._connection()
                conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        return Tx(self, conn, now)

    @contextmanager
    def _finished(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Commit the transaction open on `conn` when the block succeeds, roll it back when
        it fails; a driver error from the block or the commit leaves as a `StoreError`."""
        try:
            yield
            conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            raise

    @staticmethod
    def keyset(order: str, tie: str, op: str, order_param: str, tie_param: str) -> str:
        # SQLite's index use for a row-value range stops at its first column, which would
        # rescan every shared order value; two ranges joined by OR are each an index range
        strict = {">": ">", ">=": ">", "<": "<", "<=": "<"}[op]
        return (
            f"({order} {strict} :{order_param} OR ({order} = :{order_param} "
            f"AND {tie} {op} :{tie_param}))"
        )

    @contextmanager
    def snapshot(self) -> Iterator[Tx]:
        # WAL: a read transaction sees one committed state from its first read to its end;
        # a connection of its own, so that the snapshot may be read from any thread
        conn = self._connect()
        try:
            try:
                conn.execute("BEGIN")
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc
            with self._finished(conn):
                yield Tx(self, conn, None)
        finally:
            conn.close()

    def now_value(self, now: float | None) -> float:
        return time.time() if now is None else now

    @staticmethod
    def _convert(sql: str) -> Prepared:
        # Parameters bound by number, from a tuple: by name, the driver looks each one up
        # in the dict as a new string made from SQLite's name, every time - 3% of a
        # single-item add's instructions (86k, was 89k), and more for a wide statement
        names: dict[str, str] = {}
        text = PARAM.sub(lambda m: names.setdefault(m[1], f"?{len(names) + 1}"), sql)
        return Prepared(text, _in_order(tuple(names)))

    def _table_exists_sql(self) -> str:
        return "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"

    def watch_for_work(self) -> None:
        # remember what we have seen, so a commit landing between this claim and the next
        # wait still wakes that wait
        self._local.seen_version = self._data_version()

    def _data_version(self) -> int:
        try:
            return int(self._connection().execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    def wait_for_work(self, timeout: float) -> None:
        # Another connection's commit bumps data_version on ours: a read of a shared-memory
        # counter, so polling it often costs next to nothing.
        start = getattr(self._local, "seen_version", None)
        if start is None:
            start = self._data_version()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._wakeup.wait(min(_POLL_SECONDS, remaining)):
                self._wakeup.clear()
                return
            if self._data_version() != start:
                return

    def close(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()
        self._write_conn = None
        if self._turns is not None:
            self._turns.close()
            self._turns = None


def _in_order(names: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """What gives the values of `names` in order, as a tuple, from a dict of parameters."""
    if len(names) > 1:
        return itemgetter(*names)
    if names:
        (name,) = names
        return lambda params: (params[name],)
    return lambda params: ()


def translate(exc: sqlite3.Error, path: str, *, create: bool = True) -> StoreError:
    """The batchyard error for a driver error on the database file at `path`, by SQLite's
    primary result code (the low byte of the extended one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary == sqlite3.SQLITE_FULL:
        # the disk or the file's page limit: space may be freed, and SQLite has rolled
        # the whole transaction back, so retrying it later is safe
        return StoreFull(f"the SQLite database {path} is out of space ({exc})")
    if primary == sqlite3.SQLITE_READONLY:
        return StoreReadOnly(f"the SQLite database {path} is read-only ({exc})")
    if primary in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        # waiting will not mend it: an operator must restore the file
        return StoreCorrupt(f"{path} is not a SQLite database or is damaged ({exc})")
    if primary == sqlite3.SQLITE_CANTOPEN:
        return _cannot_open(exc, path, create)
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL):
        # another connection kept the lock past busy_timeout: it lets go in the end
        return StoreUnavailable(f"the SQLite database {path} is locked ({exc})")
    if primary == sqlite3.SQLITE_IOERR:
        # the disk or the file system below failed to read or write: a removed disk or a
        # network file system may come back, and SQLite undid the transaction
        return StoreUnavailable(f"the SQLite database {path} cannot be read or written ({exc})")
    # the statement itself (a constraint, a bug in SQL): retrying it would fail the same way
    return StoreError(f"the SQLite database {path} refused a statement ({exc})")


def _cannot_open(exc: sqlite3.Error, path: str, create: bool) -> StoreError:
    # SQLite says only "unable to open database file": the file system says why
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return StoreError(f"no folder {folder} for the SQLite database {path}")
    if not create and not os.path.exists(path):
        return StoreError(f"no SQLite database at {path}")
    # a WAL database needs to write its -shm file beside it even to be read; access()
    # tells a read-only file system even to root, whom file modes do not stop
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return StoreReadOnly(
            f"the SQLite database {path} is on a read-only file system or not writable ({exc})"
        )
    # out of file descriptors, say: it may pass
    return StoreUnavailable(f"the SQLite database {path} cannot be opened ({exc})")
