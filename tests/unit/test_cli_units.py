"""The CLI's numbers for people: rounded, with their units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from batchyard.cli._units import cell, duration, number, rate, size


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.0 ms"),
        (0.00004, "< 0.1 ms"),
        (0.0004, "0.4 ms"),
        (0.0123, "12 ms"),
        (0.85, "850 ms"),
        (1.234, "1.2 s"),
        (9.96, "10 s"),
        (42.4, "42 s"),
        (59.6, "1 min"),
        (125, "2 min 5 s"),
        (180, "3 min"),
        (599.6, "10 min"),
        (3700, "1 h 2 min"),
        (7199, "2 h"),  # not `1 h 60 min`
        (86400 * 3 + 3600 * 4, "3 d 4 h"),
        (10**6, "12 d"),
        (-2.5, "-2.5 s"),
    ],
)
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_rate_size_number():
    assert [rate(r) for r in (588.97, 12345.6, 2.54, 0.05)] == [
        "589/s",
        "12,346/s",
        "2.5/s",
        "0.05/s",
    ]
    assert [size(b) for b in (512, 1536, 12 * 1024**2 + 5, 3.1 * 1024**3)] == [
        "512 B",
        "1.5 KiB",
        "12 MiB",
        "3.1 GiB",
    ]
    assert [number(n) for n in (588.9712, 3.0, 12345.5)] == ["588.97", "3", "12,345.5"]


def test_a_cell_takes_its_unit_from_the_field_name():
    assert cell("duration_seconds", 0.0123) == "12 ms"
    assert cell("flush_interval", 300.0) == "5 min"
    assert cell("rate_per_second", 588.97) == "589/s"
    assert cell("size_bytes", 2048) == "2 KiB"
    assert cell("item_count", 3) == "3" and cell("ratio", 0.33333) == "0.33"
    assert cell("running", False) == "no" and cell("last_error", None) == ""
    assert cell("payload", {"n": 1}) == '{"n": 1}' and cell("cursor", (3, 7)) == "[3, 7]"
    moment = datetime(2026, 12, 6, 23, 52, 26, 304358, tzinfo=timezone(timedelta(hours=1)))
    assert cell("created_at", moment) == "2026-12-06 22:52:26Z"
    assert cell("created_at", moment.astimezone(UTC)) == "2026-12-06 22:52:26Z"
