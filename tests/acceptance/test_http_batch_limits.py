"""Byte limits and debounce through the JSON API, on both stores."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from batchyard import ManualClock
from batchyard.http import create_app
from tests.conftest import CLOCK_START


@pytest.fixture
def client(make_yard):
    yard = make_yard(clock=ManualClock(CLOCK_START))
    seen = []
    yard.handler("collect")(lambda items, ctx: seen.append((list(items), ctx.reason)))
    with TestClient(create_app(yard, worker=False)) as client:
        client.yard, client.seen = yard, seen
        yield client


def add(client, base, items, **config):
    body = {"items": items, "max_batch_size": 100, "on_flush": "collect", **config}
    return client.post(f"/batches/{base}/items", json=body)


def test_a_byte_limit_closes_batches_and_shows_in_their_status(client):
    assert add(client, "ev", ["a" * 8, "b" * 8], max_batch_bytes=25).status_code == 200
    response = add(client, "ev", ["c" * 8], max_batch_bytes=25)  # 30 bytes: the next batch's
    assert response.json()["flushed_batch_ids"] == ["ev::0"]
    [status] = client.get("/batches/ev::1").json()["data"]
    assert (status["max_batch_bytes"], status["byte_count"]) == (25, 10)
    client.yard.run_worker(wait=False)
    assert client.seen == [(["a" * 8, "b" * 8], "size")]


def test_an_item_over_the_byte_limit_is_refused_naming_its_index(client):
    response = add(client, "ev", ["ok", "x" * 40], max_batch_bytes=25)
    assert response.status_code == 422
    body = response.json()
    [problem] = body["detail"]
    assert problem["loc"] == ["body", "items", 1] and "items[1] is 42 bytes" in problem["msg"]
    assert client.get("/batches/ev").json()["data"] == []


@pytest.mark.parametrize(
    "config", [{"max_batch_bytes": 0}, {"max_batch_bytes": 1.5}, {"flush_after_idle": 0}]
)
def test_bad_limits_are_refused(client, config):
    assert add(client, "ev", [1], **config).status_code == 422


def test_a_debounced_batch_flushes_after_a_pause(client):
    config = {"flush_after_idle": 10, "flush_interval": 60}
    add(client, "ev", [1], **config)
    client.yard.clock.advance(6)
    add(client, "ev", [2], **config)
    [status] = client.get("/batches/ev").json()["data"]
    assert status["flush_after_idle"] == 10 and status["last_added_at"] is not None
    client.yard.clock.advance(6)
    client.yard.run_worker(wait=False)
    assert client.seen == []
    client.yard.clock.advance(4)
    client.yard.run_worker(wait=False)
    assert client.seen == [([1, 2], "idle")]
