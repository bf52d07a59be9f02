"""The worker: claim due tasks, run them, record the outcome; heartbeat; stop gracefully.

One claim loop per worker takes as many due tasks as it has free slots, in one statement, and
hands them to a thread pool. Expired leases are rescued by that same claim (a running task
whose lease ran out is simply due), so there is no separate reaper to forget. A heartbeat
thread extends the leases of the tasks in flight. On SIGTERM/SIGINT the worker stops
claiming, lets in-flight work finish up to `shutdown_timeout`, and gives the remaining leases
back; a second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING

from batchyard import metrics
from batchyard.errors import LeaseLost
from batchyard.retry import RetryPolicy
from batchyard.store import Task

if TYPE_CHECKING:
    from batchyard.yard import Yard

log = logging.getLogger("batchyard.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs a yard's tasks. Build it with `Yard.run_worker`."""

    def __init__(
        self,
        yard: Yard,
        *,
        concurrency: int = 4,
        lease: float = 30.0,
        shutdown_timeout: float = 30.0,
        poll_interval: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.yard = yard
        self.store = yard.store
        self.concurrency = concurrency
        self.lease = lease
        self.shutdown_timeout = shutdown_timeout
        self.poll_interval = poll_interval
        self.id = new_worker_id()
        self._inflight: dict[int, Task] = {}
        self._lock = threading.Lock()
        self._slot_freed = threading.Event()
        self._stopping = threading.Event()
        self._stopping_done = threading.Event()
        self.tasks_run = 0
        yard.worker_id = self.id

    # -- public ---------------------------------------------------------------------------

    def run_until_idle(self) -> int:
        """Run every task that is due now (and any that fall due meanwhile); return how
        many ran. The mode for tests and cron."""
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="batchyard") as pool:
            while True:
                tasks = self.store.claim(self.id, self.concurrency, self.lease, self.yard.now())
                if not tasks:
                    return self.tasks_run
                if self.concurrency == 1:
                    for task in tasks:
                        self._execute(task)
                else:
                    list(pool.map(self._execute, tasks))

    def run(self) -> None:
        """Run until `stop()` or a signal."""
        self._register()
        restore = self._install_signal_handlers()
        beat = threading.Thread(target=self._heartbeat_loop, name="batchyard-heartbeat",
                                daemon=True)
        beat.start()
        pool = _DaemonPool(self.concurrency)
        try:
            self.yard._schedule_maintenance()
            while not self._stopping.is_set():
                if not self._claim_into(pool):
                    self._idle()
            self._drain_inflight()
        finally:
            pool.shutdown()
            restore()
            self._unregister()
            log.info("worker %s stopped after %d tasks", self.id, self.tasks_run)

    def stop(self) -> None:
        """Ask the worker to stop claiming and finish what it holds."""
        self._stopping.set()
        self._slot_freed.set()
        self.store._wakeup.set()

    # -- the loop -------------------------------------------------------------------------

    def _claim_into(self, pool: _DaemonPool) -> bool:
        with self._lock:
            free = self.concurrency - len(self._inflight)
        if free <= 0:
            return False
        tasks = self.store.claim(self.id, free, self.lease, self.yard.now())
        for task in tasks:
            with self._lock:
                self._inflight[task.id] = task
            pool.submit(lambda task=task: self._execute_and_free(task))
        return bool(tasks)

    def _idle(self) -> None:
        with self._lock:
            busy = len(self._inflight) >= self.concurrency
        if busy:
            self._slot_freed.wait(self.poll_interval)
            self._slot_freed.clear()
            return
        wait = self.poll_interval
        due = self.store.next_due(self.yard.now())
        if due is not None:
            wait = min(wait, due)
        if wait > 0:
            self.store.wait_for_work(wait)

    def _execute_and_free(self, task: Task) -> None:
        try:
            self._execute(task)
        finally:
            with self._lock:
                self._inflight.pop(task.id, None)
            self._slot_freed.set()
            self.store._wakeup.set()  # a free slot: look for more work at once

    def _execute(self, task: Task) -> None:
        runner = self.yard._runners.get(task.kind)
        started = time.perf_counter()
        try:
            if runner is None:
                raise LookupError(f"no runner for task kind {task.kind!r}")
            runner(task)
        except LeaseLost as exc:
            log.warning("stale result refused: %s", exc)
        except Exception as exc:
            log.exception("task %s (%s) failed", task.id, task.kind)
            self._fail(task, f"{type(exc).__name__}: {exc}")
        finally:
            self.tasks_run += 1
            metrics.TASK_DURATION.labels(task.kind).observe(time.perf_counter() - started)

    def _fail(self, task: Task, error: str) -> None:
        policy = RetryPolicy(**{**self.yard.retry.__dict__, "max_attempts": task.max_attempts})
        delay = policy.next_delay(task.attempts)
        try:
            with self.store.transaction(self.yard.now()) as tx:
                if delay is None:
                    self.store.dead_letter(tx, task, error)
                    on_dead = self.yard._on_dead.get(task.kind)
                    if on_dead is not None:  # the capability's books, in the same commit
                        on_dead(tx, task, error)
                else:
                    self.store.retry(tx, task, error, delay)
        except LeaseLost as exc:
            log.warning("stale failure refused: %s", exc)

    def _heartbeat_loop(self) -> None:
        every = self.lease / 3
        while not self._stopping.wait(every):
            self._beat()
        # keep leases alive while in-flight work drains after a stop
        while self._inflight and not self._stopping_done.wait(every):
            self._beat()

    def _beat(self) -> None:
        with self._lock:
            tasks = list(self._inflight.values())
        try:
            lost = self.store.heartbeat(self.id, tasks, self.lease, self.yard.now())
        except Exception:
            log.exception("heartbeat failed")
            return
        for task_id in lost:
            log.warning("lease of task %s was lost; its result will be refused", task_id)

    def _drain_inflight(self) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._inflight:
                    break
            self._slot_freed.wait(0.05)
            self._slot_freed.clear()
        with self._lock:
            left = list(self._inflight.values())
        self._stopping_done.set()
        if left:
            log.warning("giving back %d unfinished task(s)", len(left))
            self.store.release(left, self.yard.now())

    # -- process housekeeping -------------------------------------------------------------

    def _register(self) -> None:
        with self.store.transaction(self.yard.now()) as tx:
            tx.execute(
                "INSERT INTO batchyard_workers (id, host, pid, started_at, heartbeat_at) "
                "VALUES (:id, :host, :pid, {now}, {now})",
                {"id": self.id, "host": socket.gethostname(), "pid": os.getpid()},
            )

    def _unregister(self) -> None:
        try:
            with self.store.transaction(self.yard.now()) as tx:
                tx.execute("DELETE FROM batchyard_workers WHERE id = :id", {"id": self.id})
        except Exception:
            log.exception("could not unregister worker %s", self.id)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self._stopping.is_set():
                log.warning("second signal: exiting at once")
                os._exit(128 + signum)
            log.info("signal %d: stopping (again to exit at once)", signum)
            self.stop()

        for sig in previous:
            signal.signal(sig, on_signal)

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


class _DaemonPool:
    """Threads that never hold up the process's exit: once the worker has given back the
    leases of work that did not finish in time, that work is abandoned (its late writes are
    refused by the fencing token), not waited for."""

    def __init__(self, size: int) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"batchyard-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()
