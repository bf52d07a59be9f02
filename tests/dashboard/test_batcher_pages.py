"""The dashboard's batcher and handler pages, and what a batch's pages show of byte limits,
ordering and debounce, on both stores (without a browser: the pages as served). The lists
filter and page like every other (`walk` follows their own "Next page" links)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from batchyard import RetryPolicy
from batchyard.http import create_app
from tests.dashboard.test_lists import walk


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=1))
    yard.handler("sink")(lambda items, ctx: None)

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


def row(page, attribute, value):
    """The table row whose `attribute` is `value`, as text without tags."""
    found = re.search(rf'<tr {attribute}="{re.escape(value)}".*?</tr>', page, re.S)
    assert found, f"no row {attribute}={value!r}"
    return text(found.group(0))


def text(html):
    """`html` without its tags, spaces folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_batchers_list_shows_each_ones_limits_and_counts(client, yard):
    yard.register_batcher(
        "clicks",
        key="user",
        max_batch_size=3,
        max_batch_bytes=4000,
        flush_interval=60,
        flush_after_idle=5,
        on_flush="sink",
        max_open_keys=5,
    )
    yard.register_batcher(
        "orders",
        key=lambda item: item["shop"],
        max_batch_size=2,
        ordered=True,
        on_flush="first-fails",
    )
    yard.add("clicks", [{"user": u, "n": n} for n, u in enumerate("aabca")])  # a's first 3 fill
    # a plain base named like the batcher, and one like a key's of it: not the batcher's
    yard.add_items("clicks", [1, 2, 3], max_batch_size=3, on_flush="sink")
    yard.add_items("clicksa:b", [1, 2, 3], max_batch_size=3, on_flush="sink")
    yard.add("orders", [{"shop": "s1", "n": n} for n in range(6)])
    yard.run_worker(wait=False)

    page = client.get("/ui/batchers").text
    clicks = row(page, "data-batcher", "clicks")
    assert "field user" in clicks and "sink" in clicks
    assert "3 items · 4,000 B · interval 1 min 0 s · idle 5.0 s" in clicks
    # a's 3 items filled its batch (flushed); b and c are open: 2 keys of at most 5
    assert "2 of 5 2 2 open 3 0" in clicks
    orders = row(page, "data-batcher", "orders")
    assert "&lt;lambda&gt;()" in orders and "ordered" in orders
    # s1::0 died (2 items failed), s1::1 and s1::2 wait behind it
    assert "1 dead" in orders and "2 flushing" in orders
    flushed = re.search(r'data-batcher="clicks".*?class="num flushed"[^>]*>(\d+)<', page, re.S)
    failed = re.search(r'data-batcher="orders".*?class="num failed[^"]*"[^>]*>(\d+)<', page, re.S)
    assert flushed and flushed.group(1) == "3"
    assert failed and failed.group(1) == "2"

    assert client.get("/ui/batchers/nobody").status_code == 404


def test_a_batchers_page_shows_each_keys_open_batch_timer_and_what_it_waits_for(
    client, yard, clock
):
    yard.register_batcher(
        "clicks",
        key="user",
        max_batch_size=10,
        max_batch_bytes=1000,
        flush_interval=60,
        flush_after_idle=5,
        on_flush="sink",
    )
    yard.register_batcher(
        "orders", key="shop", max_batch_size=2, ordered=True, on_flush="first-fails"
    )
    yard.add("clicks", [{"user": "a", "n": 1}])
    clock.advance(2)
    yard.add("clicks", [{"user": "a", "n": 2}, {"user": "b", "n": 3}])
    yard.add("orders", [{"shop": "s1", "n": n} for n in range(6)])
    yard.run_worker(wait=False)

    page = client.get("/ui/batchers/clicks").text
    assert re.search(r'id="open-keys">\s*2\s*<', page)
    assert re.search(r'id="items-waiting">\s*3\s*<', page)
    a = row(page, "data-key", "a")
    # two items of 18 B each: bytes against the limit; the debounce's deadline
    assert "clicks:a::0" in a and "2 of 10" in a and "36 B of 1,000 B" in a
    assert "idle since 0 ms ago" in a and "flushes in 5.0 s unless items come" in a
    assert 'href="/ui/batches/clicks%3Aa"' in page  # the key's base page

    page = client.get("/ui/batchers/orders").text
    s1 = row(page, "data-key", "s1")
    assert "blocked by orders:s1::0 (dead: redrive or discard it)" in s1
    assert 'href="/ui/batches/orders%3As1%3A%3A0/items"' in page
    history = re.findall(r'<tr data-key="(orders:s1::\d+)/1">', page)
    assert history == ["orders:s1::0"]  # the dead one's attempt; the others wait

    clock.advance(4)  # idle for 4 s: the deadline is near, not yet passed
    page = client.get("/ui/batchers/clicks").text
    assert "idle since 4.0 s ago" in row(page, "data-key", "a")


def test_a_batchers_keys_and_history_filter_and_page(client, yard):
    yard.register_batcher("clicks", key="user", max_batch_size=1, on_flush="sink")
    yard.register_batcher("views", key="user", max_batch_size=100, on_flush="sink")
    yard.add("views", [{"user": f"u{n}"} for n in range(7)] + [{"user": "other"}])
    yard.add("clicks", [{"user": f"u{n % 3}"} for n in range(5)])  # five flushes of one item
    yard.run_worker(wait=False)

    pages = walk(client, "/ui/batchers/views", "keys", q="u", limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(k for p in pages for k in p) == [f"u{n}" for n in range(7)]
    assert walk(client, "/ui/batchers/views", "keys", status="dead") == [[]]

    pages = walk(client, "/ui/batchers/clicks", "history", q="u1", limit=1)
    assert pages == [["clicks:u1::0/1"], ["clicks:u1::1/1"]] or pages == [
        ["clicks:u1::1/1"],
        ["clicks:u1::0/1"],
    ]
    assert walk(client, "/ui/batchers/clicks", "history", status="failed") == [[]]

    for n in range(4):
        yard.register_batcher(f"b{n}", key="k", max_batch_size=1, on_flush="sink")
    pages = walk(client, "/ui/batchers", "batchers", q="b", limit=3)
    assert pages == [["b0", "b1", "b2"], ["b3"]]
    assert client.get("/ui/batchers?batchers_status=open").status_code == 422


def test_a_batch_page_shows_bytes_against_the_limit_and_the_debounce(client, yard, clock):
    yard.add_items(
        "ev",
        [{"n": 1}, {"n": 2}],
        max_batch_size=10,
        max_batch_bytes=100,
        flush_interval=30,
        flush_after_idle=10,
        on_flush="sink",
    )
    clock.advance(25)
    yard.add_items("ev", [{"n": 3}], max_batch_size=10, max_batch_bytes=100, on_flush="sink")
    page = client.get("/ui/batches/ev").text
    ev0 = row(page, "data-key", "ev::0")
    assert "21 B of 100 B" in ev0
    # idle since the last add, but the longest wait (30 s from creation) comes first
    assert "idle since 0 ms ago" in ev0 and "flushes in 5.0 s" in ev0
    items = text(client.get("/ui/batches/ev::0/items").text)
    assert "21 B of 100 B" in items and "3 of 10" in items and "flushes in 5.0 s" in items


def test_a_batch_waiting_for_a_dead_one_says_so_on_its_own_page(client, yard):
    yard.add_items("ev", [1, 2, 3, 4], max_batch_size=2, on_flush="first-fails", ordered=True)
    yard.run_worker(wait=False)
    page = client.get("/ui/batches/ev::1/items").text
    assert re.search(r"blocked by <a href=\"/ui/batches/ev%3A%3A0/items\">ev::0</a> \(dead", page)
    base = client.get("/ui/batches/ev").text
    assert "blocked by" in row(base, "data-key", "ev::1") and "(dead" in row(
        base, "data-key", "ev::1"
    )
    yard.discard_batch("ev::0")
    yard.run_worker(wait=False)
    assert "blocked by" not in client.get("/ui/batches/ev").text


def test_the_handlers_page_shows_the_fleets_limits_and_load(client, yard, clock):
    assert "No handler has limits" in client.get("/ui/handlers").text
    yard.add_items("ev", [1, 2, 3], max_batch_size=1, on_flush="limited")
    yard.runtime.tasks.publish_limits(yard.handlers.limits(), clock.time())
    # takes the two places; the third waits
    yard.runtime.tasks.claim("w", 8, 30.0, now=clock.time())
    page = client.get("/ui/handlers").text
    limited = row(page, "data-handler", "limited")
    assert re.sub(r"\s+", " ", limited).split() == [
        "limited",
        "2",
        "2",
        "1",
        "10",
        "per",
        "1.0",
        "s",
        "2",
        "of",
        "10",
    ]
    assert walk(client, "/ui/handlers", "handlers", q="lim") == [["limited"]]
    assert walk(client, "/ui/handlers", "handlers", q="x") == [[]]
    overview = text(client.get("/").text)
    assert "limited: 2 in flight of 2 · 1 waiting for the limit" in overview
