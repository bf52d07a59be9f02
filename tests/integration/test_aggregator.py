"""Cursor aggregation on both stores: exact totals, compound cursor, parking, leases."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
import pytest

from batchyard import Conflict, InvalidInput, NotFound, Yard, folds, maintenance
from batchyard.aggregator import streams
from tests.conftest import pg_url
from tests.servers import wait_until


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock)


def test_events_sharing_one_time_across_page_boundaries_are_each_counted_once(yard):
    yard.register_aggregator(
        "per-skill", stream="stats", key="skill", fold=folds.count(), page_size=100, max_keys=7
    )
    events = [{"skill": f"s{n % 13}"} for n in range(2000)]  # all at the same clock time
    for start in range(0, 2000, 250):
        yard.append_events("stats", events[start : start + 250])
    run = yard.run_aggregator("per-skill")
    assert run.caught_up and run.events == 2000 and run.applies > 1
    assert yard.get_totals("per-skill") == dict(Counter(e["skill"] for e in events))
    again = yard.run_aggregator("per-skill")
    assert again.events == 0 and again.caught_up
    assert sum(yard.get_totals("per-skill").values()) == 2000


def test_sum_min_max_last_and_custom_folds(yard):
    events = [{"k": "a", "n": 3, "t": 1}, {"k": "b", "n": 5, "t": 2}, {"k": "a", "n": -1, "t": 3}]
    yard.append_events("s", events)
    yard.register_aggregator("sum", stream="s", key="k", fold=folds.sum("n", "t"))
    yard.register_aggregator("min", stream="s", key="k", fold=folds.min("n"))
    yard.register_aggregator("max", stream="s", key="k", fold=folds.max("n"))
    yard.register_aggregator("last", stream="s", key=lambda e: e["k"].upper(), fold=folds.last("t"))
    distinct = folds.Fold(
        step=lambda d, e: sorted({*(d or []), e["n"]}), merge=lambda t, d: sorted({*(t or []), *d})
    )
    yard.register_aggregator("distinct", stream="s", key="k", fold=distinct, page_size=1)
    for name in ("sum", "min", "max", "last", "distinct"):
        yard.run_aggregator(name)
    assert yard.get_totals("sum") == {"a": {"n": 2, "t": 4}, "b": {"n": 5, "t": 2}}
    assert yard.get_totals("sum", "a") == {"n": 2, "t": 4}
    assert yard.get_totals("min") == {"a": -1, "b": 5}
    assert yard.get_totals("max") == {"a": 3, "b": 5}
    assert yard.get_totals("last") == {"A": 3, "B": 2}
    assert yard.get_totals("distinct", "a") == [-1, 3]
    assert yard.get_totals("sum", "nobody") is None


def test_totals_accumulate_across_runs(yard):
    yard.register_aggregator("c", stream="s", key="k", fold=folds.sum("n"))
    yard.append_events("s", [{"k": "x", "n": 1}])
    yard.run_aggregator("c")
    yard.append_events("s", [{"k": "x", "n": 2}, {"k": "y", "n": 10}])
    yard.run_aggregator("c")
    assert yard.get_totals("c") == {"x": {"n": 3}, "y": {"n": 10}}


def test_poison_events_are_parked_and_the_rest_goes_on(yard):
    yard.register_aggregator("s", stream="s", key="k", fold=folds.sum("n"))
    yard.append_events(
        "s", [{"k": "a", "n": 1}, {"k": "a", "n": "oops"}, {"n": 4}, {"k": "a", "n": 2}]
    )
    run = yard.run_aggregator("s")
    assert run.parked == 2 and run.events == 4
    assert yard.get_totals("s") == {"a": {"n": 3}}
    parked = yard.list_parked_events("s")
    assert [p.event for p in parked] == [{"k": "a", "n": "oops"}, {"n": 4}]
    assert "not a number" in parked[0].error and "KeyError" in parked[1].error
    assert yard.get_aggregator_status("s").parked == 2
    # fix the key (a new registration) and retry: one goes in, one is still poison
    yard.register_aggregator("s", stream="s", key=lambda e: e.get("k", "none"), fold=folds.sum("n"))
    assert yard.retry_parked_events("s") == 1
    assert [p.event for p in yard.list_parked_events("s")] == [{"k": "a", "n": "oops"}]
    assert yard.get_totals("s") == {"a": {"n": 3}, "none": {"n": 4}}


def test_an_exception_between_deltas_and_cursor_leaves_totals_exact(yard):
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    yard.append_events("s", [{"k": "a"}] * 10)

    def boom():
        raise RuntimeError("crash between the delta write and the cursor write")

    with pytest.raises(RuntimeError):
        yard._aggregators.run("c", fail_before_cursor=boom)
    assert yard.get_totals("c") == {}
    assert yard.get_aggregator_status("c").last_error.startswith("RuntimeError")
    assert yard.run_aggregator("c").events == 10  # the lease was released
    assert yard.get_totals("c") == {"a": 10}


def test_an_overlapping_run_skips_and_a_dead_runners_lease_expires(yard, clock):
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count(), lease=30)
    yard.append_events("s", [{"k": "a"}] * 5)
    with yard.store.transaction(clock.time()) as tx:  # a runner that then died
        yard._aggregators._ensure_row(tx, yard._aggregators.config("c"))
        tx.execute(
            "UPDATE batchyard_aggregators SET lease_until = {now} + 30, runner = 'dead-runner'"
        )
    assert yard.run_aggregator("c").skipped
    assert yard.get_totals("c") == {}
    clock.advance(31)
    assert yard.run_aggregator("c").events == 5


def test_one_runner_at_a_time_across_threads_on_postgres(pg_database):
    # (on SQLite a second run waits for the first one's write transaction instead)
    yard = Yard(pg_database)
    yard.append_events("s", [{"k": "a"}] * 50)
    inside = threading.Event()
    release = threading.Event()
    results = []

    def slow_key(event):
        if not inside.is_set():  # hold the first run inside its transaction, once
            inside.set()
            release.wait(10)
        return event["k"]

    yard.register_aggregator("slow", stream="s", key=slow_key, fold=folds.count())
    thread = threading.Thread(target=lambda: results.append(yard.run_aggregator("slow")))
    thread.start()
    assert inside.wait(10)
    assert yard.run_aggregator("slow").skipped  # overlapping run: skip, no conflict
    assert yard.get_aggregator_status("slow").running
    release.set()
    thread.join()
    assert results[0].events == 50 and yard.get_totals("slow") == {"a": 50}
    yard.close()


def test_status_shows_cursor_and_lag(yard, clock):
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    yard.append_events("s", [{"k": "a"}] * 3)
    clock.advance(42)
    status = yard.get_aggregator_status("c")
    assert status.lag_events == 3 and status.lag_seconds == pytest.approx(42)
    yard.run_aggregator("c")
    status = yard.get_aggregator_status("c")
    assert status.lag_events == 0 and status.lag_seconds == 0 and status.events_folded == 3
    assert status.last_run_at is not None


def test_reset_replays_and_rebuilds(yard):
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    yard.append_events("s", [{"k": "a"}, {"k": "b"}])
    yard.run_aggregator("c")
    yard.reset_aggregator("c")
    assert yard.get_totals("c") == {}
    yard.run_aggregator("c")
    assert yard.get_totals("c") == {"a": 1, "b": 1}


def test_reset_to_an_event_for_a_custom_apply_and_refused_for_managed_totals(yard):
    seen = []

    @yard.handler("mine")
    def mine(deltas, tx):
        seen.append(dict(deltas))

    yard.register_aggregator("own", stream="s", key="k", fold=folds.count(), apply="mine")
    yard.register_aggregator("managed", stream="s", key="k", fold=folds.count())
    ids = yard.append_events("s", [{"k": "a"}, {"k": "b"}, {"k": "c"}])
    yard.run_aggregator("own")
    yard.reset_aggregator("own", to=ids[1])
    yard.run_aggregator("own")
    assert seen == [{"a": 1, "b": 1, "c": 1}, {"b": 1, "c": 1}]
    with pytest.raises(InvalidInput, match="only be rebuilt from the start"):
        yard.reset_aggregator("managed", to=ids[1])
    with pytest.raises(NotFound):
        yard.reset_aggregator("own", to=10**9)


def test_event_retention_prunes_through_the_maintenance_task(make_yard, clock):
    yard = make_yard(clock=clock, event_retention=60)
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    yard.append_events("s", [{"k": "a"}] * 3)
    yard.run_aggregator("c")
    yard.runtime.kinds.worker_started()
    clock.advance(3600)  # the maintenance task falls due; the events are an hour old
    yard.run_worker(wait=False)
    with yard.store.transaction() as tx:
        assert tx.one("SELECT count(*) AS n FROM batchyard_events")["n"] == 0
    assert yard.get_totals("c") == {"a": 3}


def test_events_are_pruned_in_bounded_steps_oldest_first(make_yard, clock, monkeypatch):
    # Red before: one transaction pruned a stream's whole backlog, holding SQLite's writer.
    monkeypatch.setattr(streams, "PRUNE_EVENTS", 3)
    monkeypatch.setattr(maintenance, "PRUNE_STEPS_PER_RUN", 1)
    yard = make_yard(clock=clock, event_retention=60)
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    ids = yard.append_events("s", [{"k": n % 2} for n in range(10)])
    catch_up(yard, "c")
    clock.advance(3600)
    assert yard._streams.prune_step("s", 60) == 3
    with yard.store.transaction() as tx:
        left = [row["id"] for row in tx.all("SELECT id FROM batchyard_events ORDER BY id")]
    assert left == ids[3:]  # the oldest went first
    yard.runtime.kinds.worker_started()
    clock.advance(3600)  # the maintenance task falls due
    runs = yard.run_worker(wait=False)
    assert runs >= 3  # a step a run: 7 events three by three, each run queueing the next
    with yard.store.transaction() as tx:
        assert tx.one("SELECT count(*) AS n FROM batchyard_events")["n"] == 0
    assert yard.get_totals("c") == {"0": 5, "1": 5}


def catch_up(yard, name):
    """Run until the aggregator has read every event: on PostgreSQL a run stops below the
    oldest transaction still open anywhere it cannot place (other tests' meanwhile), so one
    run may read nothing - late, never wrong."""
    wait_until(
        lambda: yard.run_aggregator(name) and yard.get_aggregator_status(name).lag_events == 0,
        30,
        f"{name} to catch up",
    )


def test_passed_events_can_be_pruned(yard, clock):
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    yard.register_aggregator("d", stream="s", key="k", fold=folds.count())
    yard.append_events("s", [{"k": "a"}] * 4)
    catch_up(yard, "c")
    clock.advance(100)
    assert yard.prune_events("s", older_than=10) == 0  # "d" has not read them yet
    catch_up(yard, "d")
    assert yard.prune_events("s", older_than=1000) == 0  # not old enough
    assert yard.prune_events("s", older_than=10) == 4
    yard.append_events("s", [{"k": "a"}])
    catch_up(yard, "c")
    assert yard.get_totals("c") == {"a": 5}


def test_scheduled_runs_through_the_worker(yard, clock):
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count(), every=60)
    yard.runtime.kinds.worker_started()
    yard.append_events("s", [{"k": "a"}])
    clock.advance(60)
    yard.run_worker(wait=False)
    assert yard.get_totals("c") == {"a": 1}


def test_a_custom_apply_writes_in_the_same_transaction(yard):
    seen = []

    @yard.handler("apply")
    def apply(deltas, tx):
        seen.append(dict(deltas))
        tx.execute(
            "INSERT INTO batchyard_batch_bases (base_id, next_sequence) VALUES ('applied', :n)",
            {"n": sum(deltas.values())},
        )

    yard.register_aggregator("c", stream="s", key="k", fold=folds.count(), apply="apply")
    yard.append_events("s", [{"k": "a"}, {"k": "a"}, {"k": "b"}])
    yard.run_aggregator("c")
    assert seen == [{"a": 2, "b": 1}]
    with yard.store.transaction() as tx:
        assert (
            tx.one("SELECT next_sequence FROM batchyard_batch_bases WHERE base_id = 'applied'")[
                "next_sequence"
            ]
            == 3
        )


def test_bad_input_is_refused(yard):
    with pytest.raises(InvalidInput, match=r"events\[1\] is not a JSON object"):
        yard.append_events("s", [{"ok": 1}, [1, 2]])
    with pytest.raises(InvalidInput, match="stream"):
        yard.append_events("", [{}])
    with pytest.raises(InvalidInput, match="fold"):
        yard.register_aggregator("x", stream="s", key="k", fold=lambda e: e)
    with pytest.raises(InvalidInput, match="page_size"):
        yard.register_aggregator("x", stream="s", key="k", fold=folds.count(), page_size=0)
    with pytest.raises(NotFound):
        yard.run_aggregator("never-registered")
    assert yard.get_totals  # nothing was appended by the refused call
    with yard.store.transaction() as tx:
        assert tx.one("SELECT count(*) AS n FROM batchyard_events")["n"] == 0


def test_reset_is_refused_while_running(yard):
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    with yard.store.transaction() as tx:
        yard._aggregators._ensure_row(tx, yard._aggregators.config("c"))
        tx.execute("UPDATE batchyard_aggregators SET lease_until = 9e12, runner = 'x'")
    with pytest.raises(Conflict):
        yard.reset_aggregator("c")


def test_postgres_commit_order_gap_is_never_skipped(pg_database):
    # (SQLite has one writer at a time: there, commit order is id order)
    store_url = pg_database
    yard = Yard(store_url)
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    with psycopg.connect(store_url) as slow:  # inserts first, commits last
        slow.execute(
            "INSERT INTO batchyard_events (stream, position, payload, created_at) "
            "VALUES ('s', CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT), "
            '\'{"k": "early"}\', 0)'
        )
        yard.append_events("s", [{"k": "late"}])  # a later event, committed at once
        run = yard.run_aggregator("c")
        assert run.events == 0  # the open transaction holds the safe mark back
        slow.commit()
    yard.run_aggregator("c")
    assert yard.get_totals("c") == {"early": 1, "late": 1}
    assert yard.run_aggregator("c").events == 0
    yard.close()


def test_postgres_transactions_of_other_databases_do_not_hold_aggregation_back(pg_database):
    # a write transaction open elsewhere on the same server (another application, a CREATE
    # DATABASE) cannot write our events, so it must not delay them
    yard = Yard(pg_database)
    yard.register_aggregator("c", stream="s", key="k", fold=folds.count())
    with psycopg.connect(pg_url("postgres")) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # holds a transaction id, open
        yard.append_events("s", [{"k": "a"}, {"k": "b"}])
        assert yard.run_aggregator("c").events == 2
        elsewhere.rollback()
    assert yard.get_totals("c") == {"a": 1, "b": 1}
    yard.close()
