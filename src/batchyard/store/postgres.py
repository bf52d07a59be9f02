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
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from batchyard.errors import StoreError
from batchyard.store.base import Store, Tx

_CHANNEL = "batchyard_tasks"
_STREAMS = itertools.count()
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class PostgresStore(Store):
    dialect = "postgres"
    fragments: ClassVar[dict[str, str]] = {
        "now": "COALESCE(CAST(:now AS double precision), "
        "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS double precision))",
        "skip_locked": "FOR UPDATE SKIP LOCKED",
        "for_update": "FOR UPDATE",
        "least": "LEAST",
        # an event's position is its transaction's id; transactions below the snapshot's
        # xmin have all ended, so nothing can still commit below that mark
        "event_position": "CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)",
        "safe_position": "CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)",
        "json_text_values": "(SELECT jsonb_array_elements_text(CAST(:values AS jsonb)))",
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
        min_size, max_size = self._pool_size
        pool = ConnectionPool(
            self.url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
            name="batchyard",
        )
        try:
            pool.open(wait=True, timeout=10)
        except Exception as exc:
            pool.close()
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        return pool

    @contextmanager
    def transaction(self, now: float | None = None, *, write: bool = True,
                    pipeline: bool = False) -> Iterator[Tx]:
        if self._pid != os.getpid():
            # a forked child must not share the parent's sockets: it opens a pool of its
            # own and leaves the parent's connections alone
            self._inherited = (self._pool, self._listener)
            self._listener = None
            self._pool = self._open_pool()
        try:
            with self._pool.connection() as conn, \
                    (conn.pipeline() if pipeline else nullcontext()), conn.transaction():
                tx = Tx(self, conn, now)
                yield tx
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc
        for callback in tx.after_commit:
            callback()

    @contextmanager
    def snapshot(self) -> Iterator[Tx]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield Tx(self, conn, None)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    @staticmethod
    def _streaming_cursor(connection: Any) -> Any:
        return connection.cursor(name=f"batchyard_stream_{next(_STREAMS)}",
                                 row_factory=tuple_row)

    def now_value(self, now: float | None) -> float | None:
        return now  # None: the SQL falls back to the database's clock

    @staticmethod
    def _convert(sql: str) -> str:
        return _PARAM.sub(r"%(\1)s", sql)

    def _notify_sql(self) -> str:
        return f"SELECT pg_notify('{_CHANNEL}', '')"

    def _lock_for_migration(self, tx: Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('batchyard_schema'))")

    def _run_script(self, tx: Tx, script: str) -> None:
        tx.connection.execute(script)

    def _table_exists_sql(self) -> str:
        return "SELECT 1 FROM pg_tables WHERE tablename = :name AND schemaname = current_schema()"

    def wait_for_work(self, timeout: float) -> None:
        if self._wakeup.wait(0):
            self._wakeup.clear()
            return
        with self._listener_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = psycopg.connect(self.url, autocommit=True)
                    self._listener.execute(f"LISTEN {_CHANNEL}")
                for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                    pass
            except psycopg.Error:
                # the listener died: fall back to polling, reconnect next time
                if self._listener is not None:
                    self._listener.close()
                self._listener = None
                self._wakeup.wait(timeout)
        self._wakeup.clear()

    def close(self) -> None:
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._pool.close()
