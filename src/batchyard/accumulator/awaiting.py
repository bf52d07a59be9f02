"""Adding from an event loop: the awaits of one base meet in its loop lane, and one add,
sent from a thread, carries all of them.

A coroutine must not wait on the database itself (it would stop the loop, and every other
request with it), so an add runs where the threads' adds run - `Adder.send`, the same
statements - in a thread of the caller's pool. What would cost a thread hop per call costs
one per add in flight: the awaits that arrive while a base's add is in flight wait on the
loop, for nothing, and the next add carries them all (see `lanes`, whose rules - order, one
outcome for the calls an add carried, the result each call would have had alone - hold here
too). No lock is needed: a loop lane is only touched from its loop's thread.

A call cancelled while it waits is withdrawn (nothing of it is sent); one cancelled while its
add is in flight may still be committed, like any call to a server that was already sent.
Adds to a base from this loop and from threads of the same process go through different
lanes: both are correct (the store serialises them), only less coalesced.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from batchyard.accumulator.adding import Adder
from batchyard.accumulator.lanes import PreparedAdd, Send, carried_error
from batchyard.accumulator.records import AddResult

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

# Runs a blocking call in a thread of the caller's pool and awaits its outcome.
Hop = Callable[..., Awaitable[Any]]

# Adds of more items than this are checked and encoded in the pool's thread, not on the loop
# (a million small items take the better part of a second to encode).
ENCODE_ON_LOOP_ITEMS = 1000


class LoopLane:
    """The adds of one base (and one batch configuration) from one event loop."""

    __slots__ = ("_sender", "_waiting")

    def __init__(self) -> None:
        self._waiting: list[tuple[list[str], asyncio.Future[AddResult]]] = []
        self._sender: asyncio.Task[None] | None = None  # sends while calls wait

    async def add(self, encoded: list[str], send: Send, hop: Hop) -> AddResult:
        future: asyncio.Future[AddResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((encoded, future))
        if self._sender is None:
            # a task of its own, started after the callers ready to run now have run: those
            # that an add just carried come back with their next call, and go together
            self._sender = asyncio.get_running_loop().create_task(self._send_all(send, hop))
        return await future  # cancelled before it is sent: the sender skips it

    async def _send_all(self, send: Send, hop: Hop) -> None:
        try:
            while self._waiting:
                calls, self._waiting = self._waiting, []
                calls = [(encoded, future) for encoded, future in calls if not future.done()]
                if calls:
                    await self._send(calls, send, hop)
        except asyncio.CancelledError:  # the loop is closing: the calls that wait with it
            for _, future in self._waiting:
                future.cancel()
            self._waiting = []
            raise
        finally:
            self._sender = None

    @staticmethod
    async def _send(
        calls: list[tuple[list[str], asyncio.Future[AddResult]]], send: Send, hop: Hop
    ) -> None:
        try:
            # (adds from the loop carry no trace context: they make no span of their own)
            results = await hop(send, [encoded for encoded, _ in calls], [None] * len(calls))
        except asyncio.CancelledError:  # the loop is closing: so are the calls
            for _, future in calls:
                future.cancel()
            raise
        except BaseException as exc:  # every call carried has this outcome
            for index, (_, future) in enumerate(calls):
                if not future.done():
                    future.set_exception(exc if index == 0 else carried_error(exc))
            return
        for (_, future), result in zip(calls, results, strict=True):
            if not future.done():  # (cancelled while in flight: committed all the same)
                future.set_result(result)


class LoopAdder:
    """`Adder.add_items` for coroutines: awaits it, with the loop free meanwhile."""

    def __init__(self, runtime: Runtime, hop: Hop) -> None:
        # an adder of its own: what it remembers of open batches is a hint each use checks
        self.adder = Adder(runtime)
        self._hop = hop
        # a loop's lanes go with it (a lane's futures and sender belong to one loop)
        self._lanes: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[object, ...], LoopLane]
        ] = weakref.WeakKeyDictionary()

    async def add_items(
        self,
        batch_id: str,
        items: Sequence[Any],
        *,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None = None,
        max_attempts: int | None = None,
        ordered: bool = False,
        max_batch_bytes: int | None = None,
        flush_after_idle: float | timedelta | None = None,
    ) -> AddResult:
        args = (
            batch_id,
            items,
            max_batch_size,
            on_flush,
            flush_interval,
            max_attempts,
            ordered,
            max_batch_bytes,
            flush_after_idle,
        )
        prepared: PreparedAdd | AddResult
        if isinstance(items, Sequence) and len(items) <= ENCODE_ON_LOOP_ITEMS:
            prepared = self.adder.prepare(*args)
        else:
            prepared = await self._hop(self.adder.prepare, *args)
        if isinstance(prepared, AddResult):
            return prepared
        return await self._lane(prepared.lane).add(prepared.encoded, prepared.send, self._hop)

    def _lane(self, key: tuple[object, ...]) -> LoopLane:
        lanes = self._lanes.setdefault(asyncio.get_running_loop(), {})
        lane = lanes.get(key)
        if lane is None:
            if len(lanes) >= 10_000:
                # a bound, for endless distinct bases: a lane forgotten while in use only
                # lets its next add run beside the one in flight (as without lanes)
                lanes.clear()
            lane = lanes[key] = LoopLane()
        return lane
