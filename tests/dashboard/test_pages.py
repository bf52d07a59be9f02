"""The dashboard's pages and forms without a browser (and without JavaScript), on both
stores."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from batchyard import RetryPolicy, folds
from batchyard.http import create_app
from batchyard.sources import sql_keyset
from tests.dashboard.forms import csrf


@pytest.fixture
def yard(make_yard):
    yard = make_yard(retry=RetryPolicy(max_attempts=1))
    yard.handler("ok")(lambda items, ctx: None)

    @yard.handler("boom")
    def boom(items, ctx):
        raise RuntimeError("the sink is down")

    @yard.handler("numbers")
    def numbers(cursor, size):
        start = cursor or 0
        return {
            "items": list(range(start, start + size)),
            "cursor": start + size,
            "done": start + size >= 10,
            "total": 10,
        }

    return yard


@pytest.fixture
def client(yard):
    with TestClient(create_app(yard, worker=False), base_url="http://dash.test") as client:
        yield client


def post(client, path, page="/", **fields):
    token = csrf(client.get(page).text)
    return client.post(path, data={"csrf_token": token, **fields}, follow_redirects=False)


def test_every_page_shows_the_store(client, yard):
    yard.add_items("events", [1, 2, 3], max_batch_size=10, on_flush="ok")
    yard.add_items("broken", [1], max_batch_size=10, on_flush="boom")
    yard.flush("broken")
    yard.run_worker(wait=False)
    yard.start_iterator("backfill", batch_size=3, get_next_batch="numbers", process_batch="ok")
    yard.register_aggregator("per-key", stream="clicks", key="k", fold=folds.count())
    yard.append_events("clicks", [{"k": "a"}] * 5)

    overview = client.get("/")
    assert overview.status_code == 200
    assert re.search(r'id="pending-items">\s*3\s*<', overview.text)
    assert "No worker is running" in overview.text
    assert "content-security-policy" in overview.headers

    batches = client.get("/ui/batches").text
    assert 'data-base="events"' in batches and "broken::0" in batches
    assert "the sink is down" in batches and "Redrive" in batches

    base = client.get("/ui/batches/broken").text
    assert "manual" in base and "failed" in base  # the history: why and how it ended

    jobs = client.get("/ui/iterators").text
    assert 'data-job="backfill"' in jobs and "Pause" in jobs

    aggregators = client.get("/ui/aggregators").text
    assert "per-key" in aggregators and "clicks" in aggregators
    assert re.search(r'<td class="num">5</td>', aggregators)  # 5 events behind

    assert client.get("/ui/iterators/nobody").status_code == 404


def test_the_poll_gets_only_the_live_block(client, yard):
    yard.add_items("events", [1, 2], max_batch_size=10, on_flush="ok")
    fragment = client.get("/ui/batches", headers={"HX-Request": "true"}).text
    assert "<html" not in fragment and 'data-base="events"' in fragment
    boosted = client.get("/ui/batches", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in boosted.text


def test_flush_and_redrive_forms_work_without_javascript(client, yard):
    yard.add_items("events", [1, 2], max_batch_size=10, on_flush="ok")
    response = post(client, "/ui/batches/events/flush", back="/ui/batches/events")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/batches/events?notice=flushed"
    yard.run_worker(wait=False)
    assert "Flush scheduled" in client.get(response.headers["location"]).text
    [record] = yard.get_flush_history("events")
    assert record.reason == "manual" and record.outcome == "completed"

    yard.add_items("broken", [1], max_batch_size=10, on_flush="boom")
    yard.flush("broken")
    yard.run_worker(wait=False)
    assert post(client, "/ui/batches/broken::0/redrive").status_code == 303
    assert yard.get_batch_status("broken::0")[0].status == "flushing"
    # a conflict is explained, not hidden
    again = post(client, "/ui/batches/broken::0/redrive")
    assert again.status_code == 409 and "not dead" in again.text


def test_a_batch_whose_id_holds_a_slash_has_its_page_and_forms(client, yard):
    yard.add_items("tenant/7", [1], max_batch_size=10, on_flush="ok")
    link = re.search(r'href="(/ui/batches/tenant[^"]*)"', client.get("/ui/batches").text)[1]
    page = client.get(link)
    assert page.status_code == 200 and "tenant/7::0" in page.text
    action = re.search(r'action="(/ui/batches/tenant[^"]*/flush)"', page.text)[1]
    response = post(client, action, page=link, back=link)
    assert response.status_code == 303
    assert yard.get_batch_status("tenant/7")[0].status == "flushing"


@pytest.mark.parametrize("job", ["backfill", "team/backfill"])
def test_iterator_pause_resume_and_confirmed_cancel(client, yard, job):
    yard.start_iterator(job, batch_size=3, get_next_batch="numbers", process_batch="ok")
    page = re.search(r'href="(/ui/iterators/[^"]+)"', client.get("/ui/iterators").text)[1]
    assert job in client.get(page).text
    assert post(client, f"{page}/pause", page).status_code == 303
    assert yard.get_iterator_status(job).status == "paused"
    assert post(client, f"{page}/resume", page).status_code == 303
    assert yard.get_iterator_status(job).status == "running"

    ask = client.get(f"{page}/cancel")
    assert ask.status_code == 200 and "Yes, cancel" in ask.text
    unconfirmed = post(client, f"{page}/cancel", page)
    assert unconfirmed.status_code == 200 and "Are you sure?" in unconfirmed.text
    assert yard.get_iterator_status(job).status == "running"
    assert post(client, f"{page}/cancel", page, confirm="yes").status_code == 303
    assert yard.get_iterator_status(job).status == "cancelled"
    assert post(client, f"{page}/delete", page, confirm="yes").status_code == 303
    assert yard.list_iterator_jobs() == []


@pytest.mark.parametrize("name", ["per-key", "clicks/per-key"])
def test_run_now_queues_the_aggregator_for_the_workers(client, yard, name):
    yard.register_aggregator(name, stream="clicks", key="k", fold=folds.count())
    yard.append_events("clicks", [{"k": "a"}, {"k": "b"}, {"k": "a"}])
    assert yard.get_aggregator_status(name).last_run_at is None
    action = re.search(r'action="(/ui/aggregators/[^"]+/run)"', client.get("/ui/aggregators").text)[
        1
    ]
    assert post(client, action).status_code == 303
    yard.run_worker(wait=False)
    assert yard.get_aggregator_status(name).last_run_at is not None
    if yard.store.dialect == "sqlite":  # PostgreSQL: an open transaction may hold it back
        assert yard.get_totals(name) == {"a": 2, "b": 1}
    assert post(client, "/ui/aggregators/nobody/run").status_code == 404


def test_the_static_files_are_shipped(client):
    htmx = client.get("/ui/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:200]
    assert client.get("/ui/static/dashboard.css").status_code == 200


def raise_from_the_sink(items):
    raise RuntimeError(f"the sink refused {len(items)} items")


def test_a_dead_batch_shows_its_items_and_traceback_and_is_discarded_after_asking(client, yard):
    @yard.handler("sink")
    def sink(items, ctx):
        raise_from_the_sink(items)

    yard.add_items("tenant/7", [{"n": 1}, {"n": 2}], max_batch_size=2, on_flush="sink")
    yard.run_worker(wait=False)
    link = re.search(r'href="(/ui/batches/tenant[^"]*)"', client.get("/ui/batches").text)[1]
    page = client.get(link).text
    assert 'data-batch="tenant/7::0"' in page and '{"n": 2}' in page
    # the flush history: the error, and the traceback down to the raising function
    details = re.search(
        r"<details[^>]*><summary>traceback</summary><pre[^>]*>(.*?)</pre>", page, re.S
    )[1]
    assert "raise_from_the_sink" in details and "the sink refused 2 items" in details

    ask_path = re.search(r'href="(/ui/batches/tenant[^"]*/discard)"', page)[1]
    ask = client.get(ask_path)
    assert ask.status_code == 200 and "Yes, discard" in ask.text and "tenant/7::0" in ask.text
    unconfirmed = post(client, ask_path, link)
    assert unconfirmed.status_code == 200 and "Are you sure?" in unconfirmed.text
    assert yard.get_batch_status("tenant/7::0")[0].status == "dead"
    done = post(client, ask_path, link, confirm="yes")
    assert done.status_code == 303 and done.headers["location"].startswith(link)
    assert yard.get_batch_status("tenant/7::0")[0].status == "discarded"
    after = client.get(done.headers["location"]).text
    assert "Batch discarded" in after and "discarded" in after
    again = post(client, ask_path, link, confirm="yes")
    assert again.status_code == 409 and "only a dead batch" in again.text


def test_a_failed_iterator_shows_its_traceback(client, yard):
    @yard.handler("broken-source")
    def broken_source(cursor, size):
        raise_from_the_sink([cursor])

    yard.start_iterator(
        "backfill", batch_size=3, get_next_batch="broken-source", process_batch="ok", max_retries=0
    )
    yard.run_worker(wait=False)
    assert yard.get_iterator_status("backfill").status == "failed"
    page = client.get("/ui/iterators/backfill").text
    details = re.search(
        r"<details[^>]*><summary>traceback</summary><pre[^>]*>(.*?)</pre>", page, re.S
    )[1]
    assert "raise_from_the_sink" in details and "the sink refused 1 items" in details


def test_an_iterator_page_shows_its_page_size_and_time_throttled(client, yard):
    yard.handler("wait-a-minute")(lambda job_id: 60.0)
    yard.start_iterator(
        "paced",
        batch_size=3,
        get_next_batch="numbers",
        process_batch="ok",
        throttle="wait-a-minute",
        target_batch_seconds=1.0,
    )
    yard.run_worker(wait=False)
    page = client.get("/ui/iterators/paced").text
    assert re.search(r'id="page-size">3<', page)
    assert re.search(r'id="throttled">[^<]*1 min', page), page


def test_a_parallel_iterator_page_shows_its_slices(client, yard):
    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE rows_src (id INTEGER PRIMARY KEY)")
        tx.executemany("INSERT INTO rows_src (id) VALUES (:id)", [{"id": n} for n in range(40)])
    sql_keyset(yard, "rows", table="rows_src", order_by="id", tie_breaker="id")
    yard.start_iterator(
        "wide",
        batch_size=5,
        get_next_batch="rows",
        process_batch="ok",
        parallelism=4,
        delay_between_batches=0,
    )
    yard.run_worker(wait=False)
    page = client.get("/ui/iterators/wide").text
    assert re.search(r'id="parallelism">4 slices', page)
    slices = re.findall(r'<tr data-slice="(\d+)"><td>\d+</td>\s*<td>(\w+)</td>', page)
    assert len(slices) >= 4 and all(state == "done" for _, state in slices), page
