"""Helpers for tests that run a real server: a free port, and waiting for something to
happen (a server to answer, a flush to land) with a deadline instead of a fixed sleep."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import psycopg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], object],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> None:
    """Return once `condition()` is true, checking every `interval` seconds; raise an
    AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    """Wait until `url` answers 200 (a server starting up refuses connections first)."""

    def up() -> bool:
        try:
            return httpx.get(url).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout, what=f"the server at {url}")


def wait_for_lock_wait(database_url: str, what: str, timeout: float = 30.0) -> None:
    """Return once a session of the PostgreSQL database at `database_url` waits for a lock
    (a statement of another thread reached the row lock that the test holds)."""
    with psycopg.connect(database_url, autocommit=True) as watcher:
        wait_until(
            lambda: watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()[0],
            timeout=timeout,
            what=what,
            interval=0.01,
        )
