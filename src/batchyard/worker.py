"""The worker: claim due tasks, run them, record the outcome; heartbeat; stop gracefully.

One claim loop per worker takes due tasks in one statement and hands them to a thread pool,
which starts each as soon as a thread is free. The loop claims ahead: it holds up to
`prefetch` units beyond its `concurrency` (claimed, their leases kept, waiting for a
thread), and claims again once that many are taken up - so a thread that finishes finds its
next task waiting instead of waiting for a claim, and one claim serves several tasks.
Expired leases are rescued by that same claim (a running task whose lease ran out is simply
due), so there is no separate reaper to forget. A kind may run its tasks in groups
(`Grouping`): a claimed task of such a kind takes one slot together with its siblings,
claimed with it up to the group's size, and the group is done at once - if that fails, each
of its tasks runs alone, so one bad task retries and dies by itself. A task whose end
claimed the next one for this worker (`TaskKind.run` returns it: the next batch of an
ordered base, a place under a limited handler) runs next on the same thread, without
waiting for the loop; so does a task claimed ahead for the place a running task holds (a
limited handler's, `accumulator.places`), whose run starts as soon as the one before
returns, the end of that one written behind it by a thread of its own. A heartbeat thread
extends the leases of the tasks in flight and of those held without a thread
(`tasks.leases`: claimed ahead, or their end still being written). On
SIGTERM/SIGINT the worker stops claiming (and handing over), lets in-flight work finish up
to `shutdown_timeout`, and gives the remaining leases back; a second signal exits at once.
Tasks queued by this process for now (the flushes of batches that an add closed) go to its
threads that are free by a directed claim, which starts their runs too (`tasks.directed`).

Nothing else ends a worker. An error anywhere in the loop (the store restarting, a full disk,
a bug) is met with backoff, one warning when it starts and one line when it ends (`Outage`);
a task whose runner met an unavailable store is given back without counting its attempt, and
an outcome that cannot be written yet is written once the store answers (the task stays in
flight meanwhile, so its lease is kept). `liveness` says whether the loop still turns.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from batchyard import metrics
from batchyard.daemon_pool import DaemonPool
from batchyard.errors import ConfigError, LeaseLost
from batchyard.failures import error_text, log_failure
from batchyard.settling import Settling
from batchyard.supervision import Backoff, Outage, is_transient, stop_on_signals
from batchyard.tasks import Grouping, Task

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

log = logging.getLogger("batchyard.worker")
# the ids a task's payload may carry, told in its failure's log line
_PAYLOAD_IDS = ("job_id", "chunk", "batch_id")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs a yard's tasks. Build it with `Yard.run_worker`."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int = 8,
        lease: float = 30.0,
        shutdown_timeout: float = 30.0,
        poll_interval: float = 1.0,
        prefetch: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if prefetch is not None and prefetch < 0:
            raise ValueError("prefetch must not be negative")
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.concurrency = concurrency
        self.lease = lease
        self.shutdown_timeout = shutdown_timeout
        self.poll_interval = poll_interval
        # units held beyond the threads: half the concurrency, so that one claim serves a
        # few tasks, while tasks that run long are not hoarded away from other workers (and
        # a worker of one thread holds one task, as asked)
        self.prefetch = concurrency // 2 if prefetch is None else prefetch
        self.id = new_worker_id()
        self._inflight: dict[int, Task] = {}  # every claimed task, for the heartbeat
        self._held = 0  # units claimed and not finished (a task, or a group of tasks)
        self._waiting: collections.deque[list[Task]] = collections.deque()  # not started
        self._look = True  # whether a claim looks first (not when the last came back full)
        self._lock = threading.Lock()
        self._slot_freed = threading.Event()
        self._stopping = threading.Event()
        self._stopping_done = threading.Event()
        self.tasks_run = 0
        self.outage = Outage(log, "worker")
        self.settling = Settling(runtime, self.outage, self._stopping_done)
        self.last_cycle: float | None = None  # time.monotonic() of the loop's last good turn
        runtime.worker_id = self.id
        runtime.lease = lease  # a task handed over at another's end is claimed with it
        runtime.handing_over = True

    # -- public ---------------------------------------------------------------------------

    def run_until_idle(self) -> int:
        """Run every task that is due now (and any that fall due meanwhile); return how
        many ran. The mode for tests and cron."""
        self._publish_limits()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="batchyard") as pool:
            while True:
                units = self._claim(self.concurrency)
                if not units:
                    return self.tasks_run
                if self.concurrency == 1:
                    for unit in units:
                        self._execute_unit(unit)
                else:
                    list(pool.map(self._execute_unit, units))

    def run(self) -> None:
        """Run until `stop()` or a signal; ride through everything else (a `ConfigError`
        aside: no amount of waiting mends that)."""
        # handlers first: a worker others can see registered stops gracefully on a signal
        restore = stop_on_signals(self.stop, self._stopping)
        # the threads, the writes behind them (`tasks.leases`), the claim loop and the
        # heartbeat may each use a connection at once
        self.store.reserve_connections(2 * self.concurrency + 2)
        self.runtime.leases.open(self.concurrency)
        beat = threading.Thread(
            target=self._heartbeat_loop, name="batchyard-heartbeat", daemon=True
        )
        beat.start()
        pool = DaemonPool(self.concurrency)
        metrics.WORKER_LOOP_AGE.set_function(self._loop_age)
        registered = False
        backoff = Backoff()
        try:
            while not self._stopping.is_set():
                try:
                    if not registered:
                        self._register()
                        self.runtime.kinds.worker_started()
                        registered = True
                    if not self._claim_into(pool):
                        self._idle()
                except ConfigError:
                    raise
                except Exception as exc:
                    self.outage.failed(exc)
                    self._stopping.wait(backoff.next())
                    continue
                backoff.reset()
                self.outage.ok()
                self.last_cycle = time.monotonic()
            self._drain_inflight()
        finally:
            self._stopping.set()  # the heartbeat ends with the loop, never outlives it
            self._stopping_done.set()
            pool.shutdown()
            self.runtime.leases.close()
            self.store.reserve_connections(-(2 * self.concurrency + 2))
            restore()
            if registered:
                self._unregister()
            log.info("worker %s stopped after %d tasks", self.id, self.tasks_run)

    def liveness(self, within: float) -> str | None:
        """None while the loop turns - it completed a cycle within `within` seconds and is
        not riding out an outage - else what is wrong, in words."""
        if self.outage.active:
            return f"the worker is waiting for the store ({self.outage.last_error})"
        if self.last_cycle is None:
            return "the worker has not completed a cycle yet"
        age = time.monotonic() - self.last_cycle
        if age > within:
            return f"the worker's loop last completed a cycle {age:.0f} s ago"
        return None

    def _loop_age(self) -> float:
        return float("nan") if self.last_cycle is None else time.monotonic() - self.last_cycle

    def stop(self) -> None:
        """Ask the worker to stop claiming and finish what it holds."""
        self.runtime.handing_over = False  # the end of a task claims no other now
        self._stopping.set()
        self._slot_freed.set()
        self.store._wakeup.set()

    # -- the loop -------------------------------------------------------------------------

    def _claim(self, slots: int) -> list[list[Task]]:
        """Claim work for up to `slots` slots: each a task, or a group of tasks. A claim that
        comes back short means nothing more is due: no second claim to learn that."""
        units: list[list[Task]] = []
        while len(units) < slots:
            wanted = slots - len(units)
            tasks = self.tasks.claim(
                self.id, wanted, self.lease, self.runtime.now(), look=self._look
            )
            self._look = len(tasks) < wanted
            units.extend(self._group(tasks))
            if len(tasks) < wanted:
                break
        return units

    def _group(self, tasks: list[Task]) -> list[list[Task]]:
        """Put claimed tasks of one group together and claim the rest of that group."""
        units: list[list[Task]] = []
        groups: dict[tuple[str, str], list[Task]] = {}
        for task in tasks:
            grouping = self._grouping(task.kind)
            prefix = grouping.group(task) if grouping is not None else None
            if prefix is None:
                units.append([task])
            else:
                groups.setdefault((task.kind, prefix), []).append(task)
        for (kind, prefix), group in groups.items():
            grouping = self._grouping(kind)
            assert grouping is not None  # only kinds with a grouping form groups
            size = max(1, grouping.size(group[0]))
            more = size - len(group)
            if more > 0:
                try:
                    group.extend(
                        self.tasks.claim_group(
                            self.id, kind, prefix, more, self.lease, self.runtime.now()
                        )
                    )
                except Exception as exc:  # the group is smaller; what was claimed still runs
                    self.outage.failed(exc)
            # one claim may bring more of a group than it takes at once: a unit each
            units.extend(group[i : i + size] for i in range(0, len(group), size))
        return units

    def _room(self) -> int:
        """Units the loop may claim now: none until `prefetch` of those it holds are taken
        up (or a thread is free), then enough to fill every thread and the read-ahead."""
        with self._lock:
            room = self.concurrency + self.prefetch - self._held
        return room if room >= max(1, self.prefetch) else 0

    def _claim_into(self, pool: DaemonPool) -> bool:
        room = self._room()
        if not room:
            return False
        # first the tasks this process just queued, for the threads free now (only this
        # thread adds to `_held`), started in their claim's transaction (`tasks.directed`)
        free, now = self.concurrency - self._held, self.runtime.now()
        directed = self.tasks.directed.claim(self.id, free, self.lease, now, self.runtime.kinds)
        self._submit(pool, [[task] for task in directed])
        units = self._claim(room - len(directed))
        self._submit(pool, units)
        # a claim that came back short found all that is due: wait for more (`_idle`)
        # rather than claim again at once
        return bool(units) and not self._look

    def _submit(self, pool: DaemonPool, units: list[list[Task]]) -> None:
        for unit in units:
            with self._lock:
                self._inflight.update((task.id, task) for task in unit)
                self._held += 1
                self._waiting.append(unit)
            pool.submit(self._run_next)

    def _run_next(self) -> None:
        """A thread's turn: the unit that has waited longest, if the worker has not given
        it back meanwhile (see `_give_back_waiting`)."""
        with self._lock:
            if not self._waiting:
                return
            unit = self._waiting.popleft()
        self._execute_and_free(unit)

    def _idle(self) -> None:
        if not self._room():
            self._slot_freed.wait(self.poll_interval)
            self._slot_freed.clear()
            return
        wait = self.poll_interval
        due = self.tasks.next_due(self.runtime.now())
        if due is not None:
            wait = min(wait, due)
        if wait > 0:
            self.store.wait_for_work(wait)

    def _execute_and_free(self, unit: list[Task]) -> None:
        try:
            self._execute_unit(unit)
        finally:
            with self._lock:
                for task in unit:
                    self._inflight.pop(task.id, None)
                self._held -= 1
            self._slot_freed.set()
            self.store._wakeup.set()  # a free slot: look for more work at once

    def _grouping(self, name: str) -> Grouping | None:
        kind = self.runtime.kinds.get(name)
        return None if kind is None else kind.grouping

    def _execute_unit(self, unit: list[Task]) -> None:
        if len(unit) > 1:
            started = time.perf_counter()
            try:
                grouping = self._grouping(unit[0].kind)
                assert grouping is not None  # only kinds with a grouping form groups
                grouping.run(unit)
            except Exception as exc:
                # nothing of the group was kept: each task runs alone, so the one that
                # fails is retried or dead by itself and the others are done
                log.warning(
                    "a group of %d %s tasks failed (%s: %s); running them one by one",
                    len(unit),
                    unit[0].kind,
                    type(exc).__name__,
                    exc,
                )
            else:
                self.tasks_run += len(unit)
                share = (time.perf_counter() - started) / len(unit)
                for task in unit:
                    metrics.TASK_DURATION.labels(task.kind).observe(share)
                return
        for task in unit:
            handed = self._execute(task)
            while handed is not None:
                handed = self._execute_handed(handed)

    def _execute_handed(self, task: Task) -> Task | None:
        """Run a task that the end of the one before claimed for this slot (a hand-off);
        the next one it hands over, if any. At a stop it is given back instead."""
        with self._lock:
            # one that took its place already (claimed ahead for it) runs, and gives back
            # what was claimed after it (see `accumulator.places`)
            stopping = self._stopping.is_set() and task.place is None
            if not stopping:
                self._inflight[task.id] = task  # its lease kept by the heartbeat
        if stopping:
            self._release([task])
            return None
        try:
            return self._execute(task)
        finally:
            with self._lock:
                self._inflight.pop(task.id, None)

    def _execute(self, task: Task) -> Task | None:
        kind = self.runtime.kinds.get(task.kind)
        started = time.perf_counter()
        handed = None
        try:
            if kind is None:
                raise LookupError(f"no runner for task kind {task.kind!r}")
            handed = kind.run(task)
        except LeaseLost as exc:
            log.warning("stale result refused: %s", exc)
        except Exception as exc:
            if is_transient(exc):
                # the store failed, not the task: give it back, the attempt not counted
                self.outage.failed(exc)
                self.settling.give_back(task)
            else:
                # one line per failed attempt, with its traceback (flushes and iterator
                # steps record and log their own failures; bulk-job chunks come here)
                log_failure(
                    log,
                    f"task {task.id} ({task.kind})",
                    exc,
                    final=task.attempts >= task.max_attempts,
                    task_id=task.id,
                    kind=task.kind,
                    attempt=task.attempts,
                    max_attempts=task.max_attempts,
                    duration_seconds=round(time.perf_counter() - started, 6),
                    **{key: task.payload[key] for key in _PAYLOAD_IDS if key in task.payload},
                )
                self.settling.failed(task, error_text(exc))
        finally:
            self.tasks_run += 1
            metrics.TASK_DURATION.labels(task.kind).observe(time.perf_counter() - started)
        return handed

    def _heartbeat_loop(self) -> None:
        every = self.lease / 3
        while not self._stopping.wait(every):
            self._beat()
        # keep leases alive while in-flight work drains after a stop
        while self._holding() and not self._stopping_done.wait(every):
            self._beat()

    def _beat(self) -> None:
        with self._lock:
            tasks = {task.id: task for task in self.runtime.leases.held()}
            tasks.update(self._inflight)
        since = self.runtime.clock.time()
        try:
            lost = self.tasks.heartbeat(
                self.id, list(tasks.values()), self.lease, self.runtime.now()
            )
        except Exception as exc:
            self.outage.failed(exc)  # the loop says when the store is back
            return
        self.runtime.leases.renewed(since)
        for task_id in lost:
            log.warning("lease of task %s was lost; its result will be refused", task_id)

    def _give_back_waiting(self) -> None:
        """At a stop: give back at once the units claimed ahead that no thread has started
        (their attempts not counted), instead of running them or holding them until the
        shutdown timeout."""
        with self._lock:
            units = list(self._waiting)
            self._waiting.clear()
            for unit in units:
                for task in unit:
                    self._inflight.pop(task.id, None)
                self._held -= 1
        self._release([task for unit in units for task in unit])
        self._slot_freed.set()

    def _release(self, tasks: list[Task]) -> None:
        """Give tasks back, their attempts not counted."""
        if tasks:
            try:
                self.tasks.release(tasks, self.runtime.now())
            except Exception as exc:  # they run again once their leases expire
                log.warning("could not give back %d task(s): %s", len(tasks), exc)

    def _drain_inflight(self) -> None:
        self._give_back_waiting()
        deadline = time.monotonic() + self.shutdown_timeout
        while time.monotonic() < deadline and self._holding():
            self._slot_freed.wait(0.05)
            self._slot_freed.clear()
        with self._lock:
            left = {task.id: task for task in self.runtime.leases.held()}
            left.update(self._inflight)
            self._waiting.clear()  # a thread freed now starts nothing
        self._stopping_done.set()
        if left:
            log.warning("giving back %d unfinished task(s)", len(left))
            self._release(list(left.values()))

    def _holding(self) -> bool:
        """Whether a task is still held: running, or held without a thread (`tasks.leases`)."""
        with self._lock:
            return bool(self._inflight) or bool(self.runtime.leases.held())

    # -- process housekeeping -------------------------------------------------------------

    def _register(self) -> None:
        self.tasks.register_worker(self.id, self.runtime.now())
        self._publish_limits()
        self.tasks.directed.listen()  # what this process queues from now on is announced

    def _publish_limits(self) -> None:
        """The handlers' limits into the store, where every worker's claim keeps them."""
        self.tasks.publish_limits(self.runtime.handlers.limits(), self.runtime.now())

    def _unregister(self) -> None:
        self.tasks.directed.stop_listening()
        try:
            self.tasks.unregister_worker(self.id, self.runtime.now())
        except Exception:
            log.exception("could not unregister worker %s", self.id)
