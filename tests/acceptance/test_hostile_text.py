"""Control characters in ids, namespaces and filters: a 422 naming the parameter on every
route, on both stores (PostgreSQL text cannot hold NUL: without the check some were a 500,
and an export a 200 whose stream then broke)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from batchyard.http import create_app

# NUL, other C0 controls, DEL, and a C1 control (NEL, U+0085) as UTF-8
HOSTILE = ["%00", "%01", "%0A", "%1F", "%7F", "%C2%85"]

# (method, path with {x} where the text goes, where the 422 points)
ROUTES = [
    ("GET", "/batches/a{x}b", ["path", "batch_id"]),
    ("GET", "/batches/a{x}b/history", ["path", "batch_id"]),
    ("POST", "/batches/a{x}b/items", ["path", "batch_id"]),
    ("POST", "/batches/a{x}b/flush", ["path", "batch_id"]),
    ("POST", "/batches/a{x}b/redrive", ["path", "batch_id"]),
    ("DELETE", "/batches/a{x}b", ["path", "batch_id"]),
    ("GET", "/batch?status={x}", ["query", "status"]),
    ("GET", "/batch?type={x}", ["query", "type"]),
    ("GET", "/batch/dead-letters?job={x}", ["query", "job"]),
    ("GET", "/batch/a{x}b", ["path", "job_id"]),
    ("POST", "/batch/a{x}b/cancel", ["path", "job_id"]),
    ("GET", "/batch/a{x}b/errors", ["path", "job_id"]),
    ("GET", "/batch/a{x}b/results", ["path", "job_id"]),
    ("GET", "/export/a{x}b", ["path", "ns"]),
    ("GET", "/export/a{x}b?format=csv", ["path", "ns"]),
    ("GET", "/search/a{x}b?q=widget", ["path", "ns"]),
    ("GET", "/ui/batches/a{x}b", ["path", "base_id"]),
    ("GET", "/ui/iterators/a{x}b", ["path", "job_id"]),
    ("GET", "/ui/jobs?status={x}", ["query", "status"]),
    ("GET", "/ui/jobs/a{x}b", ["path", "job_id"]),
    ("GET", "/ui/export?ns=a{x}b", ["query", "ns"]),
]
# the routes whose id may hold "/"
PATH_IDS = ("/batches/", "/ui/batches/", "/ui/iterators/")


@pytest.fixture
def client(yard):
    yard.handler("collect")(lambda items, ctx: None)
    # a real namespace and batch beside the hostile names: nothing may answer for them
    yard.create_batch_job("import-things", [{"ns": "ab", "id": "1"}])
    yard.run_worker(wait=False)
    yard.add_items("ab", [1], max_batch_size=5, on_flush="collect")
    with TestClient(create_app(yard, worker=False), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "loc"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_control_characters_are_refused_naming_the_parameter(client, method, path, loc):
    body = {"items": [1], "max_batch_size": 5, "on_flush": "collect"}
    for text in HOSTILE:
        response = client.request(
            method, path.format(x=text), json=body if method == "POST" else None
        )
        if text == "%0A" and path.startswith(PATH_IDS):
            # ids that may hold "/" match `.*`, which stops at a newline: no route at all
            assert response.status_code == 404, (text, response.text)
            continue
        assert response.status_code == 422, (text, response.status_code, response.text)
        [problem] = response.json()["detail"]
        assert problem["loc"] == loc and "control character" in problem["msg"], text


def test_printable_text_still_reaches_the_routes(client):
    # the check refuses control characters only: a tab-free id with spaces, unicode and
    # slashes is looked up as before
    assert client.get("/batches/a b/history").status_code == 200
    assert client.get("/batch?status=completed").status_code == 200
    assert client.get("/batch/caf%C3%A9").status_code == 404
    assert client.get("/export/ab?format=ndjson").text.count("\n") == 1


@pytest.mark.parametrize("path", ["/export/ab", "/ui/export?ns=ab&format=csv"])
def test_an_export_that_fails_before_its_first_byte_answers_with_an_error_status(
    make_yard, store_url, path
):
    yard = make_yard()
    # a store that cannot be read: the things table is gone
    with yard.store.transaction(yard.now()) as tx:
        tx.execute("DROP TABLE batchyard_things")
    with TestClient(create_app(yard, worker=False), raise_server_exceptions=False) as client:
        response = client.get(path)
    assert response.status_code == 500, response.text
    assert response.json()["error"] == "InternalError"
