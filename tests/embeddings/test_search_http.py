"""GET /search/{ns} and generate-embeddings jobs through the HTTP API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from batchyard.http import create_app

pytestmark = pytest.mark.slow  # the real model


@pytest.fixture
def client(make_yard, counting):
    yard = make_yard(embedder=counting)
    with TestClient(create_app(yard, worker=False)) as client:
        client.yard = yard
        yield client


def test_search_route_returns_the_nearest_things_with_scores(client):
    things = [
        {"ns": "pets", "id": f"t{n}", "content": text}
        for n, text in enumerate(
            ["a kitten lies on a rug", "stock markets fell sharply", "the recipe needs two eggs"]
        )
    ]
    for body in (
        {"type": "import-things", "items": things},
        {"type": "generate-embeddings", "input": {"ns": "pets"}, "options": {"batchSize": 2}},
    ):
        created = client.post("/batch", json=body)
        assert created.status_code == 200, created.text
        client.yard.run_worker(wait=False)
        job = client.get(f"/batch/{created.json()['jobId']}").json()["job"]
        assert (job["status"], job["processed"]) == ("completed", 3)

    response = client.get("/search/pets", params={"q": "a cat sits on the mat", "k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["model"] == "all-MiniLM-L6-v2"
    hits = body["results"]
    assert hits[0]["id"] == "t0" and len(hits) == 2
    assert hits[0]["score"] > hits[1]["score"]
    assert hits[0]["thing"]["content"] == "a kitten lies on a rug" and hits[0]["ns"] == "pets"

    assert client.get("/search/nobody", params={"q": "a cat"}).json()["results"] == []
    for params in ({"q": "a cat", "k": 0}, {"q": "a cat", "k": 1001}, {"q": ""}, {}):
        bad = client.get("/search/pets", params=params)
        assert bad.status_code == 422, params
        assert bad.json()["detail"][0]["loc"][0] == "query"
    blank = client.get("/search/pets", params={"q": "   "})
    assert blank.status_code == 422 and blank.json()["error"] == "InvalidInput"
