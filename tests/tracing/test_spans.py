"""Spans of adds and flushes, on both stores: an add made in a request (through the app)
and the flush that delivers its items are linked, both naming the batch."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from opentelemetry.trace import StatusCode

from batchyard import InvalidInput, RetryPolicy
from batchyard.http import create_app
from tests.tracing.conftest import traceparent


@pytest.fixture
def yard(make_yard):
    yard = make_yard(retry=RetryPolicy(max_attempts=2, base_delay=0.0))
    yard.seen = []

    @yard.handler("collect")
    def collect(items, ctx):
        yard.seen.append(items)

    @yard.handler("explode")
    def explode(items, ctx):
        raise ConnectionError(f"the sink refused {len(items)} items")

    return yard


def stored_traces(yard):
    with yard.store.transaction(write=False) as tx:
        rows = tx.all("SELECT trace_context FROM batchyard_items ORDER BY batch_no, position")
    return [row["trace_context"] for row in rows]


def test_an_http_add_and_the_flush_that_delivers_it_are_linked(yard, spans):
    with TestClient(create_app(yard, worker=False)) as client:
        for items in ([1, 2], [3]):  # the second add fills the batch (size 3)
            body = {"items": items, "max_batch_size": 3, "on_flush": "collect"}
            response = client.post("/batches/ev/items", json=body)
            assert response.status_code == 200
    yard.run_worker(wait=False)
    assert yard.seen == [[1, 2, 3]]

    adds = spans.all("batchyard.add")
    assert [a.attributes["batchyard.item_count"] for a in adds] == [2, 1]
    assert all(a.attributes["batchyard.batch_id"] == "ev::0" for a in adds)
    assert all(a.attributes["batchyard.base"] == "ev" for a in adds)
    # each add runs inside its request's span (under FastAPI's endpoint span)
    requests = [s for s in spans.all() if s.name == "POST /batches/{batch_id}/items"]
    assert len(requests) == 2
    for add, request in zip(adds, requests, strict=True):
        assert spans.ancestors(add)[-1] is request

    flush = spans.one("batchyard.flush")
    assert flush.attributes["batchyard.batch_id"] == "ev::0"
    assert flush.attributes["batchyard.sequence"] == 0
    assert flush.attributes["batchyard.attempt"] == 1
    assert flush.attributes["batchyard.item_count"] == 3
    assert flush.attributes["batchyard.outcome"] == "completed"
    assert flush.attributes["batchyard.reason"] == "size"
    assert flush.parent is None  # a trace of its own, linked to the adds
    assert {traceparent(link) for link in flush.links} == {traceparent(a) for a in adds}
    assert stored_traces(yard) == [traceparent(adds[0])] * 2 + [traceparent(adds[1])]


def test_a_failed_flush_records_its_error_and_each_attempt_links_to_the_add(yard, spans):
    yard.add_items("ev", [1, 2], max_batch_size=2, on_flush="explode")
    add = spans.one("batchyard.add")
    assert add.attributes["batchyard.batch_id"] == "ev::0"
    assert "batchyard.batch_ids" not in add.attributes  # only when there are several
    assert add.parent is None  # a library add outside any span: the add is the root
    yard.run_worker(wait=False)

    first, second = spans.all("batchyard.flush")
    assert [f.attributes["batchyard.attempt"] for f in (first, second)] == [1, 2]
    assert [f.attributes["batchyard.dead"] for f in (first, second)] == [False, True]
    for flush in (first, second):
        assert flush.attributes["batchyard.outcome"] == "failed"
        assert flush.status.status_code == StatusCode.ERROR
        [event] = flush.events
        assert event.name == "exception"
        assert event.attributes["exception.type"] == "ConnectionError"
        assert "refused 2 items" in event.attributes["exception.message"]
        assert [traceparent(link) for link in flush.links] == [traceparent(add)]


def test_an_add_that_fills_batches_names_them_all_and_each_flush_links_to_it(yard, spans):
    result = yard.add_items("ev", list(range(5)), max_batch_size=2, on_flush="collect")
    add = spans.one("batchyard.add")
    assert add.attributes["batchyard.batch_ids"] == ("ev::0", "ev::1", "ev::2")
    assert add.attributes["batchyard.batch_id"] == result.batch_id == "ev::2"
    yard.flush("ev")
    yard.run_worker(wait=False)
    flushes = sorted(spans.all("batchyard.flush"), key=lambda f: f.attributes["batchyard.sequence"])
    assert [f.attributes["batchyard.batch_id"] for f in flushes] == ["ev::0", "ev::1", "ev::2"]
    assert all([traceparent(link) for link in f.links] == [traceparent(add)] for f in flushes)


def test_single_item_adds_each_store_their_own_context(yard, spans):
    for item in range(3):  # one statement each: counted, then at the remembered position
        yard.add_items("ev", [item], max_batch_size=10, on_flush="collect")
    adds = spans.all("batchyard.add")
    assert stored_traces(yard) == [traceparent(a) for a in adds]
    yard.flush("ev")
    yard.run_worker(wait=False)
    flush = spans.one("batchyard.flush")
    assert [traceparent(link) for link in flush.links] == [traceparent(a) for a in adds]


def test_adds_outside_a_sampled_span_store_nothing_and_flush_unlinked(yard):
    # tracing off (the session's sampler drops every span here)
    yard.add_items("ev", [1], max_batch_size=10, on_flush="collect")
    yard.add_items("ev", [2, 3], max_batch_size=10, on_flush="collect")
    assert stored_traces(yard) == [None, None, None]
    yard.flush("ev")
    yard.run_worker(wait=False)
    assert yard.seen == [[1, 2, 3]]


def test_calls_carried_by_one_add_keep_their_own_contexts(yard, spans):
    # what a lane hands over when adds from two traces arrive while one is in flight: each
    # call's items are stored with its own context (the calls go one after the other)
    adder = yard._accumulator.adder
    config = adder.config(10, "collect", None, None)
    traces = [f"00-{'1' * 32}-{'a' * 16}-01", f"00-{'2' * 32}-{'b' * 16}-01"]
    results = adder.send("ev", config, [['"x"', '"y"'], ['"z"']], traces)
    assert [r.item_count for r in results] == [2, 1]
    assert stored_traces(yard) == [traces[0], traces[0], traces[1]]
    yard.flush("ev")
    yard.run_worker(wait=False)
    assert yard.seen == [["x", "y", "z"]]
    flush = spans.one("batchyard.flush")
    assert [traceparent(link) for link in flush.links] == traces


def test_byte_limited_adds_store_their_context_by_every_statement(yard, spans):
    # with a byte limit, items are written by the sized statements: placed by sizes (the
    # first add, then one spanning two batches), counted (no remembered position), at the
    # remembered position, and the calls of a lane together at the remembered position
    config = {"max_batch_size": 100, "on_flush": "collect", "max_batch_bytes": 10}
    adder = yard._accumulator.adder
    yard.add_items("ev", [1], **config)
    adder._open.clear()  # forget the position: the next add counts it
    for items in ([2], [3], [444, 555, 666]):  # 666 would take ev::0 to 12 bytes
        yard.add_items("ev", items, **config)
    trace = f"00-{'1' * 32}-{'a' * 16}-01"
    adder.send("ev", adder.config(100, "collect", None, None), [["7"], ["8"]], [trace, trace])
    adds = [traceparent(a) for a in spans.all("batchyard.add")]
    assert stored_traces(yard) == [*adds[:3], *[adds[3]] * 3, trace, trace]
    yard.flush("ev")
    yard.run_worker(wait=False)
    assert yard.seen == [[1, 2, 3, 444, 555], [666, 7, 8]]


def test_a_refused_add_records_its_error_and_stores_nothing(yard, spans):
    yard.add_items("ev", [1], max_batch_size=10, on_flush="collect")
    with pytest.raises(InvalidInput, match=r"items\[1\]"):
        yard.add_items("ev", [2, float("nan")], max_batch_size=10, on_flush="collect")
    ok, refused = spans.all("batchyard.add")
    assert ok.status.status_code is not StatusCode.ERROR
    assert refused.status.status_code is StatusCode.ERROR
    assert "InvalidInput" in refused.status.description
    [event] = refused.events
    assert event.name == "exception"
    assert stored_traces(yard) == [traceparent(ok)]
