"""Bulk jobs on both stores: validation, every job type, progress books, retries and dead
letters, cancel, idempotent creation."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from batchyard import Conflict, InvalidInput, LeaseLost, RetryPolicy
from batchyard.signals import RetryLater


def thing(n, **extra):
    return {
        "ns": "products",
        "id": f"p{n}",
        "type": "Product",
        "data": {"name": f"widget {n}", "price": n},
        "content": f"widget number {n}",
        "visibility": "public",
        **extra,
    }


def stored(yard, ns="products"):
    with yard.store.transaction(write=False) as tx:
        return {
            row["id"]: row
            for row in tx.all("SELECT * FROM batchyard_things WHERE ns = :ns", {"ns": ns})
        }


def test_import_things_stores_valid_items_and_names_each_invalid_one(yard):
    items = [thing(n) for n in range(250)]
    items[7] = {"ns": "products", "type": "Product"}  # no id
    items[42] = {**thing(42), "data": ["not", "an", "object"]}
    items[99] = {**thing(99), "colour": "red"}  # unknown field
    items[120] = "a string"
    job_id = yard.create_batch_job("import-things", items)

    before = yard.get_batch_job(job_id)
    assert before.status == "pending" and before.total == 250 and before.failed == 4
    yard.run_worker(wait=False)
    job = yard.get_batch_job(job_id)
    assert (job.status, job.processed, job.failed) == ("failed", 246, 4)  # any failed item
    assert [(e.index, e.error) for e in job.errors] == [
        (7, "id: is required"),
        (42, "data: must be an object, not an array"),
        (99, "colour: unknown field (expected content, data, id, ns, type, visibility)"),
        (120, "item: must be an object, not a string"),
    ]
    rows = stored(yard)
    assert len(rows) == 246 and "p7" not in rows
    assert rows["p3"]["content"] == "widget number 3" and rows["p3"]["visibility"] == "public"
    assert job.completed_at is not None and job.completed_at >= job.created_at


def test_a_replayed_import_updates_in_place_and_never_duplicates(yard):
    first = yard.create_batch_job("import-things", [thing(n) for n in range(150)])
    yard.run_worker(wait=False)
    created = stored(yard)["p1"]["created_at"]
    second = yard.create_batch_job("import-things", [thing(n, content="new") for n in range(150)])
    yard.run_worker(wait=False)
    assert yard.get_batch_job(first).status == yard.get_batch_job(second).status == "completed"
    rows = stored(yard)
    assert len(rows) == 150 and rows["p1"]["content"] == "new"
    assert rows["p1"]["created_at"] == created and rows["p1"]["updated_at"] >= created


def test_import_relationships(yard):
    items = [
        {
            "ns": "rels",
            "id": f"r{n}",
            "type": "hasCategory",
            "fromNs": "products",
            "fromId": f"p{n}",
            "toNs": "categories",
            "toId": "c1",
            "data": {"w": n},
        }
        for n in range(3)
    ] + [{"ns": "rels", "id": "bad", "type": "x", "fromNs": "a"}]
    job_id = yard.create_batch_job("import-relationships", items)
    yard.run_worker(wait=False)
    job = yard.get_batch_job(job_id)
    assert (job.processed, job.failed) == (3, 1)
    assert job.errors[0].index == 3 and job.errors[0].error == "fromId: is required"
    with yard.store.transaction(write=False) as tx:
        rows = tx.all("SELECT * FROM batchyard_relationships ORDER BY id")
    assert [(r["id"], r["from_id"], r["to_id"]) for r in rows] == [
        ("r0", "p0", "c1"),
        ("r1", "p1", "c1"),
        ("r2", "p2", "c1"),
    ]


def test_export_things_by_reference_and_by_namespace(yard):
    yard.create_batch_job("import-things", [thing(n) for n in range(5)])
    yard.run_worker(wait=False)
    by_ref = yard.create_batch_job(
        "export-things", [{"ns": "products", "id": "p2"}, {"ns": "products", "id": "nope"}]
    )
    by_ns = yard.create_batch_job("export-things", input={"ns": "products"})
    yard.run_worker(wait=False)
    job = yard.get_batch_job(by_ref)
    assert [r["id"] for r in job.results] == ["p2"] and job.results[0]["data"]["price"] == 2
    assert job.errors[0].index == 1 and job.errors[0].error == "not found: products/nope"
    whole = yard.get_batch_job(by_ns)
    assert whole.status == "completed" and whole.total == 5
    assert sorted(r["id"] for r in whole.results) == [f"p{n}" for n in range(5)]


def test_transform_data_keeps_outputs_or_writes_them_to_a_namespace(yard):
    @yard.transform("shout")
    def shout(item):
        if item["data"].get("boom"):
            raise ValueError("cannot shout this")
        return {"id": item["data"]["original"], "data": {"loud": item["data"]["original"].upper()}}

    items = [
        {"data": {"original": "value"}},
        {"data": {"boom": True}},
        {"data": {"original": "other"}},
    ]
    kept = yard.create_batch_job("transform-data", items, options={"transform": "shout"})
    written = yard.create_batch_job(
        "transform-data", items, options={"transform": "shout", "outputNs": "loud"}
    )
    yard.run_worker(wait=False)
    job = yard.get_batch_job(kept)
    assert job.results == [
        {"id": "value", "data": {"loud": "VALUE"}},
        {"id": "other", "data": {"loud": "OTHER"}},
    ]
    assert [(e.index, e.error) for e in job.errors] == [(1, "ValueError: cannot shout this")]
    assert yard.get_batch_job(written).results == []
    assert sorted(stored(yard, "loud")) == ["other", "value"]


def test_requests_wrong_as_a_whole_are_refused_with_the_reason(yard):
    with pytest.raises(InvalidInput, match="type must be one of"):
        yard.create_batch_job("import-everything", [thing(1)])
    with pytest.raises(InvalidInput, match="items must be a non-empty list"):
        yard.create_batch_job("import-things", [])
    with pytest.raises(InvalidInput, match="no transform registered as 'nope'"):
        yard.create_batch_job("transform-data", [{}], options={"transform": "nope"})
    yard._jobs.max_items = 10
    with pytest.raises(InvalidInput, match="11 is over the limit of 10"):
        yard.create_batch_job("import-things", [thing(n) for n in range(11)])
    assert yard.list_batch_jobs() == []


def test_errors_and_results_are_paged(yard):
    job_id = yard.create_batch_job("import-things", [{"ns": "x"}] * 250)
    first = yard.get_batch_job_errors(job_id, limit=100)
    rest = yard.get_batch_job_errors(job_id, after=first[-1].index, limit=1000)
    assert [e.index for e in first + rest] == list(range(250))
    assert len(yard.get_batch_job(job_id).errors) == 100


def test_a_chunk_that_keeps_failing_is_dead_after_three_retries_and_redrive_completes_it(
    make_yard, clock
):
    yard = make_yard(clock=clock, retry=RetryPolicy(jitter=0.0))
    broken = [True]
    calls = []

    @yard.transform("flaky")
    def flaky(item):
        calls.append(item["n"])
        if broken[0] and item["n"] >= 150:
            raise RetryLater("the downstream service is down")
        return item["n"]

    job_id = yard.create_batch_job(
        "transform-data", [{"n": n} for n in range(200)], options={"transform": "flaky"}
    )
    for _ in range(4):  # the first try and three retries, each after its backoff
        yard.run_worker(wait=False)
        clock.advance(600)
    job = yard.get_batch_job(job_id)
    dead = yard.list_dead_chunks(job_id)
    assert [(d.chunk, d.attempts, d.items) for d in dead] == [(1, 4, 100)]
    assert "the downstream service is down" in dead[0].error
    assert (job.status, job.processed, job.failed, job.dead_letters) == ("failed", 150, 0, 1)

    broken[0] = False
    assert yard.redrive_chunk(dead[0].task_id).status == "processing"
    yard.run_worker(wait=False)
    job = yard.get_batch_job(job_id)
    assert (job.status, job.processed, job.failed, job.dead_letters) == ("completed", 200, 0, 0)
    assert sorted(r.result for r in yard.get_batch_job_results(job_id, limit=1000)) == list(
        range(200)
    )
    assert calls.count(120) == 1 and calls.count(149) == 1  # committed items never redone


def test_a_chunk_past_its_time_limit_goes_on_from_its_last_commit(make_yard, monkeypatch):
    yard = make_yard(retry=RetryPolicy(base_delay=0.01, jitter=0.0))
    yard._jobs.chunks.time_limit = 0.3
    monkeypatch.setattr("batchyard.bulk.chunks.PROGRESS_EVERY", 0.1)
    calls = []

    @yard.transform("slow")
    def slow(item):
        calls.append(item)
        time.sleep(0.05)
        return item

    job_id = yard.create_batch_job("transform-data", list(range(40)), options={"transform": "slow"})
    deadline = time.monotonic() + 30
    while yard.get_batch_job(job_id).status != "completed":
        assert time.monotonic() < deadline
        yard.run_worker(wait=False)
        time.sleep(0.02)
    job = yard.get_batch_job(job_id)
    assert (job.processed, job.failed) == (40, 0)
    assert sorted(calls) == list(range(40))  # each item once, across several claims
    assert [r.result for r in yard.get_batch_job_results(job_id)] == list(range(40))


def test_cancel_stops_new_chunks_and_is_kept(yard):
    ran = []

    @yard.transform("record")
    def record(item):
        ran.append(item)
        return item

    job_id = yard.create_batch_job(
        "transform-data", list(range(500)), options={"transform": "record"}
    )
    assert yard.cancel_batch_job(job_id).status == "cancelled"
    assert yard.cancel_batch_job(job_id).status == "cancelled"  # twice is not an error
    yard.run_worker(wait=False)
    job = yard.get_batch_job(job_id)
    assert job.status == "cancelled" and job.processed == 0 and ran == []
    done = yard.create_batch_job("transform-data", [1], options={"transform": "record"})
    yard.run_worker(wait=False)
    with pytest.raises(Conflict, match="already completed"):
        yard.cancel_batch_job(done)


def test_cancel_while_a_chunk_runs_stops_it_at_its_next_commit(yard, monkeypatch):
    monkeypatch.setattr("batchyard.bulk.chunks.PROGRESS_EVERY", 0.05)
    started = threading.Event()

    @yard.transform("slow")
    def slow(item):
        started.set()
        time.sleep(0.02)
        return item

    job_id = yard.create_batch_job(
        "transform-data", list(range(100)), options={"transform": "slow"}
    )
    runner = threading.Thread(target=lambda: yard.run_worker(wait=False))
    runner.start()
    started.wait(10)
    yard.cancel_batch_job(job_id)
    at_cancel = yard.get_batch_job(job_id).processed
    runner.join()
    job = yard.get_batch_job(job_id)
    assert job.status == "cancelled" and job.processed == at_cancel < 100


def test_concurrent_creations_with_one_request_id_make_one_job(yard):
    items = [thing(n) for n in range(300)]
    ids, errors = [], []

    def create():
        try:
            ids.append(yard.create_batch_job("import-things", items, request_id="req-1"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(ids)) == 1 and len(ids) == 20
    assert len(yard.list_batch_jobs()) == 1
    with pytest.raises(InvalidInput, match="used for a different request"):
        yard.create_batch_job("import-things", items[:1], request_id="req-1")


def test_stats_count_jobs_by_status_with_the_success_rate(yard):
    for items in ([thing(1)], [thing(2)], [{"ns": "x"}]):
        yard.create_batch_job("import-things", items)
    yard.run_worker(wait=False)
    yard.create_batch_job("import-things", [thing(3)])
    stats = yard.get_stats()
    assert (stats.total, stats.pending, stats.completed, stats.failed) == (4, 1, 2, 1)
    assert stats.success_rate == "66.67%"


def test_a_request_id_with_items_orjson_cannot_encode_still_works(yard):
    items = [{"ns": "n", "id": "a", "data": {"big": 2**70}}, {"ns": "n", "id": "b"}]
    job_id = yard.create_batch_job("import-things", items, request_id="big")
    assert yard.create_batch_job("import-things", items, request_id="big") == job_id
    yard.run_worker(wait=False)
    job = yard.get_batch_job(job_id)
    assert (job.processed, job.failed) == (1, 1)
    assert job.errors[0].error.startswith("data.big: integer")


def test_a_number_past_64_bits_is_bad_input_or_harmless(yard):
    job_id = yard.create_batch_job("import-things", [{"ns": "n"}])
    if yard.store.dialect == "sqlite":  # its driver refuses the number: the caller's error
        with pytest.raises(InvalidInput, match="64-bit"):
            yard.get_batch_job_errors(job_id, after=2**70)
    else:  # PostgreSQL compares it as a numeric: nothing comes after it
        assert yard.get_batch_job_errors(job_id, after=2**70) == []


def refuse_thing(yard, thing_id):
    """Make the database refuse to store one thing (a trigger), so that its chunk fails in
    the store itself."""
    with yard.store.transaction() as tx:
        if yard.store.dialect == "sqlite":
            tx.connection.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON batchyard_things "
                f"WHEN NEW.id = '{thing_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            tx.connection.execute(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.id = '{thing_id}' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            tx.connection.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON batchyard_things "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )


def test_a_chunk_that_fails_in_a_group_dies_alone_and_the_others_commit(make_yard, clock, caplog):
    yard = make_yard(clock=clock, retry=RetryPolicy(jitter=0.0))
    refuse_thing(yard, "p250")
    job_id = yard.create_batch_job("import-things", [thing(n) for n in range(500)])
    for _ in range(4):  # the first try and three retries, each after its backoff
        yard.run_worker(wait=False)
        clock.advance(600)
    assert "a group of 5 job.chunk tasks failed" in caplog.text  # they were tried together
    dead = yard.list_dead_chunks(job_id)
    assert [(d.chunk, d.attempts, d.items) for d in dead] == [(2, 4, 100)]
    assert "refused" in dead[0].error
    job = yard.get_batch_job(job_id)
    assert (job.status, job.processed, job.failed, job.dead_letters) == ("failed", 400, 0, 1)
    rows = stored(yard)
    assert len(rows) == 400 and not {f"p{n}" for n in range(200, 300)} & rows.keys()


def test_a_stale_token_in_a_group_refuses_the_whole_groups_writes(make_yard, clock):
    yard = make_yard(clock=clock)
    job_id = yard.create_batch_job("import-things", [thing(n) for n in range(300)])
    tasks = yard.runtime.tasks.claim("w1", 3, lease=5, now=clock.time())
    clock.advance(6)
    [taken] = yard.runtime.tasks.claim("w2", 1, lease=5, now=clock.time())  # chunk 0, taken over
    assert taken.payload["chunk"] == 0
    with pytest.raises(LeaseLost):
        yard._jobs.chunks.run_chunks(tasks)
    assert stored(yard) == {} and yard.get_batch_job(job_id).processed == 0

    yard.worker()._execute_unit(tasks)  # the chunks still held commit alone; chunk 0 not
    assert yard.get_batch_job(job_id).processed == 200 and len(stored(yard)) == 200
    clock.advance(6)  # w2 never finished chunk 0: it is rescued, and counted once
    yard.run_worker(wait=False)
    job = yard.get_batch_job(job_id)
    assert (job.status, job.processed, job.failed) == ("completed", 300, 0)
    assert len(stored(yard)) == 300


def chunk_items_left(yard, job_id):
    with yard.store.transaction(write=False) as tx:
        return tx.one(
            "SELECT COUNT(*) AS n FROM batchyard_job_chunks WHERE job_id = :id "
            "AND items IS NOT NULL",
            {"id": job_id},
        )["n"]


def test_a_chunks_items_are_kept_until_it_is_done_or_its_job_cancelled(yard):
    done = yard.create_batch_job("import-things", [thing(n) for n in range(250)])
    cancelled = yard.create_batch_job("import-things", [thing(n) for n in range(250)])
    assert chunk_items_left(yard, done) == chunk_items_left(yard, cancelled) == 3
    yard.cancel_batch_job(cancelled)
    assert chunk_items_left(yard, cancelled) == 0
    yard.run_worker(wait=False)
    assert yard.get_batch_job(done).processed == 250 and chunk_items_left(yard, done) == 0


def test_a_chunk_queued_with_its_items_in_the_payload_still_runs(yard):
    # how chunks were queued before their items moved to the chunks' rows
    job_id = yard.create_batch_job("import-things", [thing(n) for n in range(150)])
    with yard.store.transaction() as tx:
        for row in tx.all(
            "SELECT chunk, items FROM batchyard_job_chunks WHERE job_id = :id", {"id": job_id}
        ):
            key = f"job:{job_id}:{row['chunk']}"
            payload = orjson.loads(
                tx.one("SELECT payload FROM batchyard_tasks WHERE key = :key", {"key": key})[
                    "payload"
                ]
            )
            payload = {**payload, "items": orjson.loads(row["items"])}
            del payload["size"]
            tx.execute(
                "UPDATE batchyard_tasks SET payload = :payload WHERE key = :key",
                {"payload": orjson.dumps(payload).decode(), "key": key},
            )
        tx.execute(
            "UPDATE batchyard_job_chunks SET items = NULL WHERE job_id = :id", {"id": job_id}
        )
    yard.run_worker(wait=False)
    job = yard.get_batch_job(job_id)
    assert (job.status, job.processed) == ("completed", 150) and len(stored(yard)) == 150


def test_retry_failed_items_makes_one_job_of_exactly_the_items_that_failed(yard):
    broken = {7, 130, 199}
    fixed = [False]

    @yard.transform("picky")
    def picky(item):
        if item["n"] in broken and not fixed[0]:
            raise ValueError(f"the sink refused {item['n']}")
        return item["n"] * 2

    items = [{"n": n} for n in range(200)] + [float("nan")]  # refused: NaN is not JSON
    parent = yard.create_batch_job("transform-data", items, options={"transform": "picky"})
    with pytest.raises(Conflict, match="is pending"):
        yard.retry_failed_items(parent)  # not before the job has ended
    yard.run_worker(wait=False)
    assert yard.get_batch_job(parent).failed == 4  # three refused, one invalid

    fixed[0] = True
    retry = yard.retry_failed_items(parent)
    assert yard.retry_failed_items(parent) == retry  # once per parent
    child = yard.get_batch_job(retry)
    # the items that failed while processing, as they were accepted (the refused one would
    # only be refused again)
    assert child.total == 3 and child.parent_job_id == parent
    assert yard.get_batch_job(parent).retry_job_ids == [retry]
    listed = {job.id: job for job in yard.list_batch_jobs()}
    assert listed[parent].retry_job_ids == [retry] and listed[retry].parent_job_id == parent
    yard.run_worker(wait=False)
    child = yard.get_batch_job(retry)
    assert child.status == "completed" and sorted(child.results) == [14, 260, 398]
    with pytest.raises(Conflict, match="no failed items"):
        yard.retry_failed_items(retry)


def test_retry_failed_items_takes_the_items_of_dead_chunks(make_yard, clock):
    yard = make_yard(clock=clock)
    down = [True]

    @yard.transform("sink")
    def sink(item):
        if down[0]:
            raise RetryLater("the sink is down")
        return item

    parent = yard.create_batch_job(
        "transform-data", list(range(150)), options={"transform": "sink"}
    )
    for _ in range(6):  # every attempt of both chunks: then they are dead
        yard.run_worker(wait=False)
        clock.advance(120)
    job = yard.get_batch_job(parent)
    assert job.status == "failed" and job.dead_letters == 2
    down[0] = False
    retry = yard.retry_failed_items(parent)
    # the retry took the dead chunks' items: they cannot be redriven into a second delivery
    assert yard.list_dead_chunks(parent) == []
    yard.run_worker(wait=False)
    assert yard.get_batch_job(retry).status == "completed"
    results = yard.get_batch_job_results(retry, limit=1000)
    assert sorted(r.result for r in results) == list(range(150))
