"""The store contract and the task queue over it: every behaviour, on both backends."""

from __future__ import annotations

import threading

import orjson
import pytest

from batchyard import LeaseLost, NotFound, StoreError
from batchyard.store import open_store
from batchyard.tasks import TaskQueue

KIND = "test.kind"


@pytest.fixture
def store(store_url):
    store = open_store(store_url)
    yield store
    store.close()


@pytest.fixture
def queue(store):
    return TaskQueue(store)


def enqueue(queue, now, **kwargs):
    with queue.store.transaction(now) as tx:
        queue.enqueue(tx, KIND, kwargs.pop("payload", {"n": 1}), **kwargs)


def test_migrations_apply_from_empty_and_are_idempotent(store):
    latest = store.latest_version()
    assert store.schema_version() == latest >= 1
    assert store.migrate() == latest
    with store.transaction() as tx:
        rows = tx.all("SELECT version FROM batchyard_schema ORDER BY version")
    assert [r["version"] for r in rows] == [m.version for m in store.migrations()]


def test_an_older_schema_is_upgraded_in_order(store_url):
    store = open_store(store_url, migrate=False)
    if store.schema_version() == 0:  # SQLite: a new file; PostgreSQL clones are migrated
        first = store.migrations()[0]
        with store.transaction() as tx:
            tx.execute(
                "CREATE TABLE batchyard_schema (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            store._run_script(tx, first.sql)
            tx.execute(
                "INSERT INTO batchyard_schema VALUES (:v, :n, 0)",
                {"v": first.version, "n": first.name},
            )
        assert store.schema_version() == first.version
    assert store.migrate() == store.latest_version()
    with store.transaction() as tx:
        tx.execute("SELECT count(*) AS n FROM batchyard_events")  # from a later migration
    store.close()


def test_a_statement_alone_is_its_own_transaction(store_url, store, clock):
    insert = "INSERT INTO batchyard_batch_bases (base_id) VALUES (:base) ON CONFLICT DO NOTHING"
    assert store.execute(insert, {"base": "a"}, clock.time()) == 1
    assert store.execute(insert, {"base": "a"}, clock.time()) == 0  # nothing changed
    row = store.one(
        "UPDATE batchyard_batch_bases SET next_sequence = 7 WHERE base_id = :base "
        "RETURNING base_id, next_sequence",
        {"base": "a"},
        clock.time(),
    )
    assert (row["base_id"], row["next_sequence"]) == ("a", 7)
    assert (
        store.one("DELETE FROM batchyard_batch_bases WHERE base_id = 'none' RETURNING base_id", {})
        is None
    )
    with pytest.raises(StoreError):  # a failing statement leaves nothing behind
        store.execute(
            "INSERT INTO batchyard_batch_bases (base_id) VALUES (:base), (:base)", {"base": "b"}
        )
    other = open_store(store_url)  # committed on return: another connection sees it
    with other.transaction(write=False) as tx:
        rows = tx.all("SELECT base_id, next_sequence FROM batchyard_batch_bases")
    assert [(r["base_id"], r["next_sequence"]) for r in rows] == [("a", 7)]
    other.close()


def test_dicts_are_plain_dicts_by_column_name_with_the_values_as_stored(store):
    with store.transaction() as tx:
        tx.execute("CREATE TABLE dict_rows (id BIGINT PRIMARY KEY, x DOUBLE PRECISION, body TEXT)")
        tx.executemany(
            "INSERT INTO dict_rows (id, x, body) VALUES (:id, :x, :body)",
            [
                {"id": 1, "x": 0.1 + 0.2, "body": "it's"},
                {"id": 2**62, "x": None, "body": 'a "b"'},
                {"id": 2**63 - 1, "x": -1733570000.987654, "body": "\u00e9\u2028\U0001f600"},
            ],
        )
    with store.transaction(write=False) as tx:
        rows = tx.dicts(
            'SELECT id, x, body AS "it\'s {x}", id AS "n" FROM dict_rows WHERE id > :low '
            "ORDER BY id",
            {"low": 0},
        )
        one = tx.dicts("SELECT body FROM dict_rows WHERE id = 1")
        none = tx.dicts("SELECT body FROM dict_rows WHERE id = 3")
    assert rows == [
        {"id": 1, "x": 0.1 + 0.2, "it's {x}": "it's", "n": 1},
        {"id": 2**62, "x": None, "it's {x}": 'a "b"', "n": 2**62},
        {
            "id": 2**63 - 1,
            "x": -1733570000.987654,
            "it's {x}": "\u00e9\u2028\U0001f600",
            "n": 2**63 - 1,
        },
    ]
    assert all(type(row) is dict for row in rows)
    assert (one, none) == ([{"body": "it's"}], [])


def test_parameters_bind_by_name_however_often_and_wherever_they_come(store, clock):
    # a name used twice binds one value; a cast's '::' and a ':' in a literal are no names;
    # a statement of one parameter, and of none but the clock's
    with store.transaction(clock.time()) as tx:
        row = tx.one(
            "SELECT :a AS a, :b AS b, :a + :b AS total, CAST('x::y' AS TEXT) AS t, "
            "'k:v' AS kv, {now} AS now",
            {"b": 2, "a": 40, "unused": "ignored"},
        )
        alone = tx.one("SELECT :only AS only", {"only": "one"})
        clock_only = tx.one("SELECT {now} AS now")
    assert dict(row) == {
        "a": 40,
        "b": 2,
        "total": 42,
        "t": "x::y",
        "kv": "k:v",
        "now": clock.time(),
    }
    assert (alone["only"], clock_only["now"]) == ("one", clock.time())
    assert (
        store.execute("UPDATE batchyard_schema SET name = name WHERE version = :v", {"v": 1}) == 1
    )


def test_a_statement_alone_never_joins_a_transaction_the_thread_holds_open(store, clock):
    """On PostgreSQL it runs on a connection of its own and commits alone; SQLite's one
    write connection is the open transaction's, so there it is refused."""
    insert = "INSERT INTO batchyard_batch_bases (base_id) VALUES (:base)"

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), store.transaction(clock.time()) as tx:
        tx.execute(insert, {"base": "outer"})
        if store.dialect == "sqlite":
            with pytest.raises(StoreError, match="inside a transaction"):
                store.execute(insert, {"base": "alone"}, clock.time())
        else:
            assert store.execute(insert, {"base": "alone"}, clock.time()) == 1
        raise Abandon  # the outer transaction rolls back
    with store.transaction(write=False) as tx:
        rows = tx.all("SELECT base_id FROM batchyard_batch_bases")
    assert [r["base_id"] for r in rows] == ([] if store.dialect == "sqlite" else ["alone"])


def test_a_secret_is_made_once_and_shared_by_every_process(store_url, store):
    other = open_store(store_url)  # another process's view of the same store
    first = store.secret("a")
    assert len(first) == 32 and other.secret("a") == first == store.secret("a")
    assert store.secret("b") != first
    other.close()


def test_a_task_is_not_claimed_before_it_is_due(store, clock, queue):
    enqueue(queue, clock.time(), delay=10)
    assert queue.claim("w", 10, lease=30, now=clock.time()) == []
    clock.advance(10)
    [task] = queue.claim("w", 10, lease=30, now=clock.time())
    assert task.kind == KIND and task.payload == {"n": 1} and task.attempts == 1


def test_claim_takes_many_in_due_order_and_respects_the_limit(store, clock, queue):
    for n in range(5):
        enqueue(queue, clock.time() - n, payload={"n": n})
    first = queue.claim("w", 3, lease=30, now=clock.time())
    assert {t.payload["n"] for t in first} == {4, 3, 2}  # the three due earliest
    rest = queue.claim("w", 3, lease=30, now=clock.time())
    assert len(rest) == 2
    assert {t.payload["n"] for t in first + rest} == set(range(5))


def test_a_running_task_is_not_claimed_twice_until_its_lease_expires(store, clock, queue):
    enqueue(queue, clock.time())
    [task] = queue.claim("w1", 1, lease=30, now=clock.time())
    clock.advance(29)
    assert queue.claim("w2", 1, lease=30, now=clock.time()) == []
    clock.advance(2)
    [rescued] = queue.claim("w2", 1, lease=30, now=clock.time())
    assert rescued.id == task.id
    assert rescued.token > task.token
    assert rescued.attempts == 2


def test_a_stale_token_cannot_complete_retry_or_dead_letter(store, clock, queue):
    enqueue(queue, clock.time())
    [stale] = queue.claim("w1", 1, lease=5, now=clock.time())
    clock.advance(6)
    [fresh] = queue.claim("w2", 1, lease=5, now=clock.time())
    for write in (
        lambda tx: queue.complete(tx, stale),
        lambda tx: queue.retry(tx, stale, "boom", 1),
        lambda tx: queue.dead_letter(tx, stale, "boom"),
    ):
        with pytest.raises(LeaseLost), store.transaction(clock.time()) as tx:
            write(tx)
    with store.transaction(clock.time()) as tx:
        queue.complete(tx, fresh)
    assert queue.claim("w3", 1, lease=5, now=clock.time() + 100) == []


def test_a_refused_completion_rolls_back_the_callers_writes(store, clock, queue):
    enqueue(queue, clock.time())
    [stale] = queue.claim("w1", 1, lease=5, now=clock.time())
    clock.advance(6)
    queue.claim("w2", 1, lease=5, now=clock.time())
    with pytest.raises(LeaseLost), store.transaction(clock.time()) as tx:
        tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('written')")
        queue.complete(tx, stale)
    with store.transaction() as tx:
        assert tx.one("SELECT count(*) AS n FROM batchyard_batch_bases")["n"] == 0


def test_claim_group_takes_only_its_kind_and_key_prefix_in_due_order(store, clock, queue):
    keys = ["job:a:0", "job:A:1", "job:ab:2", "jobXa:3", "job:a:4", "job:a:5", "job:a:6"]
    for n, key in enumerate(keys):
        enqueue(queue, clock.time() - 10 + n, key=key, payload={"n": n})
    enqueue(queue, clock.time() - 20, key="other", payload={"n": -1})
    with store.transaction(clock.time()) as tx:  # the right prefix, another kind
        queue.enqueue(tx, "other.kind", {"n": -2}, key="job:a:other")
    group = queue.claim_group("w", KIND, "job:a:", 3, lease=30, now=clock.time())
    assert [t.key for t in group] == ["job:a:0", "job:a:4", "job:a:5"]
    assert all(t.attempts == 1 and t.token == 1 for t in group)
    assert [
        t.key for t in queue.claim_group("w", KIND, "job:a:", 3, lease=30, now=clock.time())
    ] == ["job:a:6"]
    rest = queue.claim("w", 10, lease=30, now=clock.time())
    assert sorted(t.key for t in rest) == ["job:A:1", "job:a:other", "job:ab:2", "jobXa:3", "other"]


def test_complete_many_is_refused_whole_when_one_token_is_stale(store, clock, queue):
    for _ in range(3):
        enqueue(queue, clock.time())
    tasks = queue.claim("w1", 3, lease=5, now=clock.time())
    clock.advance(6)
    [fresh] = queue.claim("w2", 1, lease=5, now=clock.time())  # takes one over
    with pytest.raises(LeaseLost), store.transaction(clock.time()) as tx:
        tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('written')")
        queue.complete_many(tx, tasks)
    with store.transaction() as tx:
        assert tx.one("SELECT count(*) AS n FROM batchyard_batch_bases")["n"] == 0
        assert tx.one("SELECT count(*) AS n FROM batchyard_tasks")["n"] == 3
    held = [task for task in tasks if task.id != fresh.id]
    with store.transaction(clock.time()) as tx:
        queue.complete_many(tx, [*held, fresh])
    assert queue.claim("w3", 10, lease=5, now=clock.time() + 100) == []


def test_heartbeat_extends_the_lease_and_reports_lost_ones(store, clock, queue):
    enqueue(queue, clock.time())
    enqueue(queue, clock.time())
    a, b = queue.claim("w1", 2, lease=10, now=clock.time())
    clock.advance(8)
    assert queue.heartbeat("w1", [a], lease=10, now=clock.time()) == set()
    clock.advance(5)  # a's lease runs to 18, b's ran out at 10
    [rescued] = queue.claim("w2", 2, lease=10, now=clock.time())
    assert rescued.id == b.id
    assert queue.heartbeat("w1", [a, b], lease=10, now=clock.time()) == {b.id}


def test_retry_requeues_after_the_delay_with_the_error(store, clock, queue):
    enqueue(queue, clock.time())
    [task] = queue.claim("w", 1, lease=30, now=clock.time())
    with store.transaction(clock.time()) as tx:
        queue.retry(tx, task, "ValueError: nope", delay=4)
    assert queue.claim("w", 1, lease=30, now=clock.time() + 3.9) == []
    [again] = queue.claim("w", 1, lease=30, now=clock.time() + 4)
    assert again.attempts == 2 and again.last_error == "ValueError: nope"


def test_dead_letters_keep_their_error_and_can_be_redriven(store, clock, queue):
    enqueue(queue, clock.time(), key="k1", max_attempts=1)
    [task] = queue.claim("w", 1, lease=30, now=clock.time())
    with store.transaction(clock.time()) as tx:
        queue.dead_letter(tx, task, "RuntimeError: gone")
    assert queue.claim("w", 1, lease=30, now=clock.time() + 1000) == []
    [dead] = queue.dead_tasks(KIND)
    assert dead["last_error"] == "RuntimeError: gone" and dead["key"] == "k1"
    with store.transaction(clock.time()) as tx:
        assert queue.redrive(tx, key="k1") == task.id
    [again] = queue.claim("w", 1, lease=30, now=clock.time())
    assert again.id == task.id and again.attempts == 1
    assert queue.dead_tasks(KIND) == []
    with pytest.raises(NotFound), store.transaction(clock.time()) as tx:
        queue.redrive(tx, key="k1")


def test_a_keyed_task_is_brought_forward_not_duplicated(store, clock, queue):
    enqueue(queue, clock.time(), key="flush:x", delay=60)
    enqueue(queue, clock.time(), key="flush:x", delay=0)
    enqueue(queue, clock.time(), key="flush:x", delay=120)  # never pushes it back
    tasks = queue.claim("w", 10, lease=30, now=clock.time())
    assert len(tasks) == 1


def test_release_gives_the_lease_back_without_counting_an_attempt(store, clock, queue):
    enqueue(queue, clock.time())
    [task] = queue.claim("w1", 1, lease=30, now=clock.time())
    queue.release([task], now=clock.time())
    [again] = queue.claim("w2", 1, lease=30, now=clock.time())
    assert again.id == task.id and again.attempts == 1


def test_next_due_tells_how_long_an_idle_worker_may_sleep(store, clock, queue):
    assert queue.next_due(clock.time()) is None
    enqueue(queue, clock.time(), delay=7)
    assert queue.next_due(clock.time()) == pytest.approx(7)
    assert queue.next_due(clock.time() + 10) == 0


def test_concurrent_claimers_take_each_task_exactly_once(store_url):
    stores = [open_store(store_url) for _ in range(4)]
    queues = [TaskQueue(store) for store in stores]
    with stores[0].transaction() as tx:
        for n in range(200):
            queues[0].enqueue(tx, KIND, {"n": n})
    taken: list[list[int]] = [[] for _ in stores]

    def claim_all(index: int) -> None:
        store, queue = stores[index], queues[index]
        while tasks := queue.claim(f"w{index}", 7, lease=60):
            with store.transaction() as tx:
                for task in tasks:
                    queue.complete(tx, task)
            taken[index].extend(t.payload["n"] for t in tasks)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    everything = [n for part in taken for n in part]
    assert sorted(everything) == list(range(200))


def test_an_idle_worker_wakes_when_another_process_makes_work_due(store_url):
    waiter, writer = open_store(store_url), open_store(store_url)
    woke = threading.Event()

    def wait() -> None:
        waiter.wait_for_work(timeout=60)  # would sleep a minute without a wake-up
        woke.set()

    thread = threading.Thread(target=wait)
    thread.start()
    try:
        # keep enqueueing until the waiter is listening; each enqueue is a separate commit
        for _ in range(200):
            with writer.transaction() as tx:
                TaskQueue(writer).enqueue(tx, KIND, {})
            if woke.wait(0.05):
                break
        assert woke.is_set()
    finally:
        waiter._wakeup.set()
        thread.join()
        waiter.close()
        writer.close()


FENCED_WRITES = {
    "complete": lambda queue, tx, task: queue.complete(tx, task),
    "retry": lambda queue, tx, task: queue.retry(tx, task, "boom", 1.0),
    "dead_letter": lambda queue, tx, task: queue.dead_letter(tx, task, "boom"),
    "postpone": lambda queue, tx, task: queue.postpone(tx, task, 1.0),
    "fence": lambda queue, tx, task: queue.fence(tx, task),
}


@pytest.mark.parametrize("write", list(FENCED_WRITES))
def test_a_stale_token_fails_a_pipelined_transaction_whole(store, clock, queue, write):
    # In a pipelined transaction no statement's result is known before the commit is sent:
    # the fenced write must fail by itself, and take the writes around it down with it.
    enqueue(queue, clock.time())
    [stale] = queue.claim("w1", 1, lease=5, now=clock.time())
    clock.advance(6)
    [fresh] = queue.claim("w2", 1, lease=5, now=clock.time())  # takes it over
    with pytest.raises(LeaseLost), store.transaction(clock.time(), pipeline=True) as tx:
        tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('before')")
        FENCED_WRITES[write](queue, tx, stale)
        tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('after')")
    with store.transaction() as tx:
        assert tx.all("SELECT base_id FROM batchyard_batch_bases") == []
        assert tx.all("SELECT id FROM batchyard_dead_tasks") == []
        row = tx.one("SELECT state, token, worker_id, attempts FROM batchyard_tasks")
    assert dict(row) == {"state": "running", "token": fresh.token, "worker_id": "w2", "attempts": 2}
    # the same transaction with the live token commits whole
    with store.transaction(clock.time(), pipeline=True) as tx:
        tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('before')")
        FENCED_WRITES[write](queue, tx, fresh)
        tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('after')")
    with store.transaction() as tx:
        assert len(tx.all("SELECT base_id FROM batchyard_batch_bases")) == 2


@pytest.mark.parametrize("read_first", [False, True], ids=["unread", "read mid-block"])
def test_an_error_raised_in_a_pipelined_transaction_commits_nothing(store, clock, read_first):
    # On PostgreSQL a pipelined transaction commits when its pipeline syncs, which happens on
    # leaving the block even when the block raised: what was sent before must be undone.
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction(clock.time(), pipeline=True) as tx:
        tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('sent')")
        if read_first:  # the pipeline is flushed here: the insert has run on the server
            assert tx.one("SELECT count(*) AS n FROM batchyard_batch_bases")["n"] == 1
        raise Boom
    with store.transaction(clock.time(), pipeline=True) as tx:
        tx.execute("INSERT INTO batchyard_batch_bases (base_id) VALUES ('next')")
    with store.transaction() as tx:
        assert [r["base_id"] for r in tx.all("SELECT base_id FROM batchyard_batch_bases")] == [
            "next"
        ]


def test_rows_asked_for_later_are_read_after_a_pipelined_commit(store, clock, queue):
    for n in range(3):
        enqueue(queue, clock.time(), payload={"n": n})
    with store.transaction(clock.time(), pipeline=True) as tx:
        rows = tx.later("SELECT payload FROM batchyard_tasks ORDER BY id")
        count = tx.later("SELECT count(*) AS n FROM batchyard_tasks")
        tx.execute("DELETE FROM batchyard_tasks")
    assert [orjson.loads(r["payload"])["n"] for r in rows.all()] == [0, 1, 2]
    assert count.all()[0]["n"] == 3
