"""Throttles: handlers that an iterator or a bulk job asks before each page or chunk whether
to go on now (None) or to wait so many seconds first (replica lag, a sink's rate limit).
A wait is not a failure: the work is queued again for then, without counting an attempt."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchyard.handlers import Handlers


def throttle_wait(handlers: Handlers, name: str, job_id: str) -> float:
    """Ask the throttle handler `name` about the job: seconds to wait first (0: go on)."""
    value = handlers.call(name, job_id)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise TypeError(
            f"throttle handler {name!r} must return None or seconds to wait, not {value!r}"
        )
    return float(value)
