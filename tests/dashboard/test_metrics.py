"""/metrics: parses as Prometheus text, its gauges match the store, its counters count."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from batchyard import RetryPolicy, folds
from batchyard.http import create_app


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(max_attempts=2, base_delay=0, jitter=0))
    yard.handler("ok")(lambda items, ctx: None)

    @yard.handler("boom")
    def boom(items, ctx):
        raise RuntimeError("no sink")

    yard.handler("numbers")(lambda cursor, size: {"items": [1], "cursor": 1, "done": False})
    return yard


def test_gauges_match_the_store(yard, clock):
    client = TestClient(create_app(yard, worker=False))
    yard.add_items("dead", [1], max_batch_size=5, on_flush="boom")
    yard.flush("dead")
    yard.run_worker(wait=False)  # fails, retried at once, then dead
    clock.advance(100)
    yard.add_items("a", [1, 2, 3], max_batch_size=10, on_flush="ok")
    clock.advance(42)
    yard.add_items("b", list(range(5)), max_batch_size=2, on_flush="ok")  # 2 closed by size
    yard.register_aggregator("count", stream="s", key="k", fold=folds.count())
    yard.append_events("s", [{"k": 1}] * 4)
    yard.run_aggregator("count")
    yard.append_events("s", [{"k": 2}] * 3)
    yard.start_iterator("job", batch_size=1, get_next_batch="numbers", process_batch="ok")
    yard.pause_iterator("job")
    yard.create_batch_job("import-things", [{"ns": "n", "id": "1"}, {"ns": "n"}])  # pending
    yard.cancel_batch_job(yard.create_batch_job("import-things", [{"ns": "n", "id": "2"}]))

    samples = scrape(client)

    assert value(samples, "batchyard_store_up") == 1
    batches = {b.batch_id: b for b in yard.list_batches()}
    for status in ("accumulating", "flushing", "dead"):
        expected = sum(b.pending_count for b in batches.values() if b.status == status)
        assert value(samples, "batchyard_pending_items", status=status) == expected
        assert value(samples, "batchyard_batches", status=status) == sum(
            1 for b in batches.values() if b.status == status
        )
    assert value(samples, "batchyard_pending_items", status="accumulating") == 3 + 1
    assert value(samples, "batchyard_pending_items", status="flushing") == 4
    assert value(samples, "batchyard_pending_items", status="dead") == 1
    # the oldest batch still to deliver is "a::0", created 42 s before now
    assert value(samples, "batchyard_oldest_pending_age_seconds") == pytest.approx(42)
    assert value(samples, "batchyard_oldest_due_task_age_seconds") == pytest.approx(0)

    with yard.store.transaction(write=False) as tx:
        tasks = tx.all(
            "SELECT kind, state, COUNT(*) AS n FROM batchyard_tasks GROUP BY kind, state"
        )
    assert tasks, "the size flushes are queued"
    for row in tasks:
        assert value(samples, "batchyard_tasks", kind=row["kind"], state=row["state"]) == row["n"]
    assert value(samples, "batchyard_tasks", kind="accumulator.flush", state="queued") == 2
    dead = yard.runtime.tasks.dead_tasks()
    assert value(samples, "batchyard_dead_letters", kind="accumulator.flush") == len(dead) == 1

    assert value(samples, "batchyard_iterator_jobs", status="paused") == 1
    assert value(samples, "batchyard_bulk_jobs", status="pending") == 1
    assert value(samples, "batchyard_bulk_jobs", status="cancelled") == 1
    assert value(samples, "batchyard_bulk_items_left") == 1  # one valid item, one failed
    status = yard.get_aggregator_status("count")
    # on PostgreSQL a transaction open elsewhere on the server may hold the run back (the
    # safe high-water mark): the lag is then larger, and the gauge must say so too
    assert status.lag_events == 7 - status.events_folded
    if yard.store.dialect == "sqlite":
        assert status.lag_events == 3
    assert (
        value(samples, "batchyard_aggregator_lag_events", aggregator="count") == status.lag_events
    )
    assert value(samples, "batchyard_aggregator_lag_seconds", aggregator="count") == pytest.approx(
        status.lag_seconds
    )

    # the gauges follow the store, scrape after scrape
    yard.run_worker(wait=False)
    yard.run_aggregator("count")
    samples = scrape(client)
    assert value(samples, "batchyard_pending_items", status="flushing") == 0
    assert (
        value(samples, "batchyard_aggregator_lag_events", aggregator="count")
        == yard.get_aggregator_status("count").lag_events
    )
    assert value(samples, "batchyard_tasks", kind="accumulator.flush", state="queued") == 0


def test_counters_count_flushes_items_and_retries(yard):
    client = TestClient(create_app(yard, worker=False))
    before = scrape(client)
    yard.add_items("ev", list(range(5)), max_batch_size=2, on_flush="ok")  # 2 size flushes
    yard.flush("ev")  # the fifth item, by hand
    yard.add_items("bad", [1], max_batch_size=9, on_flush="boom")
    yard.flush("bad")
    yard.run_worker(wait=False)
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("batchyard_flushes_total", reason="size", outcome="completed") == 2
    assert delta("batchyard_flushes_total", reason="manual", outcome="completed") == 1
    assert delta("batchyard_flushes_total", reason="manual", outcome="failed") == 2
    assert delta("batchyard_flushed_items_total", reason="size") == 4
    assert delta("batchyard_flushed_items_total", reason="manual") == 1
    assert delta("batchyard_flush_duration_seconds_count", outcome="completed") == 3
    assert delta("batchyard_task_retries_total", kind="accumulator.flush") == 1
    assert delta("batchyard_task_dead_letters_total", kind="accumulator.flush") == 1
    assert delta("batchyard_task_duration_seconds_count", kind="accumulator.flush") == 5


def test_producer_writes_are_timed(yard):
    client = TestClient(create_app(yard, worker=False))
    before = value(scrape(client), "batchyard_producer_write_duration_seconds_count")
    with yard.producer() as producer:
        producer.add("p", [1, 2], max_batch_size=10, on_flush="ok")
        producer.flush()
    after = value(scrape(client), "batchyard_producer_write_duration_seconds_count")
    assert after - before >= 1


def test_worker_heartbeats_are_gauged(make_yard):
    yard = make_yard()
    client = TestClient(create_app(yard, worker=False))
    worker = yard.worker(lease=3.0, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not (
            ages := [
                v
                for (name, labels), v in scrape(client).items()
                if name == "batchyard_worker_heartbeat_age_seconds"
            ]
        ):
            assert time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.05)
        assert len(ages) == 1 and 0 <= ages[0] < 5
    finally:
        worker.stop()
        thread.join(10)
    assert not any(name == "batchyard_worker_heartbeat_age_seconds" for name, _ in scrape(client))


def test_metrics_need_a_token_when_the_api_has_tokens(make_yard):
    client = TestClient(create_app(make_yard(), worker=False, tokens=["s3cret"]))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200 and "batchyard_store_up 1.0" in response.text
