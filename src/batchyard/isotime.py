"""Epoch seconds as the text exports and job results show: ISO 8601 in UTC to the
millisecond, ending in "Z" (``2026-11-28T09:30:00.123Z``).

`iso` writes what ``datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")``
would, at a fraction of its cost; `iso_memo` gives an export a converter that remembers the
millisecond it last wrote, since an export meets its times in long runs of neighbours.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from math import modf


def iso(epoch: float | None) -> str | None:
    """`epoch` (seconds) as ISO 8601 text, or None for None."""
    if epoch is None:
        return None
    seconds, millis = _split(epoch)
    return _whole_second(seconds) + _MILLISECONDS[millis]


def iso_memo() -> Callable[[float], str]:
    """A function like `iso` (for numbers only) that remembers the span of epochs sharing
    its last answer. Things are exported in id order and imported in id order within a few
    milliseconds of each other (on PostgreSQL every row gets its own statement time, so the
    same number rarely comes twice), so most calls are one comparison."""
    low = high = 0.0
    last = ""

    def iso_time(epoch: float) -> str:
        nonlocal low, high, last
        if low <= epoch < high:
            return last
        seconds, millis = _split(epoch)
        last = _whole_second(seconds) + _MILLISECONDS[millis]
        if 0 <= epoch < _SPAN_LIMIT:
            # every epoch from the start of this millisecond to its end has this answer;
            # 2 µs kept clear at each end cover the rounding to the microsecond and the
            # float error of these sums (half a µs at most below 2**32 s)
            start = seconds + millis / 1000
            low, high = start + 2e-6, start + 997e-6
        else:
            low = high = 0.0  # an empty span: the old one's answer is gone
        return last

    return iso_time


_SPAN_LIMIT = 2.0**32  # before 1970 or after 2106 every epoch is converted on its own


def _split(epoch: float) -> tuple[int, int]:
    # as datetime.fromtimestamp does: the fraction rounds to the microsecond, half to
    # even, carrying into the seconds; the isoformat then cuts it to the millisecond
    fraction, seconds = modf(epoch)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    elif micros < 0:
        seconds, micros = seconds - 1, micros + 1_000_000
    return int(seconds), micros // 1000


_MILLISECONDS = tuple(f".{n:03}Z" for n in range(1000))


@functools.lru_cache(maxsize=1024)
def _whole_second(epoch: int) -> str:
    # the things of one import share a few seconds: each is written once
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")[:-6]
