"""Random appends, runs, crashes and restarts: the totals always equal a fold of the events
that the cursor has passed, and once caught up, a fold of all of them."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from batchyard import ManualClock, Yard, folds


class Crash(Exception):
    pass


class AggregatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="batchyard-agg-prop-")
        self.clock = ManualClock()
        self.appended: list[dict] = []
        self.open_yard()

    def open_yard(self) -> None:
        self.yard = Yard(f"sqlite:///{self.folder}/yard.db", clock=self.clock)
        self.yard.register_aggregator(
            "c", stream="s", key="k", fold=folds.sum("n"), page_size=3, max_keys=2, lease=10
        )

    @rule(
        events=st.lists(
            st.tuples(st.sampled_from("abcd"), st.integers(-5, 5)), min_size=1, max_size=12
        )
    )
    def append(self, events):
        batch = [{"k": k, "n": n} for k, n in events]
        self.yard.append_events("s", batch)
        self.appended.extend(batch)

    @rule()
    def run(self):
        self.yard.run_aggregator("c")

    @rule()
    def crash_before_the_cursor_moves(self):
        def boom():
            raise Crash

        with contextlib.suppress(Crash):
            self.yard._aggregators.run("c", fail_before_cursor=boom)

    @rule()
    def runner_dies_holding_the_lease(self):
        with self.yard.store.transaction(self.clock.time()) as tx:
            tx.execute(
                "UPDATE batchyard_aggregators SET lease_until = {now} + 10, "
                "runner = 'dead' WHERE lease_until IS NULL"
            )
        self.clock.advance(11)

    @rule()
    def restart(self):
        self.yard.close()
        self.open_yard()

    @invariant()
    def totals_are_a_fold_of_the_events_passed(self):
        folded = self.yard.get_aggregator_status("c").events_folded
        expected = Counter()
        for event in self.appended[:folded]:  # one stream, one writer: append order
            expected[event["k"]] += event["n"]
        totals = {k: v["n"] for k, v in self.yard.get_totals("c").items()}
        assert totals == {k: expected[k] for k in totals}
        assert set(totals) == {e["k"] for e in self.appended[:folded]}

    def teardown(self):
        self.clock.advance(11)
        self.yard.run_aggregator("c")
        expected = Counter()
        for event in self.appended:
            expected[event["k"]] += event["n"]
        totals = {k: v["n"] for k, v in self.yard.get_totals("c").items()}
        self.yard.close()
        shutil.rmtree(self.folder)
        assert totals == dict(expected)


AggregatorMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAggregatorProperties = AggregatorMachine.TestCase
