"""An iterator job's page, on both stores: the handlers it runs by name, and a job that
stopped before its source gave a total shows a still, empty bar - never the moving
(indeterminate) one that reads as work under way."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from batchyard.http import create_app


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock)
    yard.handler("ok")(lambda items, ctx: None)

    @yard.handler("unreachable")
    def unreachable(cursor, size):
        raise ConnectionError("the source database is down")

    @yard.handler("endless")
    def endless(cursor, size):
        return {"items": [1], "cursor": (cursor or 0) + 1, "done": False}

    return yard


@pytest.fixture
def client(yard):
    with TestClient(create_app(yard, worker=False), base_url="http://dash.test") as client:
        yield client


INDETERMINATE = "<progress></progress>"


def test_a_failed_job_at_zero_shows_a_still_bar_and_its_handlers(client, yard):
    yard.start_iterator(
        "broken", batch_size=5, get_next_batch="unreachable", process_batch="ok", max_retries=0
    )
    yard.run_worker(wait=False)
    assert yard.get_iterator_status("broken").status == "failed"

    page = client.get("/ui/iterators/broken").text
    assert INDETERMINATE not in page and '<progress max="1" value="0">' in page
    assert "<code>unreachable</code>" in page and "<code>ok</code>" in page
    assert "the source database is down" in page
    assert INDETERMINATE not in client.get("/ui/iterators").text


def test_a_running_job_without_a_total_moves_until_cancelled(client, yard):
    yard.start_iterator("tail", batch_size=5, get_next_batch="endless", process_batch="ok")
    assert INDETERMINATE in client.get("/ui/iterators/tail").text  # pending: it will move
    yard.cancel_iterator("tail")
    page = client.get("/ui/iterators/tail").text
    assert INDETERMINATE not in page and '<progress max="1" value="0">' in page


def test_every_failed_step_is_kept_and_shown_a_page_at_a_time(client, yard, clock):
    yard.start_iterator(
        "flaky", batch_size=5, get_next_batch="unreachable", process_batch="ok", max_retries=2
    )
    for _ in range(3):  # the first try and two retries, each due after its backoff
        yard.run_worker(wait=False)
        clock.advance(60)
    errors = yard.get_iterator_errors("flaky")
    assert [e.attempt for e in errors] == [3, 2, 1] and [e.final for e in errors] == [
        True,
        False,
        False,
    ]
    assert all("the source database is down" in e.error for e in errors)

    page = client.get("/ui/iterators/flaky?errors_limit=2").text
    assert page.count('<span class="state failed">gave up</span>') == 1
    assert "Next page" in page
    yard.delete_iterator_job("flaky")
    assert yard.get_iterator_errors("flaky") == []
