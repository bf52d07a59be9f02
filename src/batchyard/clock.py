"""Where time comes from.

SQL on PostgreSQL compares against the database's clock and SQLite against the host's; both
read ``Clock.now()`` only when a clock is *manual*, so tests move time instead of sleeping.
Times are timezone-aware datetimes in Python and Unix epoch seconds inside the store.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, overload


class Clock(Protocol):
    """A source of the current time."""

    manual: bool

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The host's clock (on PostgreSQL the store uses the database's clock instead)."""

    manual = False

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to: for tests of timers, leases and backoff."""

    manual = True

    def __init__(self, start: float | datetime = 1_700_000_000.0) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, by: float | timedelta) -> None:
        """Move time forward."""
        with self._lock:
            self._now += seconds(by)


def seconds(duration: float | timedelta) -> float:
    """A duration given as seconds or timedelta, in seconds."""
    return duration.total_seconds() if isinstance(duration, timedelta) else float(duration)


@overload
def to_datetime(epoch: float) -> datetime: ...
@overload
def to_datetime(epoch: None) -> None: ...
@overload
def to_datetime(epoch: float | None) -> datetime | None: ...


def to_datetime(epoch: float | None) -> datetime | None:
    """Epoch seconds from the store as an aware datetime."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)
