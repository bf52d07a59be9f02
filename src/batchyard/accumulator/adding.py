"""Adding items: into the open batch of a base, opening and closing batches as they fill.

An add of one item that leaves room is one statement; of many items that leave room, one
pipelined transaction (one round trip); an add that fills or opens batches is one short
transaction of a fixed number of statements. The calls of threads adding to one base meet
in its lane (`lanes`): one add in flight per base, carrying every call that arrived meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from batchyard import tracing
from batchyard.accumulator import sql
from batchyard.accumulator.configs import Configs, first_timer
from batchyard.accumulator.filling import (
    create_batches,
    insert_at,
    insert_items,
    schedule_size_flushes,
)
from batchyard.accumulator.flushing import schedule_flush
from batchyard.accumulator.lanes import Lane, Lanes, PreparedAdd, Send
from batchyard.accumulator.outcomes import (
    Filled,
    appended_result,
    call_results,
    flush_settings,
    span_attributes,
)
from batchyard.accumulator.records import AddResult, BatchStatus, split_base
from batchyard.accumulator.sizing import item_size, item_sizes, place
from batchyard.forks import forget_in_child
from batchyard.payloads import encode_items
from batchyard.store import Tx
from batchyard.store.base import Rows

if TYPE_CHECKING:
    from batchyard.runtime import Runtime


@dataclass(slots=True)
class _OpenBatch:
    """What this process last saw of a base's open batch: where its next item goes. Threads
    may race on it: each sets a position just past an item committed there, so it can lag
    behind the batch's count (an add then falls back to counting), never pass it. The
    same goes for `bytes`, where its last item ends: a guess to pick the way to add, which
    the statements check against the item before the position."""

    batch_no: int | None  # None: the batch is full (never appended to by its number)
    position: int
    max_batch_size: int
    result: AddResult  # what an add that lands here returns (the same every time)
    max_batch_bytes: int | None = None
    bytes: int = 0

    def takes(self, count: int, size: int) -> bool:
        """Whether `count` items of `size` bytes leave room behind them, as far as we saw."""
        return self.position + count < self.max_batch_size and (
            self.max_batch_bytes is None or self.bytes + size < self.max_batch_bytes
        )


# the way to add to a base with a configuration, in this process: the configuration (its
# identity is the route's key), its lane's key and its lane, and what sends an add there
_Route = tuple[dict[str, Any], tuple[Any, ...], Lane, Send]


class Adder:
    """Adds items to named batches. Reached through `Yard.add_items` and the producer."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.config = Configs(runtime)
        self._open: dict[str, _OpenBatch] = {}  # a hint per base id, checked by each use
        self._bases: set[str] = set()  # base ids whose row is known to exist (never deleted)
        self._lanes = Lanes()  # one add in flight per base; those that wait go together
        self._routes: dict[tuple[str, int], _Route] = {}  # see `_route`
        self._checked_bases: dict[str, str] = {}  # batch id -> its base, see `_base_of`
        forget_in_child(self._forget_routes)  # routes hold lanes

    def _forget_routes(self) -> None:
        self._routes = {}

    def _base_of(self, batch_id: str) -> str:
        """The base of a batch id, checked (`split_base`); remembered for the next add, as
        the check costs a tenth of a single add's time in Python."""
        base, _ = split_base(batch_id)
        if len(self._checked_bases) >= 10_000:
            self._checked_bases.clear()  # a bound, for endless distinct batch ids
        self._checked_bases[batch_id] = base
        return base

    # -- adding ---------------------------------------------------------------------------

    def add_items(
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
        base = self._checked_bases.get(batch_id) or self._base_of(batch_id)
        args = (max_batch_size, on_flush, flush_interval, max_attempts)
        config = self.config(*args, ordered, max_batch_bytes, flush_after_idle)
        if not tracing.enabled():  # the common way, kept short: a single add is a few µs
            return self.add_configured(base, encode_items(items), config)
        # the add's span context goes with its items, for the flush to link to
        return tracing.around(
            "batchyard.add",
            lambda trace: self.add_configured(base, encode_items(items), config, trace),
            lambda result: {"batchyard.base": base, **span_attributes(result)},
        )

    def add_configured(
        self, base: str, encoded: list[str], config: dict[str, Any], trace: str | None = None
    ) -> AddResult:
        """Add JSON-encoded items to `base` with a checked configuration (`config`), and
        the trace context to store with them (`batchyard.tracing`)."""
        route = self._route(base, encoded, config)
        if isinstance(route, AddResult):
            return route
        lane = route[2]
        if len(encoded) == 1 and lane.take_alone():
            # a single item from a lone caller, the commonest add: sent straight, without
            # the lists and the sender a lane's calls go through (a tenth of its Python time)
            try:
                return self._send_one(base, encoded[0], config, trace)
            finally:
                lane.give_back()
        return lane.add(encoded, route[3], trace)

    def prepare(
        self,
        batch_id: str,
        items: Sequence[Any],
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None,
        max_attempts: int | None,
        ordered: bool = False,
        max_batch_bytes: int | None = None,
        flush_after_idle: float | timedelta | None = None,
    ) -> PreparedAdd | AddResult:
        """An add checked and encoded, ready for its base's lane (this process's threads'
        or an event loop's); the result itself when there is nothing to add."""
        base, _ = split_base(batch_id)
        args = (max_batch_size, on_flush, flush_interval, max_attempts)
        config = self.config(*args, ordered, max_batch_bytes, flush_after_idle)
        return self.prepared(base, encode_items(items), config)

    def prepared(
        self, base: str, encoded: list[str], config: dict[str, Any]
    ) -> PreparedAdd | AddResult:
        """Checked, encoded items as an add for their base's lane (see `prepare`); with a
        byte limit, an item larger than it is refused here, before anything is stored."""
        route = self._route(base, encoded, config)
        if isinstance(route, AddResult):
            return route
        return PreparedAdd(route[1], encoded, route[3])

    def _route(self, base: str, encoded: list[str], config: dict[str, Any]) -> _Route | AddResult:
        """Check `encoded` against `config`, and the way to add them to `base`: its lane's
        key and its lane in this process, and what sends an add there; or the result
        itself when there is nothing to add."""
        if config["max_batch_bytes"] is not None:
            item_sizes(encoded, config["max_batch_bytes"])
        if not encoded:
            return AddResult(batch_id=base, item_count=0, flushed=False, status="unchanged")
        route = self._routes.get((base, id(config)))
        if route is None or route[0] is not config:
            # a route per base and configuration, remembered: most adds repeat theirs, and
            # making one costs a few microseconds, as much as the rest of a single add
            # in Python. Keyed by the configuration's identity (`Configs` gives a repeated
            # configuration as one object), which the route holds so that the id cannot
            # become another's; the lane's key is by value, as calls of equal
            # configurations share a lane
            if len(self._routes) >= 10_000:
                self._routes.clear()  # a bound, for endless distinct bases
            key = (base, *config.values())
            route = (config, key, self._lanes(key), partial(self.send, base, config))
            self._routes[(base, id(config))] = route
        return route

    def send(
        self, base: str, config: dict[str, Any], calls: list[list[str]], traces: list[str | None]
    ) -> list[AddResult]:
        """Add the items of one or more calls, laid end to end (see `lanes`); `traces` holds
        the trace context of each call, stored with its items."""
        trace = traces[0]
        if len(traces) > 1 and any(other != trace for other in traces):
            # one trace context per statement: calls of different traces go one after the
            # other (so traced adds to one base lose the lane's gathering, not their links)
            return [
                result
                for i, call in enumerate(calls)
                for result in self.send(base, config, [call], [traces[i]])
            ]
        if len(calls) == 1 and len(calls[0]) == 1:
            return [self._send_one(base, calls[0][0], config, trace)]
        now = self.runtime.now()
        batch_id = self._append_many(base, calls, now, trace)
        if batch_id is not None:
            return [
                AddResult(
                    batch_id=batch_id,
                    item_count=len(call),
                    flushed=False,
                    status=BatchStatus.ACCUMULATING,
                )
                for call in calls
            ]
        return self._fill_alone(base, calls, config, trace, now)

    def _send_one(
        self, base: str, payload: str, config: dict[str, Any], trace: str | None
    ) -> AddResult:
        """Add one item: one statement when it leaves room in its batch, else the
        transaction that closes or opens batches."""
        now = self.runtime.now()
        appended = self._append(base, payload, now, trace)
        if appended is not None:
            return appended
        return self._fill_alone(base, [[payload]], config, trace, now)[0]

    def _fill_alone(
        self,
        base: str,
        calls: list[list[str]],
        config: dict[str, Any],
        trace: str | None,
        now: float | None,
    ) -> list[AddResult]:
        """`_fill` in a transaction of its own."""
        self.ensure_bases([base])
        with self.store.transaction(now, pipeline=True) as tx:
            return self._fill(tx, base, calls, config, trace)

    def ensure_bases(self, bases: Iterable[str]) -> None:
        """Make the row of each base - the lock its adders queue on, see `sql.LOCK_BASE` -
        before a transaction adds to it: a transaction that had to make the row would take
        that lock late, after the open batch's, and could deadlock with another adder."""
        for base in bases:
            if base not in self._bases:
                self.store.execute(sql.INSERT_BASE, {"base": base})
                if len(self._bases) >= 10_000:
                    self._bases.clear()  # a bound, for endless distinct base ids
                self._bases.add(base)

    def _append(
        self, base: str, payload: str, now: float | None, trace: str | None
    ) -> AddResult | None:
        """Add one item that leaves room in its batch, as one statement (at the remembered
        position when there is one, counted otherwise); None when that does not apply."""
        seen = self._open.get(base)
        if seen is not None:
            if seen.max_batch_bytes is None:  # the usual case, kept to a comparison
                size = 0
                fits = seen.position + 1 < seen.max_batch_size
            else:
                size = item_size(payload)
                fits = seen.takes(1, size)
            if not fits:
                # the item fills the batch, or it is full: a transaction closes or opens one
                self._open.pop(base, None)  # (another thread may have dropped it already)
                return None
            position, used = seen.position, seen.bytes
            params = {
                "batch_no": seen.batch_no,
                "position": position,
                "payload": payload,
                "trace": trace,
            }
            if seen.max_batch_bytes is None:
                appended = self.store.execute(sql.APPEND_AT, params, now)
            else:
                appended = self.store.execute(sql.APPEND_SIZED_AT, {**params, "bytes": size}, now)
            if appended:
                seen.position, seen.bytes = position + 1, used + size
                return seen.result
        size = item_size(payload)
        row = self.store.one(
            sql.APPEND_ITEM, {"base": base, "payload": payload, "bytes": size, "trace": trace}, now
        )
        if row is None:
            self._open.pop(base, None)
            return None
        seen = _OpenBatch(
            row["batch_no"],
            row["position"] + 1,
            row["max_batch_size"],
            appended_result(row["batch_id"]),
            row["max_batch_bytes"],
            row["byte_end"] or 0,
        )
        self._remember(base, seen)
        return seen.result

    def _append_many(
        self, base: str, calls: list[list[str]], now: float | None, trace: str | None
    ) -> str | None:
        """Add the items of `calls` at the remembered position, when they leave room in its
        batch, in one round trip (see `sql.APPEND_MANY_AT`); the batch's id, or None when
        that does not apply."""
        seen = self._open.get(base)
        total = sum(len(call) for call in calls)
        if seen is None or seen.position + total >= seen.max_batch_size:
            return None
        encoded = [item for call in calls for item in call]
        size = 0 if seen.max_batch_bytes is None else sum(map(item_size, encoded))
        if not seen.takes(total, size):
            return None
        position, used = seen.position, seen.bytes
        params = {"batch_no": seen.batch_no, "position": position}
        values = {**params, "values": orjson.dumps(encoded).decode()}
        with self.store.transaction(now, pipeline=True) as tx:
            tx.execute(sql.LOCK_FOR_APPEND, params)
            if seen.max_batch_bytes is None:
                inserted = tx.execute(sql.APPEND_MANY_AT, {**values, "trace": trace})
            else:
                inserted = tx.execute(
                    sql.APPEND_MANY_SIZED_AT, {**values, "total_bytes": size, "trace": trace}
                )
        if inserted.rowcount == 0:
            return None
        seen.position, seen.bytes = position + total, used + size
        return seen.result.batch_id

    def _remember(self, base: str, seen: _OpenBatch, number: Rows | None = None) -> None:
        """Note where the next item of `base` goes (only once what told us is committed);
        `number`: the batch's number, when it was not known before (`sql.BATCH_NUMBER`)."""
        if number is not None:
            seen.batch_no = number.all()[0]["batch_no"]
        if len(self._open) >= 1000 and base not in self._open:
            self._open.clear()  # a bound, for producers of endless distinct base ids
        self._open[base] = seen

    def add_encoded(
        self, tx: Tx, base: str, encoded: list[str], config: dict[str, Any]
    ) -> AddResult:
        """Add JSON-encoded items inside `tx`, filling and closing batches as they fill.
        The caller has made the base's row first (`ensure_bases`, before `tx` began).

        The base's row, then the open batch's, are locked (PostgreSQL) so concurrent adders
        to one base queue instead of conflicting; then its count is read in a statement of
        its own, which sees whatever the adder before us committed. Only items are written,
        until a batch fills.
        """
        if len(encoded) == 1:
            appended = tx.one(
                sql.APPEND_ITEM,
                {
                    "base": base,
                    "payload": encoded[0],
                    "bytes": item_size(encoded[0]),
                    "trace": None,
                },
            )
            if appended is not None:
                return appended_result(appended["batch_id"])
        return self._fill(tx, base, [encoded], config)[0]

    def _fill(
        self,
        tx: Tx,
        base: str,
        calls: list[list[str]],
        config: dict[str, Any],
        trace: str | None = None,
    ) -> list[AddResult]:
        """Add the items of `calls`, end to end, in a transaction; each call's result.
        `trace`: the trace context stored with the items (`batchyard.tracing`)."""
        encoded = calls[0] if len(calls) == 1 else [item for call in calls for item in call]
        # sent together (one round trip when pipelined), each statement after the lock
        # before it is held, so that each sees what the previous holder committed
        params = {"base": base}
        locked_base = tx.execute(sql.LOCK_BASE, params)
        locked = tx.execute(sql.LOCK_OPEN_BATCH, params)
        counted = tx.execute(sql.COUNT_OPEN_BATCH, params)
        base_row = locked_base.fetchone()
        if base_row is None:
            # no row for the base (a caller that did not ensure it): make it, take its
            # lock, and look again - another adder may have opened a batch meanwhile
            tx.execute(sql.INSERT_BASE, params)
            base_row = tx.one(sql.LOCK_BASE, params)
            locked = tx.execute(sql.LOCK_OPEN_BATCH, params)
            counted = tx.execute(sql.COUNT_OPEN_BATCH, params)
        # the only reads the add waits for: what follows is sent without waiting for any
        # result (read, if at all, after the commit)
        first = base_row["next_sequence"]
        open_batch = locked.fetchone()
        counted_row = counted.fetchone()
        count, used = counted_row["n"], counted_row["bytes"]
        size, max_bytes = config["max_batch_size"], config["max_batch_bytes"]
        open_bytes = None if open_batch is None else open_batch["max_batch_bytes"]
        sized = max_bytes is not None or open_bytes is not None
        sizes = [item_size(item) for item in encoded] if sized else [0] * len(encoded)
        in_open, places = place(
            sizes,
            None if open_batch is None else (count, used, open_batch["max_batch_size"], open_bytes),
            size,
            max_bytes,
        )
        filled: list[Filled] = []  # the batches the items go to, in order
        room, open_no = 0, 0
        if open_batch is not None and in_open is not None:
            open_no, room = open_batch["batch_no"], in_open.taken
            filled.append(
                (open_batch["batch_id"], room, in_open.closed, flush_settings(open_batch))
            )
            if in_open.closed:
                # closed before the next batch opens: a base has one open batch at most
                tx.execute(sql.CLOSE_FULL, {"batch_no": open_no})
        full = sum(p.closed for p in places)
        new = create_batches(tx, base, first, config, len(places), full)
        filled += [
            (batch_id, p.taken, p.closed, flush_settings(config))
            for batch_id, p in zip(new, places, strict=True)
        ]
        if sized:  # placed by the sizes: a statement per batch reached
            runs = [(open_batch["sequence"], in_open, open_bytes)] if in_open is not None else []
            runs += [(first + i, p, max_bytes) for i, p in enumerate(places)]
            done = 0
            for sequence, p, limited in runs:
                insert_at(tx, encoded[done : done + p.taken], trace, base, sequence, p, limited)
                done += p.taken
        else:
            insert_items(tx, encoded, trace, base, room, open_no, count, first, size)
        schedule_size_flushes(
            self.tasks, tx, [(b, flush) for b, _, closed, flush in filled if closed]
        )
        last_id, _, last_closed, _ = filled[-1]
        delay = first_timer(config)
        if delay is not None and new and not last_closed:
            # the timer is set once, at creation, on the batch left open
            schedule_flush(self.tasks, tx, {**config, "batch_id": last_id}, delay=delay)
        # the next single-item add of this base goes straight to its position - or, when
        # the last batch is full, straight to the transaction that opens the next one
        last_place = places[-1] if places else in_open
        assert last_place is not None
        limit = size if new else open_batch["max_batch_size"]
        last = _OpenBatch(
            None if last_closed or new else open_no,  # a new one's: read below
            limit if last_closed else last_place.position + last_place.taken,
            limit,
            appended_result(last_id),
            max_bytes if new else open_bytes,
            last_place.bytes_before + sum(sizes[len(encoded) - last_place.taken :]),
        )
        # a new batch left open: its number is read with the commit, without a round trip
        at = {"base": base, "sequence": first + len(new) - 1}
        number = tx.later(sql.BATCH_NUMBER, at) if new and not last_closed else None
        tx.after_commit.append(lambda: self._remember(base, last, number))
        return call_results(calls, filled)

    # -- flushing by hand ----------------------------------------------------------------
