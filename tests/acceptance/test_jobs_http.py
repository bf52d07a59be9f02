"""The bulk job API: every job type through HTTP with the batch service's JSON shapes, and
against a real server - concurrent idempotent submits, and a large export in bounded
memory."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from batchyard import Yard
from batchyard.bulk.things import upsert_things
from batchyard.http import create_app
from tests.processes import app_env
from tests.servers import free_port, wait_for_http
from tests.threads import run_together

HERE = Path(__file__).parent
JOB_KEYS = {
    "id",
    "type",
    "status",
    "total",
    "processed",
    "throttledSeconds",
    "failed",
    "results",
    "errors",
    "createdAt",
    "updatedAt",
    "completedAt",
    "deadLetters",
    "lastError",
    "parentJobId",
    "retryJobIds",
    "callbackUrl",
    "deliveries",
}


@pytest.fixture
def client(yard):

    @yard.transform("upper")
    def upper(item):
        return {"text": item["text"].upper()}

    with TestClient(create_app(yard, worker=False)) as client:
        client.yard = yard
        yield client


def submit(client, body, **headers):
    response = client.post("/batch", json=body, headers=headers)
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["success"] is True and created["message"] == "Batch job created and queued"
    return created["jobId"]


def finished(client, job_id):
    client.yard.run_worker(wait=False)
    body = client.get(f"/batch/{job_id}").json()
    assert body["success"] is True and set(body["job"]) == JOB_KEYS
    return body["job"]


def test_every_job_type_end_to_end(client):
    things = [
        {
            "ns": "products",
            "id": f"product-{n}",
            "type": "Product",
            "data": {"name": "Widget", "price": 19.99},
            "content": "A widget",
            "visibility": "public",
        }
        for n in range(3)
    ]
    job = finished(
        client, submit(client, {"type": "import-things", "items": [*things, {"ns": "products"}]})
    )
    assert (job["status"], job["total"], job["processed"], job["failed"]) == ("failed", 4, 3, 1)
    assert job["errors"] == [{"index": 3, "error": "id: is required"}]
    assert job["createdAt"].endswith("Z") and job["completedAt"] is not None

    rel = {
        "ns": "relationships",
        "id": "rel-1",
        "type": "hasCategory",
        "fromNs": "products",
        "fromId": "product-1",
        "toNs": "categories",
        "toId": "category-1",
        "data": {},
    }
    job = finished(client, submit(client, {"type": "import-relationships", "items": [rel]}))
    assert (job["status"], job["processed"]) == ("completed", 1)

    job = finished(
        client,
        submit(
            client,
            {
                "type": "export-things",
                "items": [
                    {"ns": "products", "id": "product-1"},
                    {"ns": "products", "id": "product-2"},
                ],
            },
        ),
    )
    assert [r["id"] for r in job["results"]] == ["product-1", "product-2"]
    assert job["results"][0]["data"] == {"name": "Widget", "price": 19.99}

    job = finished(
        client,
        submit(
            client,
            {
                "type": "transform-data",
                "items": [{"text": "value"}, {"nope": 1}],
                "options": {"transform": "upper"},
            },
        ),
    )
    assert job["results"] == [{"text": "VALUE"}]
    assert job["errors"] == [{"index": 1, "error": "KeyError: 'text'"}]

    listed = client.get("/batch", params={"type": "transform-data"}).json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    stats = client.get("/stats").json()
    assert stats == {
        "success": True,
        "stats": {
            "total": 4,
            "pending": 0,
            "processing": 0,
            "completed": 2,
            "failed": 2,
            "cancelled": 0,
            "successRate": "50.00%",
            "successRateValue": 0.5,
        },
    }
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["service"] == "batch" and health["timestamp"]


def test_errors_and_results_are_paged_over_http(client):
    job_id = submit(client, {"type": "import-things", "items": [{"ns": "x"}] * 150})
    page = client.get(f"/batch/{job_id}/errors", params={"limit": 100}).json()["errors"]
    rest = client.get(f"/batch/{job_id}/errors", params={"after": page[-1]["index"]}).json()[
        "errors"
    ]
    assert [e["index"] for e in page + rest] == list(range(150))
    assert client.get(f"/batch/{job_id}/results").json() == {"success": True, "results": []}


def test_cancel_and_missing_jobs(client):
    job_id = submit(
        client,
        {
            "type": "transform-data",
            "items": [{"text": "a"}] * 300,
            "options": {"transform": "upper"},
        },
    )
    cancelled = client.post(f"/batch/{job_id}/cancel").json()
    assert cancelled["job"]["status"] == "cancelled"
    assert finished(client, job_id)["processed"] == 0
    missing = client.get("/batch/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_dead_letters_are_listed_and_redriven_over_http(client):
    from batchyard.signals import RetryLater

    broken = [True]

    @client.yard.transform("flaky")
    def flaky(item):
        if broken[0]:
            raise RetryLater("downstream is down")
        return item

    job_id = submit(
        client, {"type": "transform-data", "items": [1, 2], "options": {"transform": "flaky"}}
    )
    with client.yard.store.transaction() as tx:  # three retries spent already
        tx.execute("UPDATE batchyard_tasks SET attempts = 3")
    client.yard.run_worker(wait=False)
    dead = client.get("/batch/dead-letters").json()["deadLetters"]
    assert [(d["jobId"], d["chunk"], d["items"]) for d in dead] == [(job_id, 0, 2)]
    assert "downstream is down" in dead[0]["error"]
    assert client.get(f"/batch/{job_id}").json()["job"]["status"] == "failed"
    broken[0] = False
    redriven = client.post(f"/batch/dead-letters/{dead[0]['taskId']}/redrive").json()
    assert redriven["job"]["status"] == "processing"
    job = finished(client, job_id)
    assert (job["status"], job["processed"], job["deadLetters"]) == ("completed", 2, 0)


def test_export_downloads_with_type_and_file_name(client):
    finished(
        client,
        submit(
            client,
            {
                "type": "import-things",
                "items": [{"ns": "my ns", "id": "a", "data": {"formula": "=1+1"}}],
            },
        ),
    )
    for format, content_type in [
        ("json", "application/json"),
        ("ndjson", "application/x-ndjson"),
        ("csv", "text/csv; charset=utf-8"),
    ]:
        response = client.get("/export/my ns", params={"format": format})
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert response.headers["content-disposition"] == (
            f"attachment; filename=\"my_ns.{format}\"; filename*=UTF-8''my%20ns.{format}"
        )
    rows = list(csv.DictReader(io.StringIO(client.get("/export/my ns?format=csv").text)))
    assert rows[0]["data.formula"] == "'=1+1"
    assert client.get("/export/x?format=xml").status_code == 422
    plain = client.get("/export/plain-name?format=csv").headers["content-disposition"]
    assert plain == 'attachment; filename="plain-name.csv"'
    accented = client.get("/export/café?format=csv").headers["content-disposition"]
    assert accented.endswith("filename*=UTF-8''caf%C3%A9.csv")


def test_bad_requests_name_what_is_wrong(client):
    response = client.post("/batch", json={"type": "import-everything", "items": [1]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "type"]
    assert client.post("/batch", json={"type": "import-things", "items": []}).status_code == 422
    submit(
        client,
        {"type": "import-things", "items": [{"ns": "a", "id": "1"}]},
        **{"Idempotency-Key": "k"},
    )
    other = client.post(
        "/batch",
        json={"type": "import-things", "items": [{"ns": "b", "id": "1"}]},
        headers={"Idempotency-Key": "k"},
    )
    assert other.status_code == 422
    assert "different request" in other.json()["detail"][0]["msg"]


# -- a real server ------------------------------------------------------------------------


@pytest.fixture
def server(store_url, tmp_path):
    port = free_port()
    env = app_env(store_url, tmp_path / "r", HERE)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchyard",
            "serve",
            "--app",
            "app:yard",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/health")
    yield base, proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def test_twenty_concurrent_identical_submits_make_one_job(server, store_url):
    base, _ = server
    body = {"type": "import-things", "items": [{"ns": "c", "id": str(n)} for n in range(500)]}
    ids = []

    def post(_):
        response = httpx.post(
            f"{base}/batch", json=body, headers={"Idempotency-Key": "same"}, timeout=60
        )
        replayed = response.headers.get("Idempotency-Replayed") == "true"
        assert response.json().get("replayed") is replayed
        ids.append((response.status_code, response.json().get("jobId"), replayed))

    run_together(post, 20)
    assert len(ids) == 20 and {code for code, _, _ in ids} == {200}
    assert len({job for _, job, _ in ids}) == 1
    assert sorted(replayed for _, _, replayed in ids) == [False] + [True] * 19
    assert len(httpx.get(f"{base}/batch").json()["jobs"]) == 1


def rss(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


@pytest.mark.slow
def test_an_export_of_200k_things_streams_in_bounded_server_memory(store_url, tmp_path, request):
    rows = 200_000
    yard = Yard(store_url)
    with yard.store.transaction() as tx:
        upsert_things(
            tx,
            [
                {
                    "ns": "big",
                    "id": f"t{n:07}",
                    "type": "Thing",
                    "data": orjson.dumps({"n": n, "text": "x" * 100}).decode(),
                    "content": "some content here",
                    "visibility": None,
                }
                for n in range(rows)
            ],
        )
        upsert_things(
            tx,
            [
                {
                    "ns": "small",
                    "id": "a",
                    "type": None,
                    "data": "{}",
                    "content": None,
                    "visibility": None,
                }
            ],
        )
    yard.close()
    base, proc = request.getfixturevalue("server")
    for format in ("csv", "ndjson", "json"):  # warm up: imports and threads are in place
        httpx.get(f"{base}/export/small", params={"format": format}).raise_for_status()
    before = rss(proc.pid, "VmRSS")
    for format in ("csv", "ndjson", "json"):
        received, lines = 0, 0
        with httpx.stream(
            "GET", f"{base}/export/big", params={"format": format}, timeout=120
        ) as response:
            for chunk in response.iter_bytes():
                received += len(chunk)
                lines += chunk.count(b"\n")
        assert received > rows * 150  # the whole namespace came through
        if format != "json":
            assert lines == rows + (format == "csv")
    growth = rss(proc.pid, "VmHWM") - before
    assert growth < 100 * 1024 * 1024, f"server memory grew by {growth / 2**20:.0f} MiB"


def test_failed_items_are_retried_over_http_once(client):
    job_id = submit(
        client,
        {
            "type": "transform-data",
            "items": [{"text": "a"}, {"n": 1}],
            "options": {"transform": "upper"},
        },
    )
    running = client.post(f"/batch/{job_id}/retry")
    assert running.status_code == 409 and "retry its failed items once it ends" in running.text
    assert finished(client, job_id)["failed"] == 1
    first = client.post(f"/batch/{job_id}/retry").json()
    again = client.post(f"/batch/{job_id}/retry").json()
    assert first["replayed"] is False and again["replayed"] is True
    assert again["jobId"] == first["jobId"]
    retry = finished(client, first["jobId"])
    assert retry["parentJobId"] == job_id and retry["total"] == 1
    assert finished(client, job_id)["retryJobIds"] == [first["jobId"]]


def test_a_callback_url_is_checked_and_kept(client):
    refused = client.post(
        "/batch",
        json={
            "type": "transform-data",
            "items": [{"text": "a"}],
            "options": {"transform": "upper"},
            "callbackUrl": "http://10.0.0.7/hooks",
        },
    )
    assert refused.status_code == 422 and "non-public address" in refused.text
    job_id = submit(
        client,
        {
            "type": "transform-data",
            "items": [{"text": "a"}],
            "options": {"transform": "upper"},
            "callbackUrl": "https://93.184.216.34/hooks",
        },
    )
    assert (
        client.get(f"/batch/{job_id}").json()["job"]["callbackUrl"] == "https://93.184.216.34/hooks"
    )
