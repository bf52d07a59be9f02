"""Ordered bases and handler limits over HTTP and on the dashboard, on both stores: the
option on POST /batches/{id}/items, a waiting batch's `blocked_by` in its status and on its
base's page, and GET /handlers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from batchyard import RetryPolicy
from batchyard.http import create_app


@pytest.fixture
def yard(make_yard):
    yard = make_yard(retry=RetryPolicy(max_attempts=1))

    @yard.handler("first-fails")
    def first_fails(items, ctx):
        if ctx.sequence == 0:
            raise RuntimeError("the sink is down")

    yard.handler("limited", concurrency=2, rate=(10, 1))(lambda items, ctx: None)
    return yard


@pytest.fixture
def client(yard):
    with TestClient(create_app(yard, worker=False), base_url="http://dash.test") as client:
        yield client


def test_an_ordered_base_shows_what_its_batches_wait_for(client, yard):
    body = {"items": [1, 2, 3, 4, 5, 6], "max_batch_size": 2, "on_flush": "first-fails"}
    response = client.post("/batches/ev/items", json={**body, "ordered": True})
    assert response.status_code == 200, response.text
    yard.run_worker(wait=False)
    batches = client.get("/batches/ev").json()["data"]
    assert [(b["batch_id"], b["status"], b["ordered"], b["blocked_by"]) for b in batches] == [
        ("ev::0", "dead", True, None),
        ("ev::1", "flushing", True, "ev::0"),
        ("ev::2", "flushing", True, "ev::0"),
    ]
    page = client.get("/ui/batches/ev").text
    assert page.count("blocked by") == 2 and "ev::0</a>" in page
    assert client.post("/batches/ev::0/discard").status_code == 200
    yard.run_worker(wait=False)
    assert client.get("/batches/ev").json()["data"] == []


def test_ordered_must_be_a_boolean(client):
    body = {"items": [1], "max_batch_size": 2, "on_flush": "first-fails", "ordered": "yes"}
    response = client.post("/batches/ev/items", json=body)
    assert response.status_code == 422
    assert "ordered" in response.text


def test_handlers_lists_the_limits_and_load(client, yard):
    assert client.get("/handlers").json() == []  # no worker has put the limits in yet
    yard.add_items("ev", [1, 2, 3], max_batch_size=1, on_flush="limited")
    yard.runtime.tasks.publish_limits(yard.handlers.limits(), None)
    yard.runtime.tasks.claim("w", 8, 30.0)  # takes the two places
    [load] = client.get("/handlers").json()
    assert load == {
        "handler": "limited",
        "concurrency": 2,
        "rate_count": 10,
        "rate_seconds": 1.0,
        "in_flight": 2,
        "recent_starts": 2,
        "waiting": 1,
    }
    metrics = client.get("/metrics").text
    assert 'batchyard_handler_in_flight{handler="limited"} 2.0' in metrics
    assert 'batchyard_handler_waiting{handler="limited"} 1.0' in metrics


def test_the_cli_shows_blocked_batches_and_limited_handlers(yard, store_url):
    """`batchyard batches status` and `batchyard handlers`, in a process of their own."""
    yard.add_items("ev", [1, 2, 3, 4], max_batch_size=2, on_flush="first-fails", ordered=True)
    yard.add_items("lim", [1, 2, 3], max_batch_size=1, on_flush="limited")
    yard.runtime.tasks.publish_limits(yard.handlers.limits(), None)
    yard.run_worker(wait=False)

    def run(*args):
        done = subprocess.run(
            [sys.executable, "-m", "batchyard", *args, "--store", store_url, "--json"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    assert [(b["batch_id"], b["blocked_by"]) for b in run("batches", "status", "ev")] == [
        ("ev::0", None),
        ("ev::1", "ev::0"),
    ]
    [load] = run("handlers")
    assert (load["handler"], load["concurrency"], load["in_flight"], load["waiting"]) == (
        "limited",
        2,
        0,
        0,
    )
