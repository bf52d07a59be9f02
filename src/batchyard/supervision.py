"""Riding through faults: how long to wait before trying again, and what to tell the operator.

A long-running loop (the worker, the producer's writer) that meets an error does not die: it
waits (`Backoff`: 0.1 s doubling to 10 s, with jitter so that a fleet does not come back in
step) and tries again. `Outage` keeps the log readable meanwhile: one warning when the
trouble starts, one line when it ends with its length, nothing per failed attempt between.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from batchyard import metrics
from batchyard.errors import StoreError

log = logging.getLogger("batchyard.supervision")

# A failure this soon after the store came back is the same trouble going on (a restart
# kills every pooled connection, and each one's death is found by its next use): told as
# a line of its own, not as a new outage.
RELAPSE_SECONDS = 5.0


def is_transient(exc: BaseException) -> bool:
    """True for a store error that may go away by itself (the store is down, full, read-only):
    worth waiting for rather than counting as the task's failure."""
    return isinstance(exc, StoreError) and exc.transient


class Backoff:
    """Exponential waits with jitter, from `first` to `cap` seconds; `reset` on success."""

    def __init__(self, first: float = 0.1, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        """The next wait: between half and all of the current step, which then doubles."""
        step = self._next
        self._next = min(self.cap, step * 2)
        return step * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._next = self.first


class Outage:
    """What one process says about a run of failures: `failed(exc)` on every failure (a
    warning on the first one only, with the traceback unless it is a known store outage),
    `ok()` on every success (one line once a run of failures ends). Thread-safe."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._lock = threading.Lock()
        self.since: float | None = None  # time.monotonic() of the first failure
        self.ended: float | None = None  # time.monotonic() of the last recovery
        self.failures = 0
        self.last_error: str | None = None

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.since is not None:
                return
            self.since = time.monotonic()
            relapse = self.ended is not None and self.since - self.ended < RELAPSE_SECONDS
        if relapse:
            self._log.info(
                "%s: the store failed again just after it came back (%s); retrying with backoff",
                self._what,
                exc,
            )
            return
        metrics.OUTAGES.labels(self._what).inc()
        if is_transient(exc):
            self._log.warning(
                "%s: the store is unavailable (%s); retrying with backoff until it answers",
                self._what,
                exc,
            )
        else:
            self._log.warning("%s failed; retrying with backoff", self._what, exc_info=exc)

    def ok(self) -> None:
        if self.since is None:  # the common case, without the lock
            return
        with self._lock:
            if self.since is None:
                return
            self.ended = time.monotonic()
            lasted, failures = self.ended - self.since, self.failures
            self.since, self.failures, self.last_error = None, 0, None
        self._log.info(
            "%s: working again after %.1f s (%d failed attempt%s)",
            self._what,
            lasted,
            failures,
            "" if failures == 1 else "s",
        )


def stop_on_signals(stop: Callable[[], None], stopping: threading.Event) -> Callable[[], None]:
    """From the main thread: SIGTERM and SIGINT call `stop` (a graceful stop: work in flight
    drains); a second one exits at once. Returns what puts the previous handlers back
    (nothing is installed, and nothing restored, off the main thread).

    `stop` runs on a thread of its own, not in the handler: Python runs a handler in the
    main thread wherever it was interrupted, and `stop` sets events that the main thread
    waits on - interrupted inside an `Event.wait`, it holds that event's lock, and a `set`
    in the handler would wait for it for ever (a worker told to stop hung so). The handler
    only writes a byte to a pipe, which a watching thread reads."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    read, write = os.pipe()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if received or stopping.is_set():
            log.warning("second signal: exiting at once")
            os._exit(128 + signum)
        received.append(signum)
        os.write(write, b"\0")

    def watch() -> None:
        os.read(read, 1)  # a signal, or the handlers put back
        if received:
            log.info("signal %d: stopping (again to exit at once)", received[0])
            stop()

    watcher = threading.Thread(target=watch, name="batchyard-signals", daemon=True)
    watcher.start()
    for sig in previous:
        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.write(write, b"\0")  # ends the watcher's wait, if no signal did
        watcher.join()
        os.close(read)
        os.close(write)

    return restore
