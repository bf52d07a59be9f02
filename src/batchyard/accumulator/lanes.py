"""Lanes: one add in flight per base in this process; the adds that arrive meanwhile go
together, as one, in the next.

Adds to one base are serialised by the store whatever we do: a batch's next position is
counted under its row's lock, and the lock is held until the commit. Queued on that lock,
each thread's add held it for its round trips and its commit, so eight threads adding to one
base went slower than one (and on PostgreSQL an add that waited for the lock had counted
from a snapshot taken before the wait, missed, and took the long way). Queued here instead,
the waiting adds cost nothing, and the next add carries all of them: one statement or one
transaction, one commit, for as many calls as arrived while the last was in flight.

Each call keeps what it was promised alone: its items go together and in order (the calls
of one add are laid end to end, in the order they arrived), it returns only once they are
committed, and it gets the result it would have had if the calls had run one by one. An add
that fails fails every call it carried; none of their items was stored.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from batchyard.accumulator.records import AddResult
from batchyard.forks import forget_in_child

# How long the thread about to send an add waits for as many calls as the last add carried
# (the threads it carried are on their way back with their next): without it, the first of
# them to return sends its call alone and the rest wait for that, so that adds alternate
# between one call and all the others. A lone thread never waits (its last add carried one).
GATHER_SECONDS = 0.0003

# What sends an add: the calls' encoded items, in order, and the trace context of each
# (`batchyard.tracing`; None when untraced) -> each call's result.
Send = Callable[[list[list[str]], list[str | None]], list[AddResult]]


class PreparedAdd(NamedTuple):
    """An add checked and encoded: the key of its lane, its items, what sends it (a tuple:
    one is made per add, and a frozen dataclass costs a microsecond more to make)."""

    lane: tuple[object, ...]
    encoded: list[str]
    send: Send


def carried_error(error: BaseException) -> BaseException:
    """What a call carried by another's add raises when that add failed: a copy of its
    error, so that callers do not write one traceback at once, chained to the original
    (which has it) - or the original, if it cannot be copied."""
    try:
        copied = copy.copy(error)
    except Exception:
        return error
    copied.__cause__ = error
    return copied


class _Call:
    __slots__ = ("done", "encoded", "error", "result", "trace")

    def __init__(self, encoded: list[str], trace: str | None) -> None:
        self.encoded = encoded
        self.trace = trace
        self.done = False  # sent, by this thread or another, and its outcome known
        self.result: AddResult | None = None
        self.error: BaseException | None = None

    def outcome(self, carried: bool) -> AddResult:
        if self.error is not None:
            if not carried:
                raise self.error
            raise carried_error(self.error)
        assert self.result is not None
        return self.result


class Lane:
    """The adds of one base (and one batch configuration) from this process."""

    __slots__ = ("_busy", "_carried", "_changed", "_gathering", "_lock", "_sleepers", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # taken as itself where nobody waits: cheaper
        self._changed = threading.Condition(self._lock)
        self._waiting: list[_Call] = []
        self._busy = False  # an add is in flight, or about to be sent
        self._gathering = False  # its sender waits for calls to carry
        self._carried = 1  # calls the last add carried
        self._sleepers = 0  # threads waiting on `_changed` (none: nobody to wake)

    def add(self, encoded: list[str], send: Send, trace: str | None = None) -> AddResult:
        """Add one call's items: sent now with those waiting, or carried by the add in
        flight's successor, whichever thread sends it."""
        if self.take_alone():
            try:
                return send([encoded], [trace])[0]
            finally:
                self.give_back()
        call = _Call(encoded, trace)
        with self._lock:
            self._waiting.append(call)
            if self._busy:
                if self._gathering and len(self._waiting) >= self._carried:
                    self._changed.notify_all()  # the sender has all it waits for
                self._wait(call)
                if call.done:  # carried by another thread's add
                    return call.outcome(carried=True)
            self._busy = True
            if len(self._waiting) < self._carried:
                self._gather(call)
            calls, self._waiting = self._waiting, []
            self._carried = len(calls)
        try:
            results = send([c.encoded for c in calls], [c.trace for c in calls])
            for each, result in zip(calls, results, strict=True):
                each.result = result
        except BaseException as exc:  # every call carried has this outcome, then raises it
            for each in calls:
                each.error = exc
        finally:
            with self._lock:
                for each in calls:
                    each.done = True
                self._busy = False
                if self._sleepers:
                    self._changed.notify_all()
        return call.outcome(carried=False)

    def take_alone(self) -> bool:
        """Take the lane for a lone caller - when no add is in flight and nobody waits - who
        then sends its own call, nothing to gather and nobody to hand an outcome to, and
        gives the lane back (`give_back`) when done, whatever happened."""
        with self._lock:
            alone = not self._busy and not self._waiting and self._carried == 1
            if alone:
                self._busy = True
        return alone

    def give_back(self) -> None:
        """Free the lane a lone caller took. Without the lock, the usual case kept to a
        write and a read: a caller that came meanwhile counted itself in `_sleepers` before
        it looked at `_busy` (both under the lock), so it sees the lane free or is woken."""
        self._busy = False
        if self._sleepers:
            with self._lock:
                self._changed.notify_all()

    def _wait(self, call: _Call) -> None:
        """Wait until `call` is carried, or no add is in flight (the lock held)."""
        self._sleepers += 1
        try:
            while self._busy and not call.done:
                self._changed.wait()
        except BaseException:  # interrupted (KeyboardInterrupt): not sent, or in flight
            if call in self._waiting:
                self._waiting.remove(call)
            raise
        finally:
            self._sleepers -= 1

    def _gather(self, call: _Call) -> None:
        """Wait, briefly, for as many calls as the last add carried (the lock held)."""
        deadline = time.monotonic() + GATHER_SECONDS
        self._gathering = True
        self._sleepers += 1
        try:
            while len(self._waiting) < self._carried:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)
        except BaseException:  # interrupted: nothing sent, ours withdrawn, the lane free
            self._waiting.remove(call)
            self._busy = False
            self._changed.notify_all()
            raise
        finally:
            self._gathering = False
            self._sleepers -= 1


class Lanes:
    """A lane per key, made on first use."""

    def __init__(self, bound: int = 10_000) -> None:
        self._lanes: dict[tuple[object, ...], Lane] = {}
        self._lock = threading.Lock()
        self._bound = bound
        # a forked child starts with no lanes: one the parent had busy, or whose lock a
        # parent's thread held, would be busy or locked for ever in the child
        forget_in_child(self._forget)

    def _forget(self) -> None:
        self._lanes = {}
        self._lock = threading.Lock()

    def __call__(self, key: tuple[object, ...]) -> Lane:
        lane = self._lanes.get(key)
        if lane is None:
            with self._lock:
                lane = self._lanes.get(key)
                if lane is None:
                    if len(self._lanes) >= self._bound:
                        # a bound, for endless distinct bases: a lane forgotten while in use
                        # only lets its next add run beside the one in flight (as without lanes)
                        self._lanes.clear()
                    lane = self._lanes[key] = Lane()
        return lane
