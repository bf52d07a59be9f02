"""Every route family over HTTP in the one convention, on both stores: batchyard's own routes
answer in snake_case with lists as ``{data, total, next_cursor}`` paged by an opaque cursor
and filters that refuse unknown values; the bulk-job routes keep the seed's shapes, with
the additions (a numeric success rate, replays that say so, failed jobs' errors in lists)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from batchyard import Page, folds
from batchyard.http import create_app
from batchyard.sources import ndjson_file, sql_keyset

ENVELOPE = {"data", "total", "next_cursor"}


@pytest.fixture
def client(yard):
    yard.handler("collect")(lambda items, ctx: None)

    @yard.handler("numbers")
    def numbers(cursor, batch_size):
        start = cursor or 0
        items = list(range(start, min(start + batch_size, 25)))
        return Page(items, cursor=start + len(items), done=start + len(items) >= 25)

    yard.handler("total")(lambda items, ctx: None)
    yard.register_aggregator("clicks_per_user", stream="clicks", key="user", fold=folds.count())

    with TestClient(create_app(yard, worker=False)) as client:
        client.yard = yard
        yield client


def add(client, base, items, **config):
    body = {"items": items, "max_batch_size": 3, "on_flush": "collect", **config}
    response = client.post(f"/batches/{base}/items", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def walk(client, path, limit, **params):
    """Every page of a list, following next_cursor; the pages' bodies."""
    pages, cursor = [], None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query, follow_redirects=False)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == ENVELOPE
        pages.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


# -- batches ------------------------------------------------------------------------------


def test_get_batches_answers_itself_and_pages_with_a_cursor(client):
    for n in range(7):
        add(client, f"base-{n}", [n])
    add(client, "full", [1, 2, 3])  # closed for its size: flushing

    response = client.get("/batches", follow_redirects=False)
    assert response.status_code == 200  # not a 307 to /batches/
    assert set(response.json()) == ENVELOPE and response.json()["total"] == 8

    pages = walk(client, "/batches", limit=3)
    assert [len(p["data"]) for p in pages] == [3, 3, 2]
    assert {p["total"] for p in pages} == {8}
    ids = [b["batch_id"] for p in pages for b in p["data"]]
    assert ids == ["full::0", *(f"base-{n}::0" for n in reversed(range(7)))]  # newest first

    [flushing] = walk(client, "/batches", limit=10, status="flushing")
    assert flushing["total"] == 1 and flushing["data"][0]["batch_id"] == "full::0"
    assert flushing["data"][0]["item_count"] == 3  # numbers are numbers


def test_a_batch_changed_between_pages_is_listed_once(client):
    for n in range(4):
        add(client, f"base-{n}", [n])
    first = client.get("/batches", params={"limit": 2}).json()
    assert [b["batch_id"] for b in first["data"]] == ["base-3::0", "base-2::0"]
    add(client, "base-0", [10])  # the oldest batch changes; a new base starts
    add(client, "base-9", [9])
    rest = client.get("/batches", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    # pages follow the batches' numbers, not their last change: nothing repeats or jumps
    assert [b["batch_id"] for b in rest["data"]] == ["base-1::0", "base-0::0"]
    assert rest["data"][1]["item_count"] == 2 and rest["total"] == 5


def test_unknown_filters_and_bad_cursors_are_422_naming_the_parameter(client):
    for path in ("/batches", "/iterators"):
        response = client.get(path, params={"status": "bogus"})
        assert response.status_code == 422, path
        assert response.json()["detail"][0]["loc"] == ["query", "status"]
    for cursor in ("not a cursor", "bnVsbA", "LTE"):  # garbage, JSON null, -1
        response = client.get("/batches", params={"cursor": cursor})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
    for limit in (0, 1001):
        response = client.get("/batches/ev/history", params={"limit": limit})
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]


def test_a_base_its_history_and_items_answer_in_the_envelope(client):
    @client.yard.handler("down")
    def down(items, ctx):
        raise ConnectionError("sink is down")

    add(client, "ev", list(range(5)), on_flush="down", max_attempts=1, max_batch_size=5)
    client.yard.run_worker(wait=False)
    [status] = walk(client, "/batches/ev", limit=10)
    assert status["total"] == 1 and status["data"][0]["status"] == "dead"

    items = walk(client, "/batches/ev::0/items", limit=2)
    assert [[i["position"] for i in p["data"]] for p in items] == [[0, 1], [2, 3], [4]]
    assert {p["total"] for p in items} == {None}

    assert client.post("/batches/ev::0/redrive").json()["status"] == "flushing"
    client.yard.run_worker(wait=False)
    history = walk(client, "/batches/ev/history", limit=1)
    assert [p["data"][0]["attempt"] for p in history] == [2, 1]  # the redrive, then the first
    assert [p["data"][0]["reason"] for p in history] == ["redrive", "size"]
    discarded = client.post("/batches/ev::0/discard").json()
    assert discarded == {"batch_id": "ev::0", "item_count": 5, "status": "discarded"}


# -- iterators ----------------------------------------------------------------------------


def test_iterators_start_list_pause_resume_cancel_and_delete(client):
    body = {"batch_size": 10, "get_next_batch": "numbers", "process_batch": "total"}
    started = client.post("/iterators", json={"job_id": "sum", **body, "delay_between_batches": 0})
    assert started.status_code == 201 and started.json()["status"] == "pending"
    assert client.post("/iterators", json={"job_id": "sum", **body}).status_code == 409
    unknown = client.post("/iterators", json={"job_id": "x", **body, "process_batch": "nobody"})
    assert unknown.status_code == 422
    other = client.post("/iterators", json={"job_id": "tenant/7", **body})
    assert other.status_code == 201

    assert client.post("/iterators/tenant/7/pause").json()["status"] == "paused"
    assert client.post("/iterators/tenant/7/resume").json()["status"] == "running"
    assert client.post("/iterators/tenant/7/cancel").json()["status"] == "cancelled"
    client.yard.run_worker(wait=False)

    done = client.get("/iterators/sum").json()
    assert (done["status"], done["processed"], done["batches"]) == ("completed", 25, 3)
    pages = walk(client, "/iterators", limit=1)
    assert sorted(p["data"][0]["job_id"] for p in pages) == ["sum", "tenant/7"]
    [completed] = walk(client, "/iterators", limit=5, status="completed")
    assert [j["job_id"] for j in completed["data"]] == ["sum"]

    assert client.delete("/iterators/tenant/7").status_code == 204
    assert client.get("/iterators/tenant/7").status_code == 404


def test_a_parallel_iterator_over_http_shows_its_slices(client):
    with client.yard.store.transaction() as tx:
        tx.execute("CREATE TABLE wide_src (id INTEGER PRIMARY KEY)")
        tx.executemany("INSERT INTO wide_src (id) VALUES (:id)", [{"id": n} for n in range(30)])
    sql_keyset(client.yard, "wide", table="wide_src", order_by="id", tie_breaker="id")
    body = {"batch_size": 5, "get_next_batch": "wide", "process_batch": "total"}
    wide = {"job_id": "w", **body, "parallelism": 3, "delay_between_batches": 0}
    started = client.post("/iterators", json=wide)
    assert started.status_code == 201 and started.json()["parallelism"] == 3
    client.yard.run_worker(wait=False)
    done = client.get("/iterators/w").json()
    assert (done["status"], done["processed"], done["total"]) == ("completed", 30, 30)
    assert len(done["slices"]) >= 3 and all(s["done"] for s in done["slices"])
    for bad in (0, 65, "2"):
        refused = client.post("/iterators", json={"job_id": "x", **body, "parallelism": bad})
        assert refused.status_code == 422 and "parallelism" in refused.text
    plain = client.post(
        "/iterators", json={"job_id": "y", **body, "get_next_batch": "numbers", "parallelism": 2}
    )
    assert plain.status_code == 422 and "cut into ranges" in plain.text


def test_a_parallel_iterator_over_a_file_over_http(client, tmp_path):
    path = tmp_path / "lines.ndjson"
    path.write_text("".join(f'{{"n": {n}}}\n' for n in range(40)))
    ndjson_file(client.yard, "lines", path)
    body = {"batch_size": 5, "get_next_batch": "lines", "process_batch": "total"}
    started = client.post(
        "/iterators", json={"job_id": "lines", **body, "parallelism": 4, "delay_between_batches": 0}
    )
    assert started.status_code == 201 and started.json()["parallelism"] == 4
    client.yard.run_worker(wait=False)
    done = client.get("/iterators/lines").json()
    assert (done["status"], done["processed"], done["total"]) == ("completed", 40, 40)
    assert len(done["slices"]) >= 4 and all(s["done"] for s in done["slices"])
    assert {"offset", "end", "line"} <= set(done["slices"][0]["cursor"])


# -- events and aggregators ---------------------------------------------------------------


def test_events_are_appended_and_aggregated_with_lag_totals_and_parked_events(client):
    events = [{"user": "ann"}, {"user": "bob"}, {"user": "ann"}, {"no_user": True}]
    appended = client.post("/streams/clicks/events", json={"events": events})
    assert appended.status_code == 200
    assert appended.json()["stream"] == "clicks" and len(appended.json()["event_ids"]) == 4

    [listed] = walk(client, "/aggregators", limit=10)
    assert listed["total"] == 1 and listed["data"][0]["lag_events"] == 4
    assert client.get("/aggregators/clicks_per_user").json()["lag_events"] == 4

    run = client.post("/aggregators/clicks_per_user/run")
    assert run.status_code == 202 and run.json() == {"name": "clicks_per_user", "requested": True}
    client.yard.run_worker(wait=False)
    status = client.get("/aggregators/clicks_per_user").json()
    assert (status["lag_events"], status["parked"]) == (0, 1)

    totals = walk(client, "/aggregators/clicks_per_user/totals", limit=1)
    assert [p["data"][0] for p in totals] == [
        {"key": "ann", "total": 2},
        {"key": "bob", "total": 1},
    ]
    [parked] = walk(client, "/aggregators/clicks_per_user/parked", limit=10)
    assert parked["data"][0]["event"] == {"no_user": True}
    assert "KeyError" in parked["data"][0]["error"]
    retried = client.post("/aggregators/clicks_per_user/parked/retry").json()
    assert retried == {"name": "clicks_per_user", "retried": 0}  # the fold still fails it

    for path in ("/aggregators/nobody", "/aggregators/nobody/totals"):
        assert client.get(path).status_code == 404, path
    assert client.post("/aggregators/nobody/run").status_code == 404


def test_events_are_bounded_and_checked_like_items(client):
    too_many = client.post("/streams/s/events", json={"events": [{}] * 10_001})
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["body", "events"]
    not_object = client.post("/streams/s/events", json={"events": [{"a": 1}, 2]})
    assert not_object.status_code == 422
    assert not_object.json()["detail"][0]["loc"] == ["body", "events", 1]
    inexact = client.post("/streams/s/events", json={"events": [{"a": 1}, {"a": [0, 2**64]}]})
    assert inexact.status_code == 422
    assert inexact.json()["detail"][0]["loc"] == ["body", "events", 1, "a", 1]
    assert client.post("/streams/s/events", json={"events": [{"a": 1}]}).json()["event_ids"]


# -- the bulk-job routes: the seed's shapes, with additions ----------------------------


def test_an_idempotent_replay_says_so(client):
    body = {"type": "import-things", "items": [{"ns": "a", "id": "1"}]}
    first = client.post("/batch", json=body, headers={"Idempotency-Key": "k"})
    again = client.post("/batch", json=body, headers={"Idempotency-Key": "k"})
    assert first.json()["replayed"] is False and "Idempotency-Replayed" not in first.headers
    assert first.json()["message"] == "Batch job created and queued"
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again.json()["replayed"] is True and again.headers["Idempotency-Replayed"] == "true"
    assert "already created" in again.json()["message"]


def test_job_lists_show_a_failed_jobs_first_errors_and_stats_a_numeric_rate(client):
    items = [{"ns": "p", "id": "1"}, {"ns": "p"}, {"ns": "p", "id": "2"}, {"ns": "p"}]
    client.post("/batch", json={"type": "import-things", "items": items})
    client.post("/batch", json={"type": "import-things", "items": [{"ns": "p", "id": "3"}]})
    client.yard.run_worker(wait=False)
    jobs = client.get("/batch").json()["jobs"]
    by_status = {job["status"]: job for job in jobs}
    assert by_status["failed"]["errors"] == [
        {"index": 1, "error": "id: is required"},
        {"index": 3, "error": "id: is required"},
    ]
    assert by_status["completed"]["errors"] == []
    stats = client.get("/stats").json()["stats"]
    assert stats["successRate"] == "50.00%" and stats["successRateValue"] == 0.5


def test_the_schema_names_every_route_family(client):
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {
        "/batches",
        "/batchers",
        "/batchers/{name}",
        "/batchers/{name}/items",
        "/batchers/{name}/history",
        "/handlers",
        "/batches/{batch_id}",
        "/iterators",
        "/iterators/{job_id}",
        "/iterators/{job_id}/pause",
        "/aggregators",
        "/aggregators/{name}",
        "/aggregators/{name}/totals",
        "/aggregators/{name}/parked",
        "/aggregators/{name}/parked/retry",
        "/aggregators/{name}/run",
        "/streams/{stream}/events",
        "/batch",
        "/search/{ns}",
        "/health",
    } <= paths


def test_batchers_over_http(client):
    client.yard.register_batcher(
        "clicks", key="user", max_batch_size=5, on_flush="collect", max_open_keys=2
    )
    items = [{"user": u, "n": n} for n, u in enumerate(["ann", "bob", "ann", "cy"])]
    added = client.post("/batchers/clicks/items", json={"items": items})
    assert added.status_code == 200, added.text
    results = added.json()["results"]
    assert [r["batch_id"] for r in results] == ["clicks:ann::0", "clicks:bob::0", "clicks:cy::0"]
    assert [r["item_count"] for r in results] == [2, 1, 1]
    status = client.get("/batchers/clicks").json()
    assert status["open_keys"] == 2 and status["max_open_keys"] == 2
    assert {k: [b["status"] for b in v] for k, v in status["keys"].items()} == {
        "ann": ["flushing"],  # the oldest, closed early to make room for cy's
        "bob": ["accumulating"],
        "cy": ["accumulating"],
    }
    assert status["keys"]["ann"][0]["flush_reason"] == "max_open_keys"
    missing = client.post("/batchers/nope/items", json={"items": [{"user": "x"}]})
    assert missing.status_code == 404 and "no batcher is registered" in missing.text
    bad = client.post("/batchers/clicks/items", json={"items": [{"user": "x"}, {"u": 1}]})
    assert bad.status_code == 422 and "items[1] has no field 'user'" in bad.text


def test_the_batchers_list_and_a_batchers_history_over_http(client):
    yard = client.yard
    for name in ("views", "clicks", "carts"):
        yard.register_batcher(name, key="user", max_batch_size=2, on_flush="collect")
    items = [{"user": u} for u in ["ann", "ann", "bob", "bob", "cy"]]
    assert client.post("/batchers/clicks/items", json={"items": items}).status_code == 200
    yard.run_worker(wait=False)

    first = client.get("/batchers", params={"limit": 2}).json()
    assert [s["batcher"]["name"] for s in first["data"]] == ["carts", "clicks"]
    assert first["total"] == 3 and first["next_cursor"]
    clicks = first["data"][1]
    assert clicks["batcher"]["key"] == "user" and clicks["batcher"]["max_batch_size"] == 2
    assert clicks["open_keys"] == 1 and clicks["items_waiting"] == 1
    assert clicks["last_hour"]["items_flushed"] == 4 and clicks["last_hour"]["flushes"] == 2
    rest = client.get("/batchers", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [s["batcher"]["name"] for s in rest["data"]] == ["views"] and not rest["next_cursor"]
    assert [s["batcher"]["name"] for s in client.get("/batchers?prefix=c").json()["data"]] == [
        "carts",
        "clicks",
    ]

    history = client.get("/batchers/clicks/history", params={"limit": 1}).json()
    assert len(history["data"]) == 1 and history["next_cursor"]
    more = client.get(
        "/batchers/clicks/history", params={"limit": 1, "cursor": history["next_cursor"]}
    ).json()
    assert {history["data"][0]["batch_id"], more["data"][0]["batch_id"]} == {
        "clicks:ann::0",
        "clicks:bob::0",
    }
    bob = client.get("/batchers/clicks/history", params={"key_prefix": "b"}).json()["data"]
    assert [f["batch_id"] for f in bob] == ["clicks:bob::0"]
    assert client.get("/batchers/nope/history").status_code == 404
