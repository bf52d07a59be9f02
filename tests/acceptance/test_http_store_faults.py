"""The HTTP API while the store cannot serve: 503 with Retry-After, never 500, and the body
names the problem without the store's internals."""

from __future__ import annotations

import sqlite3

from fastapi.testclient import TestClient

from batchyard import StoreFull, Yard
from batchyard.http import create_app
from batchyard.http.auth import ApiTokens
from batchyard.store.sqlite import SQLiteStore
from tests.faults.disks import not_a_database, small_disk

ADD = {"items": ["x" * 400] * 20, "max_batch_size": 100_000, "on_flush": "record"}


def client_of(yard: Yard) -> TestClient:
    yard.handler("record")(lambda items, ctx: None)
    app = create_app(yard, worker=False, tokens=ApiTokens())
    return TestClient(app, raise_server_exceptions=False)


def test_a_full_store_answers_503_with_retry_after(tmp_path):
    with (
        small_disk(tmp_path / "disk", 768) as disk,
        Yard(f"sqlite:///{disk}/yard.db") as yard,
        client_of(yard) as client,
    ):
        for _ in range(10_000):  # bounded: the disk is full long before
            response = client.post("/batches/ev/items", json=ADD)
            if response.status_code != 200:
                break
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.json() == {"detail": StoreFull.__doc__, "error": "StoreFull"}
        assert str(disk) not in response.text
        assert client.get("/batches/ev").status_code == 200  # reads still work


def test_a_store_locked_past_its_timeout_answers_503(tmp_path):
    path = tmp_path / "yard.db"
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout=0.1)
    store.migrate()
    with Yard(store) as yard, client_of(yard) as client:
        other = sqlite3.connect(path, isolation_level=None)  # another process's writer, say
        other.execute("BEGIN IMMEDIATE")
        try:
            response = client.post("/batches/ev/items", json=ADD)
        finally:
            other.close()
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "StoreUnavailable" and "Retry-After" in response.headers


def test_a_damaged_store_is_a_500_that_says_so(tmp_path):
    path = tmp_path / "yard.db"
    store = SQLiteStore(f"sqlite:///{path}")
    store.migrate()
    with Yard(store) as yard, client_of(yard) as client:
        store.close()
        not_a_database(path)  # replaced under the running server
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"yard.db{suffix}").unlink(missing_ok=True)
        response = client.get("/batches/ev")
    assert response.status_code == 500, response.text
    assert response.json()["error"] == "StoreCorrupt" and str(path) not in response.text
