"""Directed claims on a real store (both backends): the flushes an add of this process
queues go to its idle worker by key, claimed and started in one transaction - one commit
between the add and the handler. The directed claim sets the token and lease a claim sets,
and takes only what the claim would: a task another claim holds, or a handler limited in
another process, is left alone, and nothing runs twice."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import orjson
import pytest

from batchyard import RetryPolicy
from batchyard.accumulator.records import FLUSH_TASK
from batchyard.tasks import sql
from tests.servers import wait_until

LEASE = 30.0
COUNT_FLUSHES = "SELECT COUNT(*) AS n FROM batchyard_tasks WHERE kind = :kind"


@pytest.fixture
def yard(make_yard, clock):
    return make_yard(clock=clock, retry=RetryPolicy(max_attempts=3, jitter=0))


def directed(yard, worker_id, limit=5):
    """A directed claim of what was announced, as an idle worker with `limit` free threads
    makes it."""
    runtime = yard.runtime
    return runtime.tasks.directed.claim(worker_id, limit, LEASE, runtime.now(), runtime.kinds)


def run(yard, task):
    return yard.runtime.kinds.get(FLUSH_TASK).run(task)


def batch_attempts(yard, batch_id):
    with yard.store.transaction(write=False) as tx:
        row = tx.one("SELECT attempts FROM batchyard_batches WHERE batch_id = :b", {"b": batch_id})
    return int(row["attempts"])


def history(yard):
    with yard.store.transaction(write=False) as tx:
        rows = tx.all("SELECT batch_id, attempt, outcome FROM batchyard_flushes ORDER BY id")
    return [(row["batch_id"], row["attempt"], row["outcome"]) for row in rows]


def stop(yard, worker, thread):
    """Stop a running worker, waking it where it waits for work (on PostgreSQL it waits for
    a NOTIFY, up to its poll interval)."""
    worker.stop()
    with yard.store.transaction(yard.runtime.now()) as tx:
        yard.store.notify_work(tx)
    thread.join(30)
    assert not thread.is_alive()


class WriteCounter:
    """Counts, per thread, the write transactions and lone write statements (a commit each)
    that the yard's real store runs; notes how many the worker's threads had run when the
    test's last write transaction began, and whether the worker waits for work."""

    def __init__(self, store, monkeypatch):
        self.writes: dict[str, int] = {}
        self.main = threading.current_thread().name
        self.at_begin = 0
        self.waiting = False
        transaction, alone, wait = store.transaction, store._alone, store.wait_for_work

        @contextmanager
        def counted_transaction(now=None, *, write=True, pipeline=False):
            if write:
                if threading.current_thread().name == self.main:
                    self.at_begin = self.of_worker()
                self._count()
            with transaction(now, write=write, pipeline=pipeline) as tx:
                yield tx

        def counted_alone(sql_text, params, now, returning):
            self._count()
            return alone(sql_text, params, now, returning)

        def noted_wait(timeout):
            self.waiting = True
            try:
                wait(timeout)
            finally:
                self.waiting = False

        monkeypatch.setattr(store, "transaction", counted_transaction)
        monkeypatch.setattr(store, "_alone", counted_alone)
        monkeypatch.setattr(store, "wait_for_work", noted_wait)

    def _count(self):
        name = threading.current_thread().name
        self.writes[name] = self.writes.get(name, 0) + 1

    def of_worker(self):
        """The writes of every thread but the test's own (the worker's threads)."""
        return sum(n for name, n in self.writes.items() if name != self.main)


def test_a_flush_an_add_queues_reaches_the_idle_worker_in_one_commit(make_yard, monkeypatch):
    yard = make_yard()
    counter = WriteCounter(yard.store, monkeypatch)
    seen: list[tuple[list[int], int, int]] = []
    called = threading.Event()

    @yard.handler("sink")
    def sink(items, ctx):
        seen.append((items, ctx.attempt, counter.of_worker()))
        called.set()

    # a lease long enough that no heartbeat writes meanwhile
    worker = yard.worker(concurrency=1, lease=600, poll_interval=60)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        # idle: waiting for work, and not about to be woken by its own start's writes
        wait_until(
            lambda: counter.waiting and not yard.store._wakeup.is_set(),
            what="the worker is idle",
        )
        yard.add_items("ev", [1, 2], max_batch_size=2, on_flush="sink")
        added = counter.at_begin  # the worker's writes when the add began
        assert called.wait(30)
    finally:
        stop(yard, worker, thread)
    [(items, attempt, writes)] = seen
    # from the add's commit to the handler, one commit: the claim and the flush's start
    assert (items, attempt, writes - added) == ([1, 2], 1, 1)
    assert history(yard) == [("ev::0", 1, "completed")]


def test_a_flush_started_by_a_directed_claim_carries_its_claims_token_and_lease(yard, clock):
    arrived = []
    yard.handler("sink")(lambda items, ctx: arrived.append((ctx.batch_id, ctx.attempt)))
    tasks = yard.runtime.tasks
    tasks.directed.listen()
    yard.add_items("ev", [1, 2], max_batch_size=2, on_flush="sink")
    dying = yard.worker(concurrency=1, lease=LEASE)
    [task] = directed(yard, dying.id)
    assert (task.key, task.attempts, task.token) == ("flush:ev::0", 1, 1)
    batch, items = task.ahead  # the start made in the claim's transaction
    assert batch["attempts"] == 1 == batch_attempts(yard, "ev::0")
    assert [orjson.loads(item["payload"]) for item in items] == [1, 2]
    with yard.store.transaction(write=False) as tx:
        row = tx.one("SELECT state, token, worker_id, due_at FROM batchyard_tasks")
    assert dict(row) == {
        "state": "running",
        "token": 1,
        "worker_id": dying.id,
        "due_at": clock.time() + LEASE,
    }
    # held by its lease: the claim loop passes it over, and a second directed claim too
    assert tasks.claim("another", 5, LEASE, yard.runtime.now()) == []
    # the worker dies before running it: once its lease is up the claim rescues it - the
    # directed start counted the first attempt
    clock.advance(LEASE + 1)
    yard.run_worker(wait=False)
    assert arrived == [("ev::0", 2)]
    # the dead worker's late outcome is refused: its token is stale
    with pytest.raises(Exception, match="no longer held"):
        run(yard, task)
    assert history(yard) == [("ev::0", 2, "completed")]


def test_a_directed_claim_another_claim_beat_starts_nothing_and_runs_nothing_twice(yard):
    arrived = []
    yard.handler("sink")(lambda items, ctx: arrived.append((ctx.batch_id, ctx.attempt)))
    tasks = yard.runtime.tasks
    tasks.directed.listen()
    yard.add_items("ev", [1], max_batch_size=1, on_flush="sink")
    [theirs] = tasks.claim("another", 5, LEASE, yard.runtime.now())
    assert directed(yard, "mine") == []
    assert batch_attempts(yard, "ev::0") == 0  # not started by the claim that lost
    assert run(yard, theirs) is None
    assert arrived == [("ev::0", 1)]
    assert history(yard) == [("ev::0", 1, "completed")]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_directed_claim_skips_a_task_whose_claim_is_under_way(yard):
    """Another worker's claim has locked the task and not committed yet: the directed
    claim neither waits for it nor starts the flush (PostgreSQL only: on SQLite the two
    transactions cannot overlap)."""
    tasks, now = yard.runtime.tasks, yard.runtime.now()
    yard.handler("sink")(lambda items, ctx: None)
    tasks.directed.listen()
    yard.add_items("ev", [1], max_batch_size=1, on_flush="sink")
    got: list[object] = []
    with yard.store.transaction(now) as tx:
        claimed = tx.all(sql.CLAIM_SQL, {"limit": 5, "worker_id": "another", "lease": LEASE})
        assert len(claimed) == 1
        thread = threading.Thread(target=lambda: got.append(directed(yard, "mine")))
        thread.start()
        thread.join(30)
        waited = thread.is_alive()  # (if so, it goes on once this commits)
    thread.join()
    assert not waited, "the directed claim waited for the other claim"
    assert got == [[]]
    assert batch_attempts(yard, "ev::0") == 0
    with yard.store.transaction(write=False) as tx:
        row = tx.one("SELECT worker_id, token FROM batchyard_tasks")
    assert (row["worker_id"], row["token"]) == ("another", 1)


def test_a_directed_claim_leaves_a_handler_limited_elsewhere_to_the_limited_claim(make_yard, clock):
    here, elsewhere = make_yard(clock=clock), make_yard(clock=clock)
    here.handler("lim")(lambda items, ctx: None)  # no limit known in this process
    elsewhere.handler("lim", concurrency=1)(lambda items, ctx: None)
    elsewhere.runtime.tasks.publish_limits(elsewhere.runtime.handlers.limits(), clock.time())
    here.runtime.tasks.directed.listen()
    here.add_items("lim", [1], max_batch_size=1, on_flush="lim")
    assert directed(here, "mine") == []
    assert batch_attempts(here, "lim::0") == 0
    # the limited claim takes it (the claim of a process that knows the limit)
    [task] = elsewhere.runtime.tasks.claim("theirs", 5, LEASE, clock.time())
    assert task.key == "flush:lim::0"


def test_only_a_worker_that_listens_hears_what_is_queued_and_at_most_its_free_threads(yard):
    yard.handler("sink")(lambda items, ctx: None)
    tasks = yard.runtime.tasks
    yard.add_items("a", [1], max_batch_size=1, on_flush="sink")
    tasks.directed.listen()
    yard.add_items("b", [1, 2, 3], max_batch_size=1, on_flush="sink")
    yard.add_items("c", [1, 2], max_batch_size=1, on_flush="sink", ordered=True)
    # one free thread: the first announced; the rest are the claim loop's, as is "a"
    # (queued before anyone listened) and the ordered successor (parked, never announced)
    [task] = directed(yard, "mine", limit=1)
    assert task.key == "flush:b::0"
    assert directed(yard, "mine") == []
    claimed = tasks.claim("mine", 10, LEASE, yard.runtime.now())
    assert sorted(t.key for t in claimed) == [
        "flush:a::0",
        "flush:b::1",
        "flush:b::2",
        "flush:c::0",
    ]
    tasks.directed.stop_listening()
    yard.add_items("d", [1], max_batch_size=1, on_flush="sink")
    tasks.directed.listen()
    assert directed(yard, "mine") == []


def test_a_running_worker_flushes_every_batch_once_however_its_threads_are_taken(make_yard):
    yard = make_yard()
    arrived: list[tuple[str, int]] = []
    lock = threading.Lock()

    @yard.handler("sink")
    def sink(items, ctx):
        with lock:
            arrived.append((ctx.batch_id, ctx.attempt))
        time.sleep(0.002)  # threads stay busy now and then: some flushes go by the loop

    worker = yard.worker(concurrency=2, prefetch=1, poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        for n in range(60):
            yard.add_items(f"ev{n % 3}", [n, n], max_batch_size=2, on_flush="sink")
        wait_until(lambda: len(arrived) >= 60, what="every batch flushed")
    finally:
        stop(yard, worker, thread)
    assert sorted(arrived) == sorted({(f"ev{n % 3}::{n // 3}", 1) for n in range(60)})
    assert len(history(yard)) == 60
    with yard.store.transaction(write=False) as tx:
        assert tx.one(COUNT_FLUSHES, {"kind": FLUSH_TASK})["n"] == 0


def test_what_the_claim_loop_took_first_is_not_claimed_again_by_key(yard, monkeypatch):
    yard.handler("sink")(lambda items, ctx: None)
    tasks = yard.runtime.tasks
    tasks.directed.listen()
    yard.add_items("ev", [1, 2], max_batch_size=1, on_flush="sink")
    claimed = tasks.claim("mine", 5, LEASE, yard.runtime.now())
    assert [t.key for t in claimed] == ["flush:ev::0", "flush:ev::1"]
    counter = WriteCounter(yard.store, monkeypatch)
    assert directed(yard, "mine") == []
    assert counter.writes == {}  # not even a transaction to learn it


def test_a_forked_child_announces_nothing_and_waits_for_no_lock_of_its_parent(yard):
    # the parent's workers do not live in a child, and a lock one of the parent's threads
    # held at fork() would be held for ever there: the child's add that closes a batch
    # would hang announcing its flush
    import os
    import signal

    yard.handler("noop")(lambda items, ctx: None)
    announced = yard.runtime.tasks.directed
    announced.listen()  # a worker of the parent listens
    announced._lock.acquire()  # another thread of the parent holds the lock at fork()
    try:
        pid = os.fork()
        if pid == 0:  # the child: 0 once its add went through unannounced, 3 if it hung
            signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
            signal.alarm(10)
            code = 1
            try:
                yard.add_items("child", [1], max_batch_size=1, on_flush="noop")
                code = 0 if not announced._announced else 4
            finally:
                os._exit(code)
    finally:
        announced._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    announced.stop_listening()
