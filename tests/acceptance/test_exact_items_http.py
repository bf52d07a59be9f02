"""Over HTTP as in code: an item that would not come back exactly (an integer past 64 bits,
an escaped lone surrogate, which Python's JSON parser lets through) is a 422 whose `loc` leads
into the item; everything else is delivered equal. Both stores."""

from __future__ import annotations

import itertools
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings

from batchyard.http import create_app
from tests.exact_values import json_like, points_at_a_problem, same, storable


@pytest.fixture
def client(yard):
    delivered = {}

    @yard.handler("collect")
    def collect(items, ctx):
        delivered[ctx.batch_id] = list(items)

    with TestClient(create_app(yard, worker=False)) as client:
        client.yard, client.delivered = yard, delivered
        yield client


def post_items(client, base, items, max_batch_size=10):
    # json.dumps writes a lone surrogate as the escape "\ud800", and big integers exactly
    body = json.dumps({"items": items, "max_batch_size": max_batch_size, "on_flush": "collect"})
    return client.post(
        f"/batches/{base}/items", content=body, headers={"content-type": "application/json"}
    )


def delivered(client, base):
    client.yard.run_worker(wait=False)
    return client.delivered.pop(f"{base}::0")


@pytest.mark.parametrize(
    ("bad", "loc", "message"),
    [
        (
            {"user": {"ids": [1, 2**64]}},
            ["user", "ids", 1],
            "items[3].user.ids[1]: integer 18446744073709551616 is outside the 64-bit range",
        ),
        ({"name": "\ud800"}, ["name"], "items[3].name: string is not valid UTF-8"),
        ({"\udfff": 1}, ["\udfff"], 'items[3]["\\udfff"]: object key is not valid UTF-8'),
    ],
)
def test_an_item_that_would_not_come_back_is_a_422_leading_into_it(client, bad, loc, message):
    assert post_items(client, "ev", ["before"]).status_code == 200
    response = post_items(client, "ev", [1, 2, 3, bad])
    assert response.status_code == 422, response.text
    answer = response.json()
    assert (answer["field"], answer["index"]) == ("items", 3)
    [problem] = answer["detail"]
    assert problem["loc"] == ["body", "items", 3, *loc]
    assert problem["msg"].startswith(message)
    # the refused request stored nothing; the earlier one is whole
    client.post("/batches/ev/flush")
    assert delivered(client, "ev") == ["before"]


def test_a_bulk_job_input_that_would_not_come_back_is_a_422(client):
    response = client.post(
        "/batch", json={"type": "export-things", "input": {"ns": "p", "n": 2**64}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "input", "n"]
    assert client.get("/batch").json()["jobs"] == []


def test_any_value_over_http_is_refused_or_delivered_equal(client):
    bases = (f"b{n}" for n in itertools.count())

    @settings(max_examples=60, deadline=None, database=None)
    @given(value=json_like)
    def round_trip(value):
        base = next(bases)
        response = post_items(client, base, [value], max_batch_size=1)
        if response.status_code == 422:
            assert not storable(value), f"refused {value!r}: {response.text}"
            [problem] = response.json()["detail"]
            assert problem["loc"][:3] == ["body", "items", 0]
            assert points_at_a_problem(value, problem["loc"][3:]), problem
            return
        assert response.status_code == 200, response.text
        assert storable(value), f"accepted {value!r}"
        assert same(value, delivered(client, base)[0])

    round_trip()
