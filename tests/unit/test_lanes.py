"""A lane: one add in flight; the calls that arrive meanwhile go together in the next."""

from __future__ import annotations

import threading

import pytest

from batchyard.accumulator.lanes import Lane
from batchyard.accumulator.records import AddResult


def _result(call: list[str]) -> AddResult:
    return AddResult(batch_id="b", item_count=len(call), flushed=False, status="accumulating")


class _Store:
    """A send that holds the first add until released, recording what each add carried."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[list[list[str]]] = []
        self.traces: list[list[str | None]] = []
        self.first_in_flight = threading.Event()
        self.release = threading.Event()
        self.fail = fail

    def send(self, calls: list[list[str]], traces: list[str | None]) -> list[AddResult]:
        self.sent.append(calls)
        self.traces.append(traces)
        if len(self.sent) == 1:
            self.first_in_flight.set()
            assert self.release.wait(10)
        elif self.fail:
            raise RuntimeError("the store failed")
        return [_result(call) for call in calls]


def _arrive_while_first_in_flight(lane: Lane, store: _Store, count: int) -> list[object]:
    """Send ["first"]; while it is in flight, `count` threads add; each one's outcome."""
    outcomes: list[object] = [None] * count

    def add(index: int) -> None:
        try:
            outcomes[index] = lane.add([f"t{index}"], store.send, f"trace{index}")
        except Exception as exc:  # the outcome under test
            outcomes[index] = exc

    first = threading.Thread(target=lambda: lane.add(["first"], store.send))
    first.start()
    assert store.first_in_flight.wait(10)
    threads = [threading.Thread(target=add, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    while True:  # every thread has queued its call behind the one in flight
        with lane._changed:
            if len(lane._waiting) == count:
                break
    store.release.set()
    for thread in [first, *threads]:
        thread.join(10)
    return outcomes


def test_calls_that_arrive_during_an_add_go_together_in_the_next():
    lane, store = Lane(), _Store()
    outcomes = _arrive_while_first_in_flight(lane, store, 5)
    assert store.sent[0] == [["first"]]
    assert sorted(call[0] for call in store.sent[1]) == [f"t{i}" for i in range(5)]
    assert len(store.sent) == 2
    assert all(isinstance(outcome, AddResult) for outcome in outcomes)
    # each call's trace context travels with it
    assert store.traces[0] == [None]
    assert [f"trace{call[0][1:]}" for call in store.sent[1]] == store.traces[1]


def test_an_add_that_fails_fails_every_call_it_carried_and_the_lane_goes_on():
    lane, store = Lane(), _Store(fail=True)
    outcomes = _arrive_while_first_in_flight(lane, store, 3)
    assert len(store.sent) == 2
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    store.fail = False
    assert lane.add(["after"], store.send).item_count == 1  # nothing left busy


def test_a_lone_caller_sends_at_once_and_gets_its_own_error():
    lane = Lane()

    def failing(calls: list[list[str]], traces: list[str | None]) -> list[AddResult]:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        lane.add(["x"], failing)
    assert lane.add(["y"], lambda calls, traces: [_result(c) for c in calls]).item_count == 1


def test_a_forked_child_starts_with_free_lanes():
    # a lane busy in the parent (another thread's add in flight at fork()) would never be
    # freed in the child, where that thread does not exist: the child's adds would hang
    import os
    import signal

    from batchyard.accumulator.lanes import Lanes

    lanes = Lanes()
    lanes(("base",))._busy = True
    pid = os.fork()
    if pid == 0:  # the child: exits 0 once its add went through, 3 if it hung
        signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
        signal.alarm(5)
        lanes(("base",)).add(["x"], lambda calls, traces: [_result(c) for c in calls])
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
