"""Random interleavings of add, flush, tick, failure, crash, restart and a poisoned item keep
the invariants: no item lost, none recorded in two flushes, no flush above the size limit,
none empty; and no batch stranded - every `flushing` batch has a live flush task, every dead
flush task's batch is dead, whichever way the task died (the handler failing, workers lost
on every attempt, an item the runner cannot decode)."""

from __future__ import annotations

import itertools
import shutil

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from batchyard import ManualClock, RetryPolicy, Yard

MAX = 4
BASES = ("a", "b")
ATTEMPTS = 3
# an item the store holds but the runner cannot decode (a lone surrogate): the way a flush
# task dies in the worker's generic failure path, outside the handler
POISON = '"\\ud800{}"'


def item_of(payload: str) -> int:
    return int(payload[7:-1]) if payload.startswith('"\\ud800') else int(payload)


class AccumulatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.db = _tmp_db()
        self.clock = ManualClock()
        self.calls: list[tuple[str, int, list[int]]] = []
        self.failing = False
        self.counter = itertools.count()
        self.accepted: set[int] = set()
        self.poisoned: set[str] = set()  # batch ids holding a poisoned item
        self.open_yard()

    def open_yard(self) -> None:
        self.yard = Yard(
            self.db, clock=self.clock, retry=RetryPolicy(max_attempts=50, base_delay=1, max_delay=4)
        )

        @self.yard.handler("h")
        def handle(items, ctx):
            assert 0 < len(items) <= MAX
            self.calls.append((ctx.batch_id, ctx.attempt, items))
            if self.failing:
                raise RuntimeError("sink down")

    @rule(
        base=st.sampled_from(BASES), count=st.integers(1, 9), interval=st.sampled_from([None, 5.0])
    )
    def add(self, base, count, interval):
        items = [next(self.counter) for _ in range(count)]
        self.yard.add_items(
            base,
            items,
            max_batch_size=MAX,
            on_flush="h",
            flush_interval=interval,
            max_attempts=ATTEMPTS,
        )
        self.accepted.update(items)

    @rule(base=st.sampled_from(BASES))
    def flush(self, base):
        self.yard.flush(base)

    @rule(seconds=st.sampled_from([0.5, 1, 3, 6]))
    def tick(self, seconds):
        self.clock.advance(seconds)

    @rule()
    def work(self):
        self.yard.run_worker(concurrency=1, wait=False)

    @rule()
    def toggle_failure(self):
        self.failing = not self.failing

    @rule()
    def crash_mid_flush(self):
        """A worker claims a flush, calls the handler, and dies before recording it."""
        [*tasks] = self.yard.runtime.tasks.claim("doomed", 1, lease=10, now=self.clock.time())
        if tasks and tasks[0].kind == "accumulator.flush":
            batch_id = tasks[0].payload["batch_id"]
            from batchyard.accumulator.sql import PENDING_ITEMS as _PENDING_ITEMS

            with self.yard.store.transaction() as tx:
                [batch] = tx.all(
                    "SELECT batch_no FROM batchyard_batches WHERE batch_id = :batch_id",
                    {"batch_id": batch_id},
                )
                rows = tx.all(_PENDING_ITEMS, {"batch_no": batch["batch_no"]})
            if rows:
                self.calls.append((batch_id, -1, [item_of(r["payload"]) for r in rows]))

    @rule(base=st.sampled_from(BASES))
    def poison(self, base):
        """One stored item of the base's open batch becomes undecodable."""
        with self.yard.store.transaction() as tx:
            row = tx.one(
                "SELECT b.batch_id, i.batch_no, i.position, i.payload "
                "FROM batchyard_items i JOIN batchyard_batches b "
                "ON b.batch_no = i.batch_no WHERE b.base_id = :base "
                "AND b.status = 'accumulating' ORDER BY i.position LIMIT 1",
                {"base": base},
            )
            if row is None or row["payload"].startswith('"'):
                return
            tx.execute(
                "UPDATE batchyard_items SET payload = :payload "
                "WHERE batch_no = :batch_no AND position = :position",
                {
                    "payload": POISON.format(row["payload"]),
                    "batch_no": row["batch_no"],
                    "position": row["position"],
                },
            )
        self.poisoned.add(row["batch_id"])

    @rule()
    def restart(self):
        self.yard.close()
        self.open_yard()

    @invariant()
    def books_are_exact(self):
        with self.yard.store.transaction() as tx:
            rows = tx.all(
                "SELECT b.batch_id, i.payload, b.status FROM batchyard_items i "
                "JOIN batchyard_batches b ON b.batch_no = i.batch_no"
            )
            over = tx.one(
                "SELECT count(*) AS n FROM batchyard_flushes WHERE item_count > :m "
                "OR item_count = 0",
                {"m": MAX},
            )["n"]
        stored = [item_of(r["payload"]) for r in rows]
        assert len(stored) == len(set(stored)), "an item is in two batches"
        assert set(stored) == self.accepted, "an accepted item was lost"
        assert over == 0, "a flush above the limit, or an empty one"
        delivered = {i for _, _, items in self.calls for i in items}
        done = {item_of(r["payload"]) for r in rows if r["status"] == "completed"}
        assert done <= delivered, "an item marked done was never delivered"

    @invariant()
    def no_batch_is_stranded(self):
        with self.yard.store.transaction() as tx:
            stranded = tx.all(
                "SELECT b.batch_id FROM batchyard_batches b WHERE b.status = 'flushing' "
                "AND NOT EXISTS (SELECT 1 FROM batchyard_tasks t "
                "WHERE t.key = 'flush:' || b.batch_id)"
            )
            undead = tx.all(
                "SELECT d.key FROM batchyard_dead_tasks d JOIN batchyard_batches b "
                "ON d.key = 'flush:' || b.batch_id WHERE b.status <> 'dead'"
            )
            dead_without_history = tx.all(
                "SELECT b.batch_id FROM batchyard_batches b WHERE b.status = 'dead' "
                "AND NOT EXISTS (SELECT 1 FROM batchyard_flushes f "
                "WHERE f.batch_id = b.batch_id AND f.outcome = 'failed' "
                "AND f.error = b.last_error)"
            )
        assert not stranded, f"flushing with no flush task: {stranded}"
        assert not undead, f"a dead flush task whose batch is not dead: {undead}"
        assert not dead_without_history, (
            f"dead without its error in the history: {dead_without_history}"
        )
        listed = {b.batch_id for b in self.yard.list_dead_batches(limit=1000)}
        with self.yard.store.transaction() as tx:
            dead = {
                r["batch_id"]
                for r in tx.all("SELECT batch_id FROM batchyard_batches WHERE status = 'dead'")
            }
        assert listed == dead

    def teardown(self):
        # drain: with the sink healthy and time moving, everything ends up delivered
        self.failing = False
        for _ in range(40):
            self.clock.advance(60)
            for base in BASES:
                self.yard.flush(base)
            for dead in self.yard.list_dead_batches(limit=1000):
                if dead.batch_id not in self.poisoned:  # dead of a sink that is back
                    self.yard.redrive_batch(dead.batch_id)
            self.yard.run_worker(concurrency=1, wait=False)
        with self.yard.store.transaction() as tx:
            left = tx.all(
                "SELECT batch_id, status FROM batchyard_batches WHERE status <> 'completed'"
            )
            completed = tx.all(
                "SELECT b.batch_id, f.item_count FROM batchyard_batches b "
                "JOIN batchyard_flushes f ON f.batch_id = b.batch_id "
                "AND f.outcome = 'completed' WHERE b.status = 'completed'"
            )
        self.yard.close()
        shutil.rmtree(self.db.removeprefix("sqlite:///").rsplit("/", 1)[0])
        # only the batches holding a poisoned item are left, each dead
        assert {(r["batch_id"], r["status"]) for r in left} == {
            (batch_id, "dead") for batch_id in self.poisoned
        }
        assert len(completed) == len({b for b, _ in completed}), "two completed flushes"


def _tmp_db() -> str:
    import tempfile

    return f"sqlite:///{tempfile.mkdtemp(prefix='batchyard-prop-')}/yard.db"


AccumulatorMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAccumulatorProperties = AccumulatorMachine.TestCase
