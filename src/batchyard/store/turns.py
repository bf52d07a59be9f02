"""Turns at a SQLite file's one writer, between processes.

Within a process, writers queue on a lock and each is woken as soon as the one before it is
done (`SQLiteStore._writer`). Between processes SQLite has only its busy handler: a process
that finds the writer taken sleeps and tries again after 1, 2, 5 ... ms, then every 100 ms.
Against a process that writes back to back - a worker draining, a transactional iterator
whose handler runs inside its transaction - the writer is free for some microseconds between
two transactions, and the process that waits sleeps through the gaps: a single add from an
application process waited 2-6 s behind a worker's transactional iterator (`bench/turns.py`).

So a process that waits says so, and a process about to take the writer lets it go first:

- the waiting side tries again every `TRY_EVERY` seconds and, while it waits, holds a shared
  lock on the first byte of a file beside the database (``<database>-turns``);
- the taking side looks, at most once every `LOOK_EVERY`, whether another process holds that
  lock, and while one does (up to `YIELD_AT_MOST`) it waits before taking the writer.

The locks are POSIX record locks, which the system lets go with the process that held them: a
waiter that died leaves no mark. Where the file cannot be made (a read-only folder), only the
quicker tries are left. A process's own marks are invisible to it, as they should be: its
threads already queue on `SQLiteStore._writer`.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TRY_EVERY = 0.00025  # seconds between a waiter's tries
LOOK_EVERY = 0.001  # seconds between a taker's looks for a waiter (two system calls each)
YIELD_AT_MOST = 0.1  # how long a taker lets a waiting process go first, each time


class WriterTurns:
    def __init__(self, database: str) -> None:
        self._fd = _open_beside(database)
        self._next_look = 0.0

    def take(self, attempt: Callable[[], T], timeout: float) -> T:
        """The result of `attempt`, a statement that takes the writer (``BEGIN IMMEDIATE``, a
        write in autocommit) on a connection that does not wait for it itself (a busy
        timeout of 0), tried until it gets the writer or `timeout` seconds have passed; a
        statement that fails without taking it has done nothing, so trying again is safe."""
        self._let_waiters_go_first()
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
        deadline = time.monotonic() + timeout
        marked = False
        try:
            while True:
                marked = marked or self._mark()
                time.sleep(TRY_EVERY)
                try:
                    return attempt()
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or time.monotonic() >= deadline:
                        raise
        finally:
            if marked:
                self._lock(fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _let_waiters_go_first(self) -> None:
        if self._fd is None:
            return
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + LOOK_EVERY
        until = now + YIELD_AT_MOST
        while self._another_waits():
            if time.monotonic() >= until:
                # it does not come (stopped, say): go on, and look again only after as long
                # again, so that such a process slows this one down by half at most
                self._next_look = until + YIELD_AT_MOST
                return
            time.sleep(TRY_EVERY)

    def _another_waits(self) -> bool:
        assert self._fd is not None
        try:
            # refused while another process holds a shared lock
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        except (BlockingIOError, PermissionError):
            return True
        except OSError:
            return False  # no record locks here (ENOLCK, say): nobody to yield to
        self._lock(fcntl.LOCK_UN)
        return False

    def _mark(self) -> bool:
        # refused only for the instant another process looks (its exclusive lock): the next
        # try marks again
        return self._lock(fcntl.LOCK_SH | fcntl.LOCK_NB)

    def _lock(self, how: int) -> bool:
        if self._fd is None:
            return False
        try:
            fcntl.lockf(self._fd, how, 1, 0)
        except OSError:
            return False
        return True


def _open_beside(database: str) -> int | None:
    """The turns file of `database`, made if missing with the database file's permissions
    and, by root, its owner - as SQLite makes ``-wal`` and ``-shm``: whoever may write the
    database (a service's user, an operator's CLI in its group) may take turns at it."""
    try:
        fd = os.open(f"{database}-turns", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        made, model = os.fstat(fd), os.stat(database)
        if made.st_uid == os.geteuid() and made.st_mode & 0o777 != model.st_mode & 0o777:
            os.fchmod(fd, model.st_mode & 0o777)
        if os.geteuid() == 0 and (made.st_uid, made.st_gid) != (model.st_uid, model.st_gid):
            os.fchown(fd, model.st_uid, model.st_gid)
    except OSError:
        pass  # it still serves this process
    return fd


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY
