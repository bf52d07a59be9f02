"""Iterator jobs against SIGKILL, restarts, and pause/resume races, in real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from batchyard import Yard
from tests.processes import app_env, recorded
from tests.servers import wait_until

HERE = Path(__file__).parent
ROWS = 2_000


STARTED: list[subprocess.Popen] = []


def worker(env):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchyard",
            "worker",
            "--app",
            "iterator_app:yard",
            "--concurrency",
            "2",
            "--lease",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    yield
    while STARTED:  # a test that failed half-way must not leave a worker running
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def env(store_url, tmp_path):
    return app_env(store_url, tmp_path / "c", HERE)


@pytest.fixture
def yard(env):
    sys.path.insert(0, str(HERE))
    yard = Yard(env["BATCHYARD_STORE"])
    yard.handler("numbers")(lambda c, s: None)  # names only: the workers run the real ones
    yard.handler("log")(lambda items, ctx: None)
    yield yard
    yard.close()


@pytest.mark.slow
def test_pause_kill_resume_processes_exactly_the_rest_and_cancel_survives(yard, env):
    for job in ("a", "b"):
        yard.start_iterator(
            job,
            batch_size=50,
            get_next_batch="numbers",
            process_batch="log",
            delay_between_batches=0,
        )
    proc = worker(env)
    wait_until(
        lambda: yard.get_iterator_status("a").processed >= 0.4 * ROWS,
        60.0,
        "40% of job a",
        interval=0.02,
    )
    paused = yard.pause_iterator("a")
    wait_until(
        lambda: yard.get_iterator_status("b").processed >= 0.6 * ROWS,
        60.0,
        "60% of job b",
        interval=0.02,
    )
    yard.cancel_iterator("b")
    cancelled_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoint = yard.get_iterator_status("a")
    assert checkpoint.status == "paused" and checkpoint.processed >= paused.processed
    before = len(recorded(env["RECORD_PATH"]))

    proc = worker(env)  # a new worker; the cancel and the pause survive the restart
    time.sleep(1.0)
    assert yard.get_iterator_status("a").status == "paused"
    yard.resume_iterator("a")
    wait_until(
        lambda: yard.get_iterator_status("a").status == "completed",
        60.0,
        "job a to complete",
        interval=0.02,
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)

    after = [c for c in recorded(env["RECORD_PATH"])[before:] if c["job"] == "a"]
    rest = [i for c in after for i in c["items"]]
    assert rest == list(range(checkpoint.processed, ROWS))  # exactly the remaining rows
    assert yard.get_iterator_status("a").processed == ROWS
    late_b = [c for c in recorded(env["RECORD_PATH"]) if c["job"] == "b" and c["at"] > cancelled_at]
    assert late_b == [] or all(c["at"] - cancelled_at < 0.5 for c in late_b)  # only in flight
    assert yard.get_iterator_status("b").status == "cancelled"


@pytest.mark.slow
def test_pause_and_resume_during_a_batch_never_make_two_runners(make_yard):
    yard = make_yard()
    active, peak, seen = [0], [0], []
    lock = threading.Lock()

    @yard.handler("numbers")
    def numbers(cursor, batch_size):
        start = cursor or 0
        items = list(range(start, min(400, start + batch_size)))
        return {"items": items, "cursor": start + len(items), "done": start + len(items) >= 400}

    @yard.handler("slow")
    def slow(items, ctx):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
            seen.extend(items)

    worker_ = yard.worker(concurrency=4, poll_interval=0.05)
    thread = threading.Thread(target=worker_.run)
    thread.start()
    yard.start_iterator(
        "j", batch_size=10, get_next_batch="numbers", process_batch="slow", delay_between_batches=0
    )
    for _ in range(15):
        time.sleep(0.03)
        yard.pause_iterator("j")
        yard.resume_iterator("j")
    wait_until(
        lambda: yard.get_iterator_status("j").status == "completed",
        60.0,
        "job j to complete",
        interval=0.02,
    )
    worker_.stop()
    thread.join()
    assert peak[0] == 1, f"{peak[0]} handler calls ran at once for one job"
    assert sorted(set(seen)) == list(range(400))
    assert yard.get_iterator_status("j").processed == 400


@pytest.mark.slow
def test_sigkill_between_transactional_writes_and_commit_loses_and_duplicates_nothing(yard, env):
    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE iter_sink (n INTEGER NOT NULL)")  # no key: duplicates show
    yard.handler("sink")(lambda items, ctx: None)
    yard.start_iterator(
        "t",
        batch_size=50,
        get_next_batch="numbers",
        process_batch="sink",
        delay_between_batches=0,
        transactional=True,
    )
    env = {**env, "HANDLER_SLEEP": "0.3"}
    kills = 0
    for _ in range(3):  # kill inside the handler's transaction, after its writes
        proc = worker(env)
        seen = len(recorded(env["RECORD_PATH"]))
        wait_until(
            lambda seen=seen: len(recorded(env["RECORD_PATH"])) > seen + 1,
            60.0,
            "two more handler calls",
            interval=0.02,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    killed_batches = len(recorded(env["RECORD_PATH"])) - yard.get_iterator_status("t").batches
    assert killed_batches >= kills  # each kill landed between the writes and the commit

    proc = worker({**env, "HANDLER_SLEEP": "0"})
    wait_until(
        lambda: yard.get_iterator_status("t").status == "completed",
        60.0,
        "job t to complete",
        interval=0.02,
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    with yard.store.transaction(write=False) as tx:
        stored = [row["n"] for row in tx.all("SELECT n FROM iter_sink ORDER BY n")]
    assert stored == list(range(ROWS))  # every row once: none lost, none twice
    assert yard.get_iterator_status("t").processed == ROWS
