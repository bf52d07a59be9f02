"""The table iterator on both stores, with a manual clock."""

from __future__ import annotations

import pytest

from batchyard import Conflict, HandlerNotFound, InvalidInput, NotFound, Page

ROWS = list(range(95))


@pytest.fixture
def yard(make_yard, clock):
    yard = make_yard(clock=clock)
    yard.seen = []
    yard.completed = []
    yard.fail_times = {"n": 0}

    @yard.handler("source")
    def source(cursor, batch_size):
        start = 0 if cursor is None else cursor
        items = ROWS[start : start + batch_size]
        return {
            "items": items,
            "cursor": start + len(items),
            "done": start + len(items) >= len(ROWS),
            "total": len(ROWS),
        }

    @yard.handler("process")
    def process(items, ctx):
        if yard.fail_times["n"]:
            yard.fail_times["n"] -= 1
            raise ConnectionError("sink down")
        yard.seen.append((ctx.page, ctx.attempt, ctx.idempotency_key, list(items)))

    @yard.handler("done")
    def done(job_id, processed):
        yard.completed.append((job_id, processed))

    return yard


def start(yard, job="job", **options):
    options = {"delay_between_batches": 0, **options}
    return yard.start_iterator(
        job,
        batch_size=10,
        get_next_batch="source",
        process_batch="process",
        on_complete="done",
        **options,
    )


def processed_items(yard):
    return [i for _, _, _, items in yard.seen for i in items]


def test_a_job_pages_through_the_source_and_completes_once(yard):
    status = start(yard)
    assert status.status == "pending" and status.processed == 0
    yard.run_worker(wait=False)
    assert processed_items(yard) == ROWS
    status = yard.get_iterator_status("job")
    assert status.status == "completed" and status.processed == 95 and status.batches == 10
    assert status.cursor == 95 and status.total == 95 and status.eta_seconds is None
    assert yard.completed == [("job", 95)]
    assert [b for b, _, _, _ in yard.seen] == list(range(10))


def test_starting_an_existing_id_is_a_clear_error(yard):
    start(yard)
    with pytest.raises(Conflict, match="already exists"):
        start(yard)


def test_bad_arguments(yard):
    with pytest.raises(InvalidInput, match="batch_size"):
        yard.start_iterator("j", batch_size=0, get_next_batch="source", process_batch="process")
    with pytest.raises(HandlerNotFound, match="get_next_batch"):
        yard.start_iterator("j", batch_size=5, get_next_batch="nope", process_batch="process")
    with pytest.raises(NotFound):
        yard.get_iterator_status("j")


def test_pause_and_resume_go_on_from_the_checkpoint(yard, clock):
    start(yard, delay_between_batches=1)
    yard.run_worker(wait=False)  # first batch; the next is a second away
    clock.advance(1)
    yard.run_worker(wait=False)
    assert yard.pause_iterator("job").status == "paused"
    assert yard.pause_iterator("job").status == "paused"  # twice is not an error
    clock.advance(100)
    yard.run_worker(wait=False)
    assert processed_items(yard) == ROWS[:20]
    assert yard.resume_iterator("job").status == "running"
    assert yard.resume_iterator("job").status == "running"
    for _ in range(20):
        clock.advance(1)
        yard.run_worker(wait=False)
    assert processed_items(yard) == ROWS
    assert yard.get_iterator_status("job").status == "completed"


def test_a_step_in_flight_during_pause_and_resume_cannot_fork_a_second_chain(yard):
    start(yard)
    [stale] = yard.runtime.tasks.claim("old-runner", 1, lease=30, now=yard.clock.time())
    yard.pause_iterator("job")
    yard.resume_iterator("job")
    yard._iterators.steps.run_step(stale)  # the old runner finishes its step late
    yard.run_worker(wait=False)
    assert processed_items(yard).count(0) <= 2  # at-least-once for the in-flight batch
    assert sorted(set(processed_items(yard))) == ROWS
    status = yard.get_iterator_status("job")
    assert status.processed == 95 and status.batches == 10  # the books: once each


def test_cancel_is_cancelled_not_failed_and_stops_the_chain(yard):
    start(yard)
    yard.runtime.tasks.claim("w", 1, lease=30, now=yard.clock.time())  # a step in flight
    assert yard.cancel_iterator("job").status == "cancelled"
    assert yard.cancel_iterator("job").status == "cancelled"
    yard.run_worker(wait=False)
    assert yard.seen == []
    with pytest.raises(Conflict):
        yard.resume_iterator("job")


def test_retries_back_off_then_fail_and_resume_restarts_from_the_checkpoint(yard, clock):
    start(yard, max_retries=3)
    yard.run_worker(wait=False)
    assert yard.get_iterator_status("job").status == "completed"
    yard.seen.clear()
    start(yard, "j2", max_retries=3)
    yard.fail_times["n"] = 100
    yard.run_worker(wait=False)  # attempt 1 fails; next after 1 s
    for delay in (1, 2, 4):
        clock.advance(delay - 0.01)
        yard.run_worker(wait=False)
        assert yard.get_iterator_status("j2").status in ("pending", "running")
        clock.advance(0.01)
        yard.run_worker(wait=False)
    status = yard.get_iterator_status("j2")
    assert status.status == "failed" and status.last_error == "ConnectionError: sink down"
    yard.fail_times["n"] = 0
    assert yard.resume_iterator("j2").status == "running"
    yard.run_worker(wait=False)
    assert processed_items(yard) == ROWS
    assert yard.get_iterator_status("j2").status == "completed"


def test_on_complete_is_retried_until_it_succeeds(yard, clock):
    calls = []

    @yard.handler("flaky-done")
    def flaky_done(job_id, processed):
        calls.append(processed)
        if len(calls) < 3:
            raise RuntimeError("not yet")

    yard.start_iterator(
        "j",
        batch_size=50,
        get_next_batch="source",
        process_batch="process",
        on_complete="flaky-done",
        delay_between_batches=0,
    )
    for _ in range(6):
        yard.run_worker(wait=False)
        clock.advance(10)
    assert calls == [95, 95, 95]


def test_a_page_object_and_an_empty_source(yard):
    @yard.handler("empty")
    def empty(cursor, batch_size):
        return Page(items=[], cursor=None, done=True)

    yard.start_iterator(
        "e", batch_size=5, get_next_batch="empty", process_batch="process", delay_between_batches=0
    )
    yard.run_worker(wait=False)
    assert yard.get_iterator_status("e").status == "completed" and yard.seen == []


def test_transactional_mode_commits_the_handlers_writes_with_the_cursor(yard):
    @yard.handler("write")
    def write(items, ctx):
        for item in items:
            ctx.tx.execute(
                "INSERT INTO batchyard_batch_bases (base_id) VALUES (:id)", {"id": f"row-{item}"}
            )
        if ctx.page == 3 and ctx.attempt == 1:
            raise RuntimeError("after the writes, before the commit")

    yard.start_iterator(
        "t",
        batch_size=10,
        get_next_batch="source",
        process_batch="write",
        delay_between_batches=0,
        transactional=True,
    )
    yard.run_worker(wait=False)
    yard.clock.advance(5)
    yard.run_worker(wait=False)
    with yard.store.transaction() as tx:
        rows = tx.all("SELECT base_id FROM batchyard_batch_bases ORDER BY base_id")
    assert sorted(int(r["base_id"][4:]) for r in rows) == ROWS  # no loss, no duplicate
    assert yard.get_iterator_status("t").status == "completed"


def test_list_and_delete(yard):
    start(yard, "a")
    start(yard, "b")
    yard.pause_iterator("b")
    assert {s.job_id for s in yard.list_iterator_jobs()} == {"a", "b"}
    assert [s.job_id for s in yard.list_iterator_jobs(status="paused")] == ["b"]
    with pytest.raises(Conflict, match="pause or cancel"):
        yard.delete_iterator_job("a")
    yard.delete_iterator_job("b")
    with pytest.raises(NotFound):
        yard.get_iterator_status("b")


def test_job_ids_with_like_wildcards_do_not_touch_other_jobs(yard, clock):
    start(yard, "a_b", delay_between_batches=5)
    start(yard, "aXb", delay_between_batches=5)
    yard.run_worker(wait=False)  # one batch each; next steps queued 5 s out
    yard.pause_iterator("a_b")  # must drop only a_b's queued step
    clock.advance(5)
    yard.run_worker(wait=False)
    assert yard.get_iterator_status("aXb").batches == 2
    assert yard.get_iterator_status("a_b").batches == 1


def test_pausing_a_job_leaves_a_job_whose_id_extends_it_alone(yard):
    """Step keys are matched by prefix: job "a"'s prefix must not also be job "a:1"'s, or
    pausing "a" would drop "a:1"'s queued step and strand it running with no task."""
    start(yard, "a", delay_between_batches=5)
    start(yard, "a:1", delay_between_batches=5)
    yard.pause_iterator("a")
    yard.clock.advance(600)
    for _ in range(20):  # a page per step, 5 s apart
        yard.run_worker(wait=False)
        yard.clock.advance(5)
    assert yard.get_iterator_status("a:1").status == "completed"
    assert yard.get_iterator_status("a").status == "paused"


@pytest.mark.parametrize(
    ("cursor", "problem"),
    [
        (2**70, "cursor: integer 1180591620717411303424 is outside"),
        ({"at": float("nan")}, "cursor.at: float nan is not JSON"),
    ],
)
def test_a_cursor_that_cannot_be_stored_exactly_fails_the_step_before_its_page_runs(
    yard, clock, cursor, problem
):
    @yard.handler("odd-source")
    def odd_source(previous, batch_size):
        if previous is not None:
            return Page([], done=True)
        return Page([1, 2, 3], cursor=cursor)

    yard.start_iterator(
        "odd",
        batch_size=10,
        get_next_batch="odd-source",
        process_batch="process",
        delay_between_batches=0,
        max_retries=1,
    )
    yard.run_worker(wait=False)
    clock.advance(1)
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("odd")
    # the page was never handed over, the job says why, and resuming does not strand it
    assert yard.seen == []
    assert status.status == "failed"
    assert problem in status.last_error and "get_next_batch" in status.last_error
    assert status.cursor is None and status.processed == 0


def test_a_throttle_holds_the_job_for_as_long_as_it_asks(yard, clock):
    asked = []

    @yard.handler("lagging")
    def lagging(job_id):
        asked.append(job_id)
        return 5.0 if len(asked) == 1 else None

    start(yard, throttle="lagging")
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("job")
    assert yard.seen == [] and status.processed == 0 and status.throttled_seconds == 5.0
    clock.advance(4.9)
    yard.run_worker(wait=False)
    assert yard.seen == []
    clock.advance(0.1)
    yard.run_worker(wait=False)
    assert processed_items(yard) == ROWS
    # asked again before every page: the first answer, then one per page of ten
    assert len(asked) == 1 + 10
    assert yard.get_iterator_status("job").status == "completed"


def test_a_throttle_that_answers_nonsense_fails_the_step_naming_it(yard):
    yard.handler("confused")(lambda job_id: "later")
    start(yard, throttle="confused", max_retries=0)
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("job")
    assert status.status == "failed" and "throttle handler 'confused'" in status.last_error


def test_page_sizes_adapt_to_the_target_duration(yard, clock):
    sizes = []

    @yard.handler("big-source")
    def big_source(cursor, batch_size):
        sizes.append(batch_size)
        start_at = cursor or 0
        end = min(start_at + batch_size, 3000)
        return Page(list(range(start_at, end)), cursor=end, done=end >= 3000)

    @yard.handler("ten-ms-an-item")
    def ten_ms_an_item(items, ctx):
        clock.advance(0.01 * len(items))

    yard.start_iterator(
        "adaptive",
        batch_size=10,
        get_next_batch="big-source",
        process_batch="ten-ms-an-item",
        delay_between_batches=0,
        target_batch_seconds=0.5,
        max_batch_size=400,
    )
    yard.run_worker(wait=False)
    status = yard.get_iterator_status("adaptive")
    assert status.status == "completed" and status.processed == 3000
    assert sizes[:4] == [10, 20, 40, 50]  # doubling at most, then the size that takes 0.5 s
    assert set(sizes[3:]) == {50} and status.batch_size == 50
