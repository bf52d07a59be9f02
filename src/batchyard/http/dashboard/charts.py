"""The dashboard's charts: the flush history over time, drawn on the server as inline SVG.

No chart library and no script: a chart is bars in an SVG the page carries, coloured by the
stylesheet (the CSP allows no inline style), each bar with a ``<title>`` that says its
bucket and value on hover. The numbers come from `batchyard.trends`; this module only lays
them out. The overview polls its charts in a region of their own, less often than its
cards: a chart moves by the hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchyard.http.dashboard._common import duration
from batchyard.trends import RANGES, Bucket, Trend, Trends

CHART_POLL_SECONDS = 30
WIDTH, HEIGHT = 480, 120  # the viewBox; the stylesheet scales it to the column


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: float
    title: str  # what a hover shows: the bucket and its value


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    summary: str  # the range's total (or peak) in words
    top: str  # the value at the top of the scale
    bars: list[Bar]
    first: str  # the first bucket's and the last bucket's labels, under the bars
    last: str


def charts(trend: Trend) -> list[Chart]:
    """The four charts of a trend: items flushed, items failed (by a flush that failed
    whole, or one by one in a partial one), flush time, backlog."""
    buckets = trend.buckets
    return [
        _chart(
            trend,
            "items",
            "Items flushed",
            lambda b: b.items_flushed,
            _count,
            f"{sum(b.items_flushed for b in buckets)} in {sum(b.flushes for b in buckets)} flushes",
        ),
        _chart(
            trend,
            "failures",
            "Failures (items)",
            lambda b: b.failed_items,
            _count,
            f"{sum(b.failed_items for b in buckets)} items failed, "
            f"{sum(b.failed_flushes for b in buckets)} flushes failed whole",
        ),
        _chart(
            trend,
            "duration",
            "Flush time (mean)",
            lambda b: b.mean_duration_seconds,
            duration,
            "longest "
            + duration(max((b.max_duration_seconds or 0.0 for b in buckets), default=0.0)),
        ),
        _chart(
            trend,
            "backlog",
            "Backlog (items waiting)",
            lambda b: b.backlog,
            _count,
            f"now {buckets[-1].backlog}, peak {max(b.backlog for b in buckets)}",
        ),
    ]


def _chart(
    trend: Trend,
    id: str,
    title: str,
    value: Callable[[Bucket], float | None],
    fmt: Callable[[float], str],
    summary: str,
) -> Chart:
    values = [float(value(b) or 0.0) for b in trend.buckets]
    top = max(values, default=0.0)
    slot = WIDTH / len(values)
    bars = []
    for n, (bucket, v) in enumerate(zip(trend.buckets, values, strict=True)):
        # a bar that is not zero stays visible, however small beside the tallest
        height = 0.0 if not v else max(1.0, HEIGHT * v / top)
        bars.append(
            Bar(
                x=round(n * slot + 1, 2),
                y=round(HEIGHT - height, 2),
                width=round(slot - 2, 2),
                height=round(height, 2),
                value=v,
                title=f"{_label(trend, bucket)}: {fmt(v)}",
            )
        )
    return Chart(
        id=id,
        title=title,
        summary=summary,
        top=fmt(top),
        bars=bars,
        first=_label(trend, trend.buckets[0]),
        last=_label(trend, trend.buckets[-1]),
    )


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _label(trend: Trend, bucket: Bucket) -> str:
    return bucket.start.strftime("%d %b %H:00" if trend.range == "hour" else "%d %b")


def context(trends: Trends, span: str) -> dict[str, Any]:
    """What a page with the charts of `span` renders them with. The charts themselves are
    read only when drawn (`charts()` in the template): a poll of another block of the page
    does not read the history."""
    return {
        "charts": lambda: charts(trends.trend(span)),
        "range": span,
        "ranges": list(RANGES),
        "width": WIDTH,
        "height": HEIGHT,
        "chart_poll": CHART_POLL_SECONDS,
    }
