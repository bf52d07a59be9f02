"""The dashboard's bulk-job pages: list, one job with paged errors, cancel with a
confirmation, dead chunks listed with their error and redriven by it, export download; on
both stores."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from fastapi.testclient import TestClient

from batchyard import RetryPolicy
from batchyard.http import create_app
from batchyard.signals import RetryLater
from tests.dashboard.test_pages import post


@pytest.fixture
def yard(make_yard):
    yard = make_yard(retry=RetryPolicy(base_delay=0.0, jitter=0.0))
    yard.broken = True

    @yard.transform("flaky")
    def flaky(item):
        if yard.broken:
            raise RetryLater("the model server is down")
        return item

    return yard


@pytest.fixture
def client(yard):
    with TestClient(create_app(yard, worker=False), base_url="http://dash.test") as client:
        yield client


def test_jobs_list_and_a_job_with_its_errors_paged(client, yard):
    job_id = yard.create_batch_job(
        "import-things", [{"ns": "a", "id": str(n)} for n in range(10)] + [{"ns": "a"}] * 60
    )
    yard.run_worker(wait=False)
    listing = client.get("/ui/jobs")
    assert listing.status_code == 200 and job_id[:12] in listing.text
    assert re.search(r"70 / 70", listing.text) and "success rate 0.00%" in listing.text

    page = client.get(f"/ui/jobs/{job_id}")
    assert page.status_code == 200 and "10 processed" in page.text and "60 failed" in page.text
    assert page.text.count("id: is required") == 50  # the first page of errors
    nxt = re.search(r'href="([^"]+\?errors_cursor=[^"]+)" rel="next">Next page', page.text)[1]
    rest = client.get(html.unescape(nxt))
    assert rest.text.count("id: is required") == 10 and "Next page" not in rest.text
    assert client.get("/ui/jobs/nope").status_code == 404


def test_cancel_asks_first_then_cancels(client, yard):
    job_id = yard.create_batch_job("transform-data", [1, 2, 3], options={"transform": "flaky"})
    ask = client.get(f"/ui/jobs/{job_id}/cancel")
    assert "Are you sure" in ask.text
    unconfirmed = post(client, f"/ui/jobs/{job_id}/cancel", page="/ui/jobs")
    assert unconfirmed.status_code == 200 and "Are you sure" in unconfirmed.text
    assert yard.get_batch_job(job_id).status == "pending"
    done = post(client, f"/ui/jobs/{job_id}/cancel", page="/ui/jobs", confirm="yes")
    assert done.status_code == 303 and yard.get_batch_job(job_id).status == "cancelled"
    assert client.post(f"/ui/jobs/{job_id}/cancel", data={"confirm": "yes"}).status_code == 403


def test_dead_chunks_listed_with_their_error_and_redriven_by_it(client, yard):
    first = yard.create_batch_job("transform-data", [1, 2], options={"transform": "flaky"})
    second = yard.create_batch_job("transform-data", [3], options={"transform": "flaky"})
    for _ in range(4):  # the first try and three retries
        yard.run_worker(wait=False)
    listing = client.get("/ui/jobs").text
    assert (
        len(re.findall(r"the model server is down.*?Redrive all with this error", listing, re.S))
        == 2
    )
    assert first[:12] in listing and second[:12] in listing

    yard.broken = False
    error = yard.list_dead_chunks()[0].error
    redriven = post(client, "/ui/jobs/dead/redrive", page="/ui/jobs", error=error)
    assert redriven.status_code == 303 and yard.list_dead_chunks() == []
    yard.run_worker(wait=False)
    assert yard.get_batch_job(first).status == yard.get_batch_job(second).status == "completed"


def test_export_downloads_from_the_dashboard(client, yard):
    yard.create_batch_job("import-things", [{"ns": "shop", "id": "x", "data": {"f": "=1"}}])
    yard.run_worker(wait=False)
    response = client.get("/ui/export", params={"ns": "shop", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="shop.csv"'
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["id"] == "x" and row["data.f"] == "'=1"


def test_with_tokens_the_job_pages_and_the_export_need_a_login(yard):
    with TestClient(
        create_app(yard, worker=False, tokens=["s3cret"]), base_url="http://dash.test"
    ) as client:
        for path in ("/ui/jobs", "/ui/export?ns=shop&format=csv"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/ui/login")
        assert client.get("/ui/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_job_page_shows_its_webhook_deliveries_and_its_retry(client, yard, monkeypatch):
    monkeypatch.setenv("BATCHYARD_WEBHOOK_ALLOW_PRIVATE", "1")
    # nothing listens on port 9 of this machine: every delivery fails and is kept
    job_id = yard.create_batch_job(
        "transform-data",
        [1, 2],
        options={"transform": "flaky"},
        callback_url="http://127.0.0.1:9/hook",
    )
    yard.broken = False
    yard.run_worker(wait=False)
    page = client.get(f"/ui/jobs/{job_id}").text
    section = re.search(r'<section id="deliveries">(.*?)</section>', page, re.S)[1]
    assert "ConnectError" in section and "http://127.0.0.1:9/hook" in page


def test_the_failed_items_of_a_job_are_retried_from_its_page(client, yard):
    job_id = yard.create_batch_job("transform-data", [1, 2, 3], options={"transform": "flaky"})
    yard.run_worker(wait=False)  # every attempt of its chunk fails: the chunk is dead
    page = f"/ui/jobs/{job_id}"
    assert "Retry the failed items" in client.get(page).text
    made = post(client, f"{page}/retry", page=page)
    assert made.status_code == 303 and made.headers["location"].endswith("?notice=job-retried")
    retry_page = made.headers["location"].split("?")[0]
    assert retry_page != page
    shown = client.get(made.headers["location"]).text
    assert f'the failed items of <a href="/ui/jobs/{job_id}">' in shown
    again = post(client, f"{page}/retry", page=page)  # once per job: the same one
    assert again.headers["location"].split("?")[0] == retry_page
    assert "Show the retry job" in client.get(page).text
    yard.broken = False
    yard.run_worker(wait=False)
    assert yard.get_batch_job(retry_page.rsplit("/", 1)[1]).status == "completed"


def test_a_throttled_job_shows_how_long_its_chunks_waited(client, yard):
    yard.handler("busy-sink")(lambda job_id: 30)
    job_id = yard.create_batch_job("import-things", [{"ns": "a", "id": "1"}], throttle="busy-sink")
    yard.run_worker(wait=False)
    page = client.get(f"/ui/jobs/{job_id}")
    assert re.search(r'<dd id="throttled"[^>]*>30(\.0)? ?s', page.text), page.text
