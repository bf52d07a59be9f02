"""Every dashboard list filters and pages, on both stores: each is walked page by page
through its own "Next page" links, with a filter on, and must show exactly the rows the
filter matches, each once, at most `limit` a page. Bad filters are a 422 naming the field."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from batchyard import RetryPolicy, folds
from batchyard.http import create_app
from batchyard.signals import RetryLater
from tests.dashboard.test_pages import post


@pytest.fixture
def yard(make_yard):
    yard = make_yard(retry=RetryPolicy(max_attempts=1, base_delay=0.0, jitter=0.0))
    yard.handler("ok")(lambda items, ctx: None)

    @yard.handler("boom")
    def boom(items, ctx):
        raise RuntimeError("the sink is down")

    @yard.handler("numbers")
    def numbers(cursor, size):
        return {"items": [1], "cursor": 1, "done": True, "total": 1}

    @yard.transform("flaky")
    def flaky(item):
        raise RetryLater("the model server is down")

    return yard


@pytest.fixture
def client(yard):
    with TestClient(create_app(yard, worker=False), base_url="http://dash.test") as client:
        yield client


def walk(client, path, name, **params):
    """The row keys of list `name` on the page at `path`, a page at a time, following the
    list's own "Next page" links from the first page asked with `params`."""
    url = f"{path}?{urlencode({f'{name}_{k}': v for k, v in params.items()})}"
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        text = response.text
        pager = text[text.index(f'id="{name}-pager"') :]
        pager = pager[: pager.index("</nav>")]
        end = text.index(f'id="{name}-pager"')
        start = text.find(f'id="{name}-filters')  # a list without filters: its table
        region = text[start if start >= 0 else text.rindex("<table", 0, end) : end]
        pages.append([html.unescape(k) for k in re.findall(r'data-key="([^"]*)"', region)])
        found = re.search(r'href="([^"]*)" rel="next"', pager)
        url = html.unescape(found[1]) if found else None
    return pages


def rows(pages):
    return sorted(key for page in pages for key in page)


def sizes(pages):
    return [len(page) for page in pages]


def test_bases_and_dead_batches_filter_and_page(client, yard):
    for base in ("alpha-1", "alpha-2", "alpha-3", "beta"):
        yard.add_items(base, [1], max_batch_size=10, on_flush="ok")
    for base in ("dead-1", "dead-2", "dead-3", "gone"):
        yard.add_items(base, [1], max_batch_size=10, on_flush="boom")
        yard.flush(base)
    yard.run_worker(wait=False)

    bases = walk(client, "/ui/batches", "bases", q="alpha-", limit=2)
    assert sizes(bases) == [2, 1] and rows(bases) == ["alpha-1", "alpha-2", "alpha-3"]
    everything = walk(client, "/ui/batches", "bases", limit=3)
    assert len(rows(everything)) == 8 and sizes(everything) == [3, 3, 2]

    dead = walk(client, "/ui/batches", "dead", q="dead-", limit=2)
    assert sizes(dead) == [2, 1] and rows(dead) == ["dead-1::0", "dead-2::0", "dead-3::0"]
    # paging one list leaves the other's filter where it was
    both = client.get("/ui/batches?bases_q=beta&dead_q=gone").text
    assert 'data-key="beta"' in both and 'data-key="gone::0"' in both
    assert 'data-key="alpha-1"' not in both and 'data-key="dead-1::0"' not in both


def test_a_bases_batches_and_flush_history_filter_and_page(client, yard):
    for _ in range(3):
        yard.add_items("orders", [1, 2], max_batch_size=10, on_flush="ok")
        yard.flush("orders")
        yard.run_worker(wait=False)
    for _ in range(2):
        yard.add_items("orders", [1], max_batch_size=10, on_flush="boom")
        yard.flush("orders")
        yard.run_worker(wait=False)
    yard.add_items("orders", [1], max_batch_size=10, on_flush="ok")  # accumulating

    history = walk(client, "/ui/batches/orders", "history", status="completed", limit=2)
    assert sizes(history) == [2, 1]
    assert rows(history) == ["orders::0/1", "orders::1/1", "orders::2/1"]
    failed = walk(client, "/ui/batches/orders", "history", status="failed", q="orders::4")
    assert rows(failed) == ["orders::4/1"]

    active = walk(client, "/ui/batches/orders", "active", status="dead", limit=1)
    assert sizes(active) == [1, 1] and rows(active) == ["orders::3", "orders::4"]
    assert rows(walk(client, "/ui/batches/orders", "active", status="accumulating")) == [
        "orders::5"
    ]


def test_iterators_filter_and_page(client, yard):
    for job_id in ("backfill-a", "backfill-b", "backfill-c", "other"):
        yard.start_iterator(job_id, batch_size=1, get_next_batch="numbers", process_batch="ok")
    yard.pause_iterator("backfill-b")

    jobs = walk(client, "/ui/iterators", "jobs", q="backfill-", limit=2)
    assert sizes(jobs) == [2, 1] and rows(jobs) == ["backfill-a", "backfill-b", "backfill-c"]
    assert rows(walk(client, "/ui/iterators", "jobs", status="paused")) == ["backfill-b"]
    pending = walk(client, "/ui/iterators", "jobs", status="pending", q="backfill-", limit=1)
    assert sizes(pending) == [1, 1] and rows(pending) == ["backfill-a", "backfill-c"]


def test_aggregators_filter_and_page(client, yard):
    for name in ("clicks-a", "clicks-b", "clicks-c", "views"):
        yard.register_aggregator(name, stream=f"s-{name}", key="k", fold=folds.count())

    listed = walk(client, "/ui/aggregators", "aggregators", q="clicks-", limit=2)
    assert sizes(listed) == [2, 1] and rows(listed) == ["clicks-a", "clicks-b", "clicks-c"]
    assert rows(walk(client, "/ui/aggregators", "aggregators", q="s-views")) == ["views"]


def test_bulk_jobs_and_dead_chunks_filter_and_page(client, yard):
    ids = [
        yard.create_batch_job("transform-data", [n], options={"transform": "flaky"})
        for n in range(3)
    ]
    yard.cancel_batch_job(ids[0])
    yard.cancel_batch_job(ids[1])

    cancelled = walk(client, "/ui/jobs", "jobs", status="cancelled", limit=1)
    assert sizes(cancelled) == [1, 1] and rows(cancelled) == sorted(ids[:2])
    assert rows(walk(client, "/ui/jobs", "jobs", q=ids[2][:8])) == [ids[2]]

    others = [
        yard.create_batch_job("transform-data", [n], options={"transform": "flaky"})
        for n in range(2)
    ]
    for _ in range(4):  # the first try and three retries: the chunks die
        yard.run_worker(wait=False)
    dead = walk(client, "/ui/jobs", "dead", limit=1)
    assert sizes(dead) == [1, 1, 1] and rows(dead) == sorted(f"{i}/0" for i in [ids[2], *others])
    assert rows(walk(client, "/ui/jobs", "dead", q=others[1][:8])) == [f"{others[1]}/0"]


def test_a_dead_batchs_items_page_by_position(client, yard):
    yard.add_items("refused", list(range(5)), max_batch_size=10, on_flush="boom")
    yard.flush("refused")
    yard.run_worker(wait=False)

    items = walk(client, "/ui/batches/refused::0/items", "items", limit=2)
    assert sizes(items) == [2, 2, 1] and rows(items) == ["0", "1", "2", "3", "4"]
    page = client.get("/ui/batches/refused::0/items").text
    assert "the sink is down" in page and "Redrive" in page and "Discard" in page
    assert "/ui/batches/refused%3A%3A0/items" in client.get("/ui/batches/refused").text
    assert client.get("/ui/batches/nobody::0/items").status_code == 404


def test_an_aggregators_parked_events_page_and_are_retried(client, yard):
    # events without a key are parked (KeyError), until the key function copes with them
    yard.register_aggregator("odd", stream="numbers", key=lambda e: e["k"], fold=folds.count())
    yard.append_events("numbers", [{"k": "a"} if n % 2 else {"odd": n} for n in range(6)])
    yard.run_aggregator("odd")

    parked = walk(client, "/ui/aggregators/odd", "parked", limit=2)
    assert sizes(parked) == [2, 1] and len(rows(parked)) == 3
    assert "KeyError" in client.get("/ui/aggregators/odd").text
    assert 'href="/ui/aggregators/odd"' in client.get("/ui/aggregators").text

    yard.register_aggregator(
        "odd", stream="numbers", key=lambda e: e.get("k", "none"), fold=folds.count()
    )
    assert client.post("/ui/aggregators/odd/parked/retry").status_code == 403  # no CSRF token
    retried = post(client, "/ui/aggregators/odd/parked/retry", page="/ui/aggregators/odd")
    assert retried.status_code == 303 and "notice=parked-retried" in retried.headers["location"]
    assert yard.list_parked_events("odd") == []
    assert yard.get_totals("odd") == {"a": 3, "none": 3}
    assert "No parked events." in client.get("/ui/aggregators/odd").text
    assert client.get("/ui/aggregators/nobody").status_code == 404


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/ui/iterators", "jobs_status=sleeping", "jobs_status"),
        ("/ui/batches", "bases_status=dead", "bases_status"),
        ("/ui/batches", "dead_cursor=not-a-cursor", "dead_cursor"),
        ("/ui/jobs", "jobs_cursor=eyJ4Ijoxfd", "jobs_cursor"),
        ("/ui/aggregators", "aggregators_limit=0", "aggregators_limit"),
        ("/ui/aggregators", "aggregators_cursor=bm90", "aggregators_cursor"),
        ("/ui/batches/b", "history_limit=many", "history_limit"),
    ],
)
def test_a_bad_filter_or_cursor_is_a_422_naming_it(client, path, query, field):
    response = client.get(f"{path}?{query}")
    assert response.status_code == 422 and field in response.text
