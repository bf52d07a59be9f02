"""The overview's charts over time, drawn on the server as SVG, on both stores: bars where
flushes and failures happened, a range switch, a poll of the charts alone, and no inline
script or style (the CSP allows neither)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from batchyard import RetryPolicy
from batchyard.http import create_app

HOUR = 3600.0


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=1))
    yard.handler("ok")(lambda items, ctx: None)

    @yard.handler("boom")
    def boom(items, ctx):
        raise RuntimeError("the sink is down")

    return yard


@pytest.fixture
def client(yard):
    with TestClient(create_app(yard, worker=False), base_url="http://dash.test") as client:
        yield client


def bars(page, chart):
    """The values of one chart's bars, oldest bucket first."""
    figure = page[page.index(f'id="chart-{chart}"') :]
    figure = figure[: figure.index("</figure>")]
    return [
        float(v) for v in re.findall(r'<rect class="bar [^"]*"[^>]* data-value="([^"]+)"', figure)
    ]


def test_charts_show_flushes_failures_time_and_backlog(client, yard, clock):
    yard.add_items("a", [1, 2, 3], max_batch_size=10, on_flush="ok")
    yard.flush("a")
    yard.run_worker(wait=False)
    clock.advance(HOUR)
    yard.add_items("b", [1, 2], max_batch_size=10, on_flush="boom")
    yard.flush("b")
    yard.run_worker(wait=False)

    page = client.get("/").text
    assert bars(page, "items")[-2:] == [3.0, 0.0] and len(bars(page, "items")) == 24
    assert bars(page, "failures")[-2:] == [0.0, 2.0]  # the items of the failed flush
    assert all(v > 0 for v in bars(page, "duration")[-2:])
    assert bars(page, "backlog")[-1] == 2.0
    assert "3 in 2 flushes" in page and "2 items failed, 1 flushes failed whole" in page
    assert "<script>" not in page and " style=" not in page

    daily = client.get("/?range=day").text
    assert len(bars(daily, "items")) == 14 and bars(daily, "items")[-1] == 3.0
    assert bars(daily, "failures")[-1] == 2.0
    assert 'href="/?range=day" aria-current="true"' in daily

    # the charts' own poll gets the charts alone, for the range shown
    polled = client.get("/?range=day", headers={"HX-Request": "true", "HX-Target": "charts"})
    assert 'id="chart-items"' in polled.text and "<html" not in polled.text
    assert 'id="pending-items"' not in polled.text
    cards = client.get("/", headers={"HX-Request": "true", "HX-Target": "live"}).text
    assert 'id="pending-items"' in cards and 'id="chart-items"' not in cards


def test_an_unknown_range_is_refused_by_name(client):
    response = client.get("/?range=week")
    assert response.status_code == 422 and "range must be one of hour, day" in response.text
