"""The JSON API, through a test client, on both stores."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import batchyard
from batchyard.http import create_app


@pytest.fixture
def client(yard):
    seen = []

    @yard.handler("collect")
    def collect(items, ctx):
        seen.append(items)

    with TestClient(create_app(yard, worker=False)) as client:
        client.yard = yard
        client.seen = seen
        yield client


def add(client, base, items, **config):
    body = {"items": items, "max_batch_size": 3, "on_flush": "collect", **config}
    return client.post(f"/batches/{base}/items", json=body)


def test_health_names_the_store_and_schema(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["schema_version"] >= 1
    assert body["store"] in ("sqlite", "postgres")


def test_add_flush_status_history_and_delete(client):
    response = add(client, "ev", [1, 2])
    assert response.status_code == 200
    assert response.json() == {
        "batch_id": "ev::0",
        "item_count": 2,
        "flushed": False,
        "status": "accumulating",
        "flushed_batch_ids": [],
    }
    [status] = client.get("/batches/ev").json()["data"]
    assert status["pending_count"] == 2 and status["max_batch_size"] == 3
    assert client.post("/batches/ev/flush").json()["flushed"] is True
    client.yard.run_worker(wait=False)
    assert client.seen == [[1, 2]]
    [record] = client.get("/batches/ev/history?limit=5").json()["data"]
    assert record["outcome"] == "completed" and record["reason"] == "manual"
    assert client.delete("/batches/ev::0").status_code == 204
    assert client.delete("/batches/ev::0").status_code == 404


@pytest.mark.parametrize("base", ["tenant/7", "a/flush"])
def test_ids_holding_slashes_are_addressed_like_any_other(client, base):
    # as written, or percent-encoded as a careful client sends them
    for path in (base, base.replace("/", "%2F")):
        assert add(client, path, [1]).json()["batch_id"] == f"{base}::0"
    [status] = client.get(f"/batches/{base}").json()["data"]
    assert status["batch_id"] == f"{base}::0" and status["item_count"] == 2
    assert client.post(f"/batches/{base}/flush").json()["batch_id"] == f"{base}::0"
    client.yard.run_worker(wait=False)
    assert client.seen == [[1, 1]]
    [record] = client.get(f"/batches/{base}/history").json()["data"]
    assert record["batch_id"] == f"{base}::0" and record["outcome"] == "completed"
    assert client.delete(f"/batches/{base}::0").status_code == 204


def test_bad_input_names_the_problem(client):
    response = add(client, "ev", [1], on_flush="nobody")
    assert response.status_code == 422 and response.json()["field"] == "on_flush"
    response = add(client, "ev", [1], max_batch_size=0)
    assert response.status_code == 422 and "max_batch_size" in response.text
    response = client.post(
        "/batches/ev/items", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert client.get("/batches/ev").json()["data"] == []


def test_conflicting_states_answer_409(client):
    add(client, "ev", [1])
    response = client.delete("/batches/ev::0")
    assert response.status_code == 409 and "pending" in response.json()["detail"]
    assert client.post("/batches/ev::0/redrive").status_code == 409


def test_bodies_over_the_limit_are_refused(make_yard):
    yard = make_yard()
    with TestClient(create_app(yard, worker=False, max_body_bytes=100)) as client:
        response = client.post(
            "/batches/ev/items", content=b"x" * 101, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413


def test_the_openapi_schema_lists_the_routes(client):
    schema = client.get("/openapi.json").json()
    assert schema["info"]["version"] == batchyard.__version__
    paths = schema["paths"]
    assert {
        "/health",
        "/batches/{batch_id}/items",
        "/batches/{batch_id}/flush",
        "/batches/{batch_id}",
        "/batches/{batch_id}/history",
        "/batches/{batch_id}/redrive",
    } <= set(paths)


def test_a_dead_batch_is_read_item_by_item_and_discarded(client):
    @client.yard.handler("down")
    def down(items, ctx):
        raise ConnectionError("sink is down")

    assert (
        add(
            client, "ev", [{"n": 1}, {"n": 2}], on_flush="down", max_attempts=1, max_batch_size=2
        ).status_code
        == 200
    )
    client.yard.run_worker(wait=False)
    deleted = client.delete("/batches/ev::0")
    assert deleted.status_code == 409 and "2 pending items" in deleted.json()["detail"]

    page = client.get("/batches/ev::0/items?limit=1")
    assert page.status_code == 200
    assert page.json()["data"] == [{"position": 0, "payload": {"n": 1}, "error": None}]
    rest = client.get("/batches/ev::0/items", params={"cursor": page.json()["next_cursor"]})
    assert rest.json() == {
        "data": [{"position": 1, "payload": {"n": 2}, "error": None}],
        "total": None,
        "next_cursor": None,
    }
    bad = client.get("/batches/ev::0/items?limit=0")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "limit"]
    assert client.get("/batches/nothing::0/items").status_code == 404

    discarded = client.post("/batches/ev::0/discard")
    assert discarded.status_code == 200
    assert discarded.json() == {"batch_id": "ev::0", "item_count": 2, "status": "discarded"}
    assert client.post("/batches/ev::0/discard").status_code == 409
    assert client.post("/batches/nothing::0/discard").status_code == 404
    [record, _] = client.get("/batches/ev/history").json()["data"]
    assert (record["outcome"], record["item_count"]) == ("discarded", 2)
    assert client.delete("/batches/ev::0").status_code == 204
