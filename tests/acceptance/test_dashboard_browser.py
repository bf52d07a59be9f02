"""The dashboard in headless Chromium, against a real server on a SQLite file.

One server (uvicorn in a thread, with its in-process worker and an API token) serves the
whole module; each test logs in through the form and works on base ids and jobs of its own.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from batchyard import ItemFailures, Yard
from tests.servers import free_port

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token"
STEPS = 400


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The base URL of a running server, and its yard."""
    from batchyard.http import create_app

    path = Path(tmp_path_factory.mktemp("dashboard")) / "yard.db"
    yard = Yard(f"sqlite:///{path}")
    yard.handler("collect")(lambda items, ctx: None)

    @yard.handler("numbers")
    def numbers(cursor, size):
        start = cursor or 0
        return {
            "items": list(range(start, min(start + size, STEPS))),
            "cursor": start + size,
            "done": start + size >= STEPS,
            "total": STEPS,
        }

    yard.handler("slow")(lambda items, ctx: time.sleep(0.02))

    @yard.handler("unreachable")
    def unreachable(cursor, size):
        raise ConnectionError("the source database is down")

    @yard.handler("refuse")
    def refuse(items, ctx):
        raise ItemFailures({0: "the sink refused this one"})

    port = free_port()
    app = create_app(yard, concurrency=2, tokens=[TOKEN])
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield base, yard
    uv.should_exit = True
    thread.join(20)
    yard.close()


@pytest.fixture(scope="module")
def browser():
    if shutil.which(CHROMIUM) is None:
        # like PostgreSQL: skipped on a laptop without it, a failure in CI
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def log_in(page, base, path="/"):
    page.goto(f"{base}{path}")
    expect(page.locator("h1")).to_have_text("Log in")
    page.fill("input[name=token]", TOKEN)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}{path}")


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    log_in(page, server[0])
    yield page
    context.close()


def add_items(base, batch, items):
    response = httpx.post(
        f"{base}/batches/{batch}/items",
        json={"items": items, "max_batch_size": 1000, "on_flush": "collect"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text


def test_every_page_opens_from_the_navigation(page):
    expect(page.locator("h1")).to_have_text("Overview")
    for link, heading in (
        ("Batches", "Batches"),
        ("Iterator jobs", "Iterator jobs"),
        ("Aggregators", "Aggregators"),
        ("Bulk jobs", "Bulk jobs"),
        ("Overview", "Overview"),
    ):
        page.click(f"header nav >> text={link}")
        expect(page.locator("h1")).to_have_text(heading)
    assert page.evaluate("typeof htmx") == "object"  # the shipped copy loaded


def test_pending_count_follows_the_api_and_flush_adds_history(page, server):
    base, yard = server
    page.goto(f"{base}/ui/batches")
    add_items(base, "signups", [{"n": 1}, {"n": 2}, {"n": 3}])
    pending = page.locator("tr[data-base='signups'] td.pending")
    expect(pending).to_have_text("3")  # the live region picked it up: no reload
    add_items(base, "signups", [{"n": 4}, {"n": 5}])
    expect(pending).to_have_text("5")

    page.click("tr[data-base='signups'] >> a:has-text('signups')")
    expect(page.locator("h1")).to_have_text("signups")
    history = page.locator("#history tbody tr")
    expect(history).to_have_count(0)
    page.click("#active >> button:has-text('Flush now')")
    expect(page.locator(".notice")).to_contain_text("Flush scheduled")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("manual")
    expect(history.first).to_contain_text("completed")
    assert yard.get_flush_history("signups")[0].item_count == 5


def test_a_dead_batch_shows_its_items_and_is_discarded_after_asking(page, server):
    base, yard = server
    response = httpx.post(
        f"{base}/batches/refused/items",
        json={
            "items": [{"n": 1}, {"n": 2}],
            "max_batch_size": 2,
            "on_flush": "refuse",
            "max_attempts": 1,
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text
    page.goto(f"{base}/ui/batches/refused")
    items = page.locator(".dead-items tbody tr")
    expect(items.first).to_contain_text("the sink refused this one")  # once it is dead
    expect(items).to_have_count(2)
    page.click("#history summary:has-text('traceback')")
    expect(page.locator("#history pre.traceback")).to_contain_text("in refuse")
    page.click("#active >> a:has-text('Discard')")
    expect(page.locator("h1")).to_have_text("Are you sure?")
    page.click("button:has-text('Yes, discard')")
    expect(page.locator(".notice")).to_contain_text("Batch discarded")
    expect(page.locator("#history tbody tr").first).to_contain_text("discarded")
    assert yard.get_batch_status("refused::0")[0].status == "discarded"


def test_flush_works_without_javascript(browser, server):
    base, yard = server
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, base)
        add_items(base, "nojs", [1, 2])
        page.goto(f"{base}/ui/batches/nojs")
        page.click("#active >> button:has-text('Flush now')")
        expect(page.locator(".notice")).to_contain_text("Flush scheduled")
        deadline = time.monotonic() + 15
        while not yard.get_flush_history("nojs"):
            assert time.monotonic() < deadline, "the flush never ran"
            time.sleep(0.05)
        page.reload()
        expect(page.locator("#history tbody tr")).to_have_count(1)
    finally:
        context.close()


def test_pause_resume_and_cancel_an_iterator_job(page, server):
    base, yard = server
    yard.start_iterator(
        "backfill",
        batch_size=1,
        get_next_batch="numbers",
        process_batch="slow",
        delay_between_batches=0.02,
    )
    page.goto(f"{base}/ui/iterators/backfill")
    status = page.locator("#job-status")
    expect(status).to_have_text("running")
    expect(page.locator(".pct")).not_to_have_text("0.0%")

    page.click("button:has-text('Pause')")
    expect(status).to_have_text("paused")
    expect(page.locator(".notice")).to_contain_text("Job paused")
    paused_at = yard.get_iterator_status("backfill").processed
    time.sleep(0.5)
    assert yard.get_iterator_status("backfill").processed == paused_at

    page.click("button:has-text('Resume')")
    expect(status).to_have_text("running")
    deadline = time.monotonic() + 15
    while yard.get_iterator_status("backfill").processed <= paused_at:
        assert time.monotonic() < deadline, "the job did not go on after resume"
        time.sleep(0.05)

    page.click("a:has-text('Cancel')")
    expect(page.locator("h1")).to_have_text("Are you sure?")
    page.click("button:has-text('Yes, cancel')")
    expect(page.locator(".notice")).to_contain_text("Job cancelled")
    assert yard.get_iterator_status("backfill").status == "cancelled"


def test_the_api_docs_render_offline_under_their_csp(browser, server):
    base, _ = server
    context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
    context.set_default_timeout(15_000)
    elsewhere: list[str] = []

    def only_this_server(route):
        # no network but this server: a CDN asset would fail here, as it does offline
        if route.request.url.startswith(base):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(f"{base}/docs")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any(path.replace("\u200b", "") == "/batch" for path in paths), paths
    shot = page.screenshot(full_page=False)
    context.close()
    assert elsewhere == []
    assert not [line for line in console if "Content Security Policy" in line], console
    # the shot is the rendered page, not a blank one: a blank PNG of this size is a few KB
    assert len(shot) > 30_000, len(shot)


def test_the_charts_show_a_run_of_flushes_and_failures(page, server):
    base, yard = server
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for n in range(3):
        add_items(base, f"charted-{n}", [{"n": n}] * (n + 1))
        httpx.post(f"{base}/batches/charted-{n}/flush", headers=headers)
    response = httpx.post(
        f"{base}/batches/charted-bad/items",
        json={"items": [1, 2], "max_batch_size": 2, "on_flush": "refuse", "max_attempts": 1},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 15
    while len([b for b in yard.get_flush_history("charted-2")]) < 1 or not [
        f for f in yard.get_flush_history("charted-bad") if f.outcome in ("failed", "partial")
    ]:
        assert time.monotonic() < deadline, "the flushes never ran"
        time.sleep(0.05)

    page.goto(f"{base}/")
    drawn = "rect.bar:not([height='0.0'])"
    for chart in ("items", "failures", "duration"):
        bar = page.locator(f"#chart-{chart} {drawn}").last
        expect(bar).to_be_visible()
        box = bar.bounding_box()
        assert box is not None and box["height"] > 0  # drawn, under the CSP, by the browser
    items = page.locator(f"#chart-items {drawn}").last.get_attribute("data-value")
    assert float(items or 0) >= 6  # 1 + 2 + 3 items flushed this hour
    page.click("#charts a[data-range='day']")
    expect(page.locator("#charts a[data-range='day']")).to_have_attribute("aria-current", "true")
    expect(page.locator("#chart-items rect.bar")).to_have_count(14)
    expect(page.locator(f"#chart-failures {drawn}")).not_to_have_count(0)


def test_a_list_filters_and_pages_in_the_browser(page, server):
    base, _ = server
    for name in ("paged-1", "paged-2", "paged-3"):
        add_items(base, name, [1])
    page.goto(f"{base}/ui/batches?bases_limit=2")
    page.fill("input[name=bases_q]", "paged-")
    page.click("#bases-pager >> xpath=preceding::button[text()='Filter'][1]")
    rows = page.locator("#bases tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#bases-pager")).to_contain_text("2 shown (filtered)")
    first = set(rows.evaluate_all("rs => rs.map(r => r.dataset.key)"))
    page.click("#bases-pager >> text=Next page")
    expect(rows).to_have_count(1)
    last = set(rows.evaluate_all("rs => rs.map(r => r.dataset.key)"))
    assert first | last == {"paged-1", "paged-2", "paged-3"} and not first & last
    page.click("#bases-pager >> text=First page")
    expect(rows).to_have_count(2)


def test_a_failed_iterator_at_zero_shows_no_moving_bar(page, server):
    base, yard = server
    yard.start_iterator(
        "never-started",
        batch_size=5,
        get_next_batch="unreachable",
        process_batch="collect",
        max_retries=0,
    )
    page.goto(f"{base}/ui/iterators/never-started")
    expect(page.locator("#job-status")).to_have_text("failed")  # the live region caught up
    expect(page.locator("#errors tbody tr")).to_have_count(1)
    expect(page.locator("#handlers")).to_contain_text("unreachable")
    # an indeterminate <progress> is the one Chromium animates: none for a stopped job
    assert page.locator("progress:indeterminate").count() == 0
    page.goto(f"{base}/ui/iterators?jobs_q=never-started")
    expect(page.locator("tr[data-job='never-started']")).to_contain_text("failed")
    assert page.locator("progress:indeterminate").count() == 0
