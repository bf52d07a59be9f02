"""A bulk job's throttle holds its chunks for as long as it asks, on both stores, with the
manual clock: a wait is not a failed attempt, and the job's record counts it."""

from __future__ import annotations

import pytest

from batchyard import HandlerNotFound, RetryPolicy


@pytest.fixture
def jobs_yard(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(base_delay=1.0, max_delay=1.0, jitter=0.0))
    yard.transform("double")(lambda item: item["n"] * 2)
    return yard


def lagging_throttle(yard):
    """A throttle that asks for 5 s while `lagging[0]` holds; the job ids it was asked for."""
    lagging, asked = [True], []

    @yard.handler("replica-lag")
    def replica_lag(job_id):
        asked.append(job_id)
        return 5.0 if lagging[0] else None

    return lagging, asked


@pytest.mark.parametrize(
    ("type", "items", "options"),
    [
        # user code: each chunk runs alone
        ("transform-data", [{"n": n} for n in range(150)], {"transform": "double"}),
        # all in the database: a job's chunks are claimed and run in groups
        ("import-things", [{"ns": "t", "id": f"t{n}"} for n in range(250)], None),
    ],
)
def test_a_throttle_holds_every_chunk_for_as_long_as_it_asks(
    jobs_yard, clock, type, items, options
):
    lagging, asked = lagging_throttle(jobs_yard)
    job_id = jobs_yard.create_batch_job(type, items, options=options, throttle="replica-lag")
    jobs_yard.run_worker(wait=False)
    job = jobs_yard.get_batch_job(job_id)
    assert job.processed == 0 and job.status == "pending" and asked
    assert job.throttled_seconds == 5.0 * len(asked)  # each held chunk's wait, summed
    lagging[0] = False
    clock.advance(4.9)
    jobs_yard.run_worker(wait=False)
    assert jobs_yard.get_batch_job(job_id).processed == 0  # not due yet
    clock.advance(0.1)
    jobs_yard.run_worker(wait=False)
    job = jobs_yard.get_batch_job(job_id)
    assert job.status == "completed" and job.processed == len(items) and job.failed == 0
    assert not jobs_yard.list_dead_chunks(job_id)  # the waits were not failed attempts


def test_a_throttle_that_answers_nonsense_fails_the_chunk_naming_it(jobs_yard, clock):
    jobs_yard.handler("confused")(lambda job_id: "later")
    job_id = jobs_yard.create_batch_job(
        "transform-data", [{"n": 1}], options={"transform": "double"}, throttle="confused"
    )
    for _ in range(6):
        jobs_yard.run_worker(wait=False)
        clock.advance(2)
    [dead] = jobs_yard.list_dead_chunks(job_id)
    assert "throttle handler 'confused'" in dead.error


def test_a_throttle_must_be_a_registered_handler(jobs_yard):
    with pytest.raises(HandlerNotFound) as caught:
        jobs_yard.create_batch_job(
            "transform-data", [{"n": 1}], options={"transform": "double"}, throttle="nope"
        )
    assert caught.value.field == "throttle"


def test_the_retry_of_failed_items_keeps_the_throttle(jobs_yard, clock):
    lagging, _ = lagging_throttle(jobs_yard)
    lagging[0] = False

    @jobs_yard.transform("odd-fails")
    def odd_fails(item):
        if item["n"] % 2:
            raise ValueError("odd")
        return item["n"]

    job_id = jobs_yard.create_batch_job(
        "transform-data",
        [{"n": n} for n in range(4)],
        options={"transform": "odd-fails"},
        throttle="replica-lag",
    )
    jobs_yard.run_worker(wait=False)
    lagging[0] = True
    retry_id = jobs_yard.retry_failed_items(job_id)
    jobs_yard.run_worker(wait=False)
    assert jobs_yard.get_batch_job(retry_id).throttled_seconds == 5.0
