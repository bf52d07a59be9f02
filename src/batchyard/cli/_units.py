"""Numbers as people read them in a terminal: durations, rates and sizes rounded, with
their units (`1.2 s`, `3 min 20 s`, `589/s`, `1.5 MiB`), and one cell of a table from a
record's field.

A field's unit is in its name (``age_seconds``, ``rate_per_second``, ``size_bytes``), so
``cell`` picks the format from the name; the few fields of the seed that carry seconds
without saying so are listed in ``SECONDS_FIELDS``. ``--json`` output never goes through
here: machines get the exact numbers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

SECONDS_FIELDS = frozenset({"flush_interval", "flush_after_idle", "lease", "every"})


def duration(seconds: float) -> str:
    """`seconds` rounded to what matters at its size: `< 0.1 ms`, `850 ms`, `1.2 s`, `42 s`,
    `3 min 20 s`, `2 h 5 min`, `3 d 4 h`."""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 1:
        ms = seconds * 1000
        if 0 < ms < 0.1:
            return "< 0.1 ms"
        return f"{ms:.1f} ms" if round(ms, 1) < 10 else f"{ms:.0f} ms"
    if round(seconds, 1) < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    for big, big_unit, small, small_unit in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "min"),
        (60, "min", 1, "s"),
    ):
        if whole >= big:
            # the smaller unit only while it still says something (not `12 min 7 s`)
            if whole >= 10 * big:
                return f"{round(whole / big)} {big_unit}"
            first, rest = divmod(round(whole / small), big // small)
            return f"{first} {big_unit}" + (f" {rest} {small_unit}" if rest else "")
    raise AssertionError("unreachable")  # pragma: no cover


def rate(per_second: float) -> str:
    """Per-second rate: `589/s`, `12,345/s`, `2.5/s`, `0.05/s`."""
    if per_second >= 100:
        return f"{per_second:,.0f}/s"
    if per_second >= 1:
        return f"{number(per_second, 1)}/s"
    return f"{number(per_second, 2)}/s"


def size(n_bytes: float) -> str:
    """Bytes in binary units: `512 B`, `1.5 KiB`, `12 MiB`, `3.1 GiB`."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{number(value, 1 if value < 10 else 0)} {unit}"


def number(value: float, decimals: int = 2) -> str:
    """`value` with at most `decimals` decimals and thousands separated: `588.97`,
    `12,345.5`, `3`."""
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def when(moment: datetime) -> str:
    """A moment to the second, in UTC: `2026-12-06 23:52:26Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cell(field: str, value: Any) -> str:
    """The text of `value`, the record's field `field`, in a table."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, int | float):
        if field.endswith("_seconds") or field in SECONDS_FIELDS:
            return duration(value)
        if field.endswith("_per_second"):
            return rate(value)
        if field.endswith("_bytes"):
            return size(value)
        return str(value) if isinstance(value, int) else number(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
