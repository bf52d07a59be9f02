"""The batcher and handler pages in headless Chromium, against a real server on a SQLite
file with its in-process worker: batchers registered by the application, a handler with a
fleet-wide limit, and items added over HTTP while the pages watch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from batchyard import Yard
from tests.acceptance.test_dashboard_browser import TOKEN, browser, log_in  # noqa: F401
from tests.servers import free_port

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a running server, its yard, and the gate its limited handler waits
    behind (set: calls go through)."""
    from batchyard.http import create_app

    path = Path(tmp_path_factory.mktemp("batchers")) / "yard.db"
    yard = Yard(f"sqlite:///{path}")
    gate = threading.Event()
    yard.handler("collect")(lambda items, ctx: None)

    @yard.handler("first-fails")
    def first_fails(items, ctx):
        if ctx.sequence == 0:
            raise RuntimeError("the search index refused it")

    @yard.handler("gated", concurrency=1, rate=(100, 1))
    def gated(items, ctx):
        gate.wait(30)

    yard.register_batcher(
        "clicks",
        key="user",
        max_batch_size=100,
        max_batch_bytes=2000,
        flush_interval=3600,
        flush_after_idle=600,
        on_flush="collect",
        max_open_keys=10,
    )
    yard.register_batcher(
        "index", key="doc", max_batch_size=1, ordered=True, max_attempts=1, on_flush="first-fails"
    )
    yard.register_batcher("gated", key="k", max_batch_size=1, on_flush="gated")
    for name in ("paged-a", "paged-b", "paged-c"):
        yard.register_batcher(name, key="k", max_batch_size=10, on_flush="collect")

    port = free_port()
    app = create_app(yard, concurrency=4, tokens=[TOKEN])
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield base, yard, gate
    gate.set()
    uv.should_exit = True
    thread.join(20)
    yard.close()


@pytest.fixture
def page(browser, server):  # noqa: F811
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    log_in(page, server[0])
    yield page
    context.close()


def add(base, batcher, items):
    response = httpx.post(
        f"{base}/batchers/{batcher}/items", json={"items": items}, headers=HEADERS
    )
    assert response.status_code == 200, response.text


def test_the_batchers_list_follows_adds_and_opens_a_batchers_keys(page, server):
    base, _, _ = server
    page.click("header nav >> text=Batchers")
    expect(page.locator("h1")).to_have_text("Batchers")
    clicks = page.locator("tr[data-batcher='clicks']")
    expect(clicks).to_contain_text("2,000 B")
    expect(clicks).to_contain_text("field user")
    add(base, "clicks", [{"user": "ann", "n": 1}, {"user": "bob", "n": 2}, {"user": "ann", "n": 3}])
    # the live region picked them up: no reload
    expect(clicks.locator("td.open-keys")).to_have_text("2 of 10")
    expect(clicks.locator("td.pending")).to_have_text("3")

    clicks.locator("a:has-text('clicks')").click()
    expect(page.locator("h1")).to_have_text("clicks")
    expect(page.locator("#open-keys")).to_have_text("2")
    ann = page.locator("#keys tr[data-key='ann']")
    expect(ann).to_contain_text("2 of 100")
    expect(ann.locator(".bytes")).to_contain_text("of 2,000 B")
    expect(ann.locator(".timer")).to_contain_text("flushes in")
    add(base, "clicks", [{"user": "cy", "n": 4}])
    expect(page.locator("#open-keys")).to_have_text("3")  # a new key, seen live

    ann.locator("td").first.locator("a").click()  # the key's base page
    expect(page.locator("h1")).to_have_text("clicks:ann")
    expect(page.locator("#active tr[data-key='clicks:ann::0'] .bytes")).to_contain_text("2,000 B")
    page.click("#active >> button:has-text('Flush now')")
    expect(page.locator(".notice")).to_contain_text("Flush scheduled")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    page.goto(f"{base}/ui/batchers/clicks")
    expect(page.locator("#history tr[data-key='clicks:ann::0/1']")).to_contain_text("completed")
    expect(page.locator("#flushed-last-hour")).to_have_text("2")


def test_an_ordered_key_blocked_by_a_dead_batch_is_freed_by_discarding_it(page, server):
    base, yard, _ = server
    add(base, "index", [{"doc": "d1", "v": n} for n in range(3)])
    page.goto(f"{base}/ui/batchers/index")
    blocked = page.locator("#keys tr[data-key='d1'] .blocked")
    expect(blocked).to_contain_text("blocked by index:d1::0 (dead")  # once it has died
    blocked.locator("a").click()
    expect(page.locator("h1")).to_have_text("index:d1::0")
    page.click("a:has-text('Discard')")
    page.click("button:has-text('Yes, discard')")
    expect(page.locator(".notice")).to_contain_text("Batch discarded")
    page.goto(f"{base}/ui/batchers/index")
    # its successors went through in order: nothing left to wait for
    expect(page.locator("#keys tbody tr")).to_have_count(0)
    history = page.locator("#history tbody tr")
    expect(history.filter(has_text="completed")).to_have_count(2)
    seen = set(history.evaluate_all("rs => rs.map(r => r.dataset.key)"))
    assert {"index:d1::0/1", "index:d1::1/1", "index:d1::2/1"} <= seen
    delivered = [f.batch_id for f in yard.get_flush_history("index:d1", outcome="completed")]
    assert delivered == ["index:d1::2", "index:d1::1"]  # newest first: in sequence


def test_the_handlers_page_shows_a_limited_handler_in_flight_and_waiting(page, server):
    base, _, gate = server
    page.click("header nav >> text=Handlers")
    expect(page.locator("h1")).to_have_text("Handlers")
    add(base, "gated", [{"k": "a"}, {"k": "b"}, {"k": "c"}])  # three flushes, one at a time
    gated = page.locator("#handlers tr[data-handler='gated']")
    expect(gated.locator("td.in-flight")).to_have_text("1")
    expect(gated.locator("td.waiting")).to_have_text("2")
    expect(gated.locator("td.rate")).to_have_text("100 per 1.0 s")
    gate.set()
    expect(gated.locator("td.waiting")).to_have_text("0")
    expect(gated.locator("td.in-flight")).to_have_text("0")


def test_the_batchers_list_filters_and_pages_in_the_browser(page, server):
    base, _, _ = server
    page.goto(f"{base}/ui/batchers?batchers_limit=2")
    page.fill("input[name=batchers_q]", "paged-")
    page.click("button:has-text('Filter')")
    rows = page.locator("#batchers tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#batchers-pager")).to_contain_text("2 shown of 3 (filtered)")
    page.click("#batchers-pager >> text=Next page")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-key", "paged-c")
    page.click("#batchers-pager >> text=First page")
    expect(rows).to_have_count(2)
