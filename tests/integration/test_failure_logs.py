"""Every failure of user code is logged once with its traceback - WARNING while it will be
retried, ERROR when it is given up - and the books keep the traceback (both backends)."""

from __future__ import annotations

import logging

import orjson
import pytest

from batchyard import ItemFailures, RetryPolicy, folds
from batchyard.failures import MAX_TRACEBACK_CHARS, traceback_text
from batchyard.logs import JsonFormatter, Redactor
from batchyard.signals import RetryLater


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))


def call_the_broken_sink(what):
    raise ConnectionError(f"sink refused {what}")


def failures(caplog):
    """The log records of failures (WARNING and up), from any logger."""
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def run_until_done(yard, clock, rounds=6):
    for _ in range(rounds):
        yard.run_worker(wait=False)
        clock.advance(600)


def test_each_failed_flush_attempt_is_one_warning_and_the_dead_one_an_error(yard, clock, caplog):
    @yard.handler("sink")
    def sink(items, ctx):
        call_the_broken_sink(f"{len(items)} items")

    yard.add_items("ev", [1, 2], max_batch_size=2, on_flush="sink")
    with caplog.at_level(logging.INFO):
        run_until_done(yard, clock)

    records = failures(caplog)
    assert [(r.levelname, r.attempt) for r in records] == [
        ("WARNING", 1),
        ("WARNING", 2),
        ("ERROR", 3),
    ]
    for record in records:
        assert record.name == "batchyard.accumulator" and record.batch_id == "ev::0"
        assert record.handler == "sink" and record.duration_seconds >= 0
        assert record.exc_info[1].args == ("sink refused 2 items",)
        assert "ev::0" in record.getMessage() and "sink refused 2 items" in record.getMessage()
    # with --log-format json the ids are fields and the traceback is there
    entry = orjson.loads(JsonFormatter(Redactor()).format(records[-1]))
    assert (entry["level"], entry["batch_id"], entry["attempt"], entry["final"]) == (
        "error",
        "ev::0",
        3,
        True,
    )
    assert "call_the_broken_sink" in entry["exception"]

    history = yard.get_flush_history("ev")
    assert [r.attempt for r in history] == [3, 2, 1]
    for record in history:
        assert "call_the_broken_sink" in record.traceback
        assert record.traceback.endswith("ConnectionError: sink refused 2 items")


def test_a_partial_failure_is_logged_too(yard, clock, caplog):
    @yard.handler("picky")
    def picky(items, ctx):
        if ctx.attempt == 1:
            raise ItemFailures({0: "too odd"})

    yard.add_items("ev", [1, 2], max_batch_size=2, on_flush="picky")
    with caplog.at_level(logging.INFO):
        run_until_done(yard, clock)
    [record] = failures(caplog)
    assert (record.levelname, record.batch_id, record.attempt) == ("WARNING", "ev::0", 1)
    assert [r.outcome for r in yard.get_flush_history("ev")] == ["completed", "partial"]


def test_a_failed_iterator_step_is_logged_and_its_traceback_kept(yard, clock, caplog):
    yard.handler("one-page")(lambda cursor, size: {"items": [1], "cursor": 1, "done": True})

    @yard.handler("process")
    def process(items, ctx):
        call_the_broken_sink("the page")

    yard.start_iterator(
        "backfill", batch_size=5, get_next_batch="one-page", process_batch="process", max_retries=1
    )
    with caplog.at_level(logging.INFO):
        run_until_done(yard, clock)

    records = failures(caplog)
    assert [(r.levelname, r.attempt) for r in records] == [("WARNING", 1), ("ERROR", 2)]
    for record in records:
        assert (record.name, record.job_id, record.handler) == (
            "batchyard.iterator",
            "backfill",
            "process",
        )
        assert record.exc_info is not None
    status = yard.get_iterator_status("backfill")
    assert status.status == "failed" and "call_the_broken_sink" in status.last_traceback
    assert status.last_error == "ConnectionError: sink refused the page"


def test_a_failed_scheduled_aggregator_run_is_logged_once(yard, clock, caplog):
    @yard.handler("bad-apply")
    def bad_apply(deltas, tx):
        call_the_broken_sink("the deltas")

    yard.register_aggregator(
        "per-key", stream="clicks", key="k", fold=folds.count(), apply="bad-apply", every=10
    )
    yard.runtime.kinds.worker_started()  # what a worker does on start: schedules the runs
    yard.append_events("clicks", [{"k": "a"}])
    clock.advance(10)
    with caplog.at_level(logging.INFO):
        yard.run_worker(wait=False)
    [record] = failures(caplog)
    assert (record.levelname, record.aggregator) == ("WARNING", "per-key")
    assert "call_the_broken_sink" in "".join(logging.Formatter().formatException(record.exc_info))
    assert "sink refused the deltas" in yard.get_aggregator_status("per-key").last_error


def test_a_failed_bulk_job_chunk_is_logged_per_attempt(yard, clock, caplog):
    @yard.transform("flaky")
    def flaky(item):
        raise RetryLater("the model server is busy")

    job_id = yard.create_batch_job(
        "transform-data", [{"text": "a"}], options={"transform": "flaky"}
    )
    with caplog.at_level(logging.INFO):
        run_until_done(yard, clock)
    records = failures(caplog)
    assert [r.levelname for r in records][-1] == "ERROR"
    assert {r.levelname for r in records[:-1]} == {"WARNING"} and len(records) >= 2
    assert [r.attempt for r in records] == list(range(1, len(records) + 1))
    assert all(r.job_id == job_id and r.task_id for r in records)
    assert yard.get_batch_job(job_id).status == "failed"


def test_a_long_traceback_keeps_its_head_and_its_end():
    # two functions in turn: Python folds only repeats of one same frame
    def ping(n):
        if n == 0:
            call_the_broken_sink("deep down")
        pong(n - 1)

    def pong(n):
        ping(n - 1)

    try:
        ping(300)
    except ConnectionError as exc:
        text = traceback_text(exc)
    assert len(text) <= MAX_TRACEBACK_CHARS
    assert text.startswith("Traceback (most recent call last):")
    assert text.endswith("ConnectionError: sink refused deep down")
    assert "call_the_broken_sink" in text and "\n  ...\n" in text
