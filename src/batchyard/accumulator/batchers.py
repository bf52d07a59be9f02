"""Batchers: keyed batching configured once.

`register_batcher(name, key=..., ...)` names a batch configuration and a key - an item field
or a callable. `add(name, items)` routes each item to the batches of its key's base id,
``<name>:<key>``, one `add_items` per key, so one call's items keep their order within a
key. Every key's batches are ordinary batches: their status, history, redrive and discard
are the accumulator's.

With `max_open_keys`, at most that many keys accumulate at once: an add that would open a
batch for one more key first closes the oldest open batch of the batcher (flushed early, for
the reason ``max_open_keys``), so nothing is dropped and memory downstream stays bounded.
Opening and counting must not race, so such an add runs in one transaction that holds the
batcher's lock (an advisory lock on PostgreSQL; SQLite's one writer already is one) - adds
to one bounded batcher queue behind each other, while unbounded batchers add as fast as
`add_items` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchyard.accumulator import sql
from batchyard.accumulator.flushing import schedule_flush
from batchyard.accumulator.reading import FlushTotals
from batchyard.accumulator.records import (
    AddResult,
    BatchInfo,
    BatchStatus,
    FlushReason,
    FlushRecord,
    batch_info,
)
from batchyard.accumulator.sizing import item_sizes
from batchyard.errors import InvalidInput, NotFound
from batchyard.payloads import encode_items

if TYPE_CHECKING:
    from batchyard.accumulator.adding import Adder
    from batchyard.accumulator.flushing import Flusher
    from batchyard.accumulator.reading import Reader
    from batchyard.runtime import Runtime
    from batchyard.store import Tx

MAX_KEY_LENGTH = 200
LAST_HOUR = 3600.0  # the flushes a batcher's summary counts
RECENT_HISTORY = 86400.0  # how far back a batcher's own flush history reaches


@dataclass(frozen=True)
class Batcher:
    """A registered batcher: its key, its batches' configuration, its bound on open keys."""

    name: str
    key: str | Callable[[Any], Any]
    config: dict[str, Any]  # its batches' configuration, checked at registration
    max_open_keys: int | None

    def base_of(self, key: str) -> str:
        return f"{self.name}:{key}"

    def info(self) -> BatcherInfo:
        """What the batcher was registered with, as a record (its key function by name)."""
        key = self.key if isinstance(self.key, str) else _function_name(self.key)
        return BatcherInfo(
            name=self.name,
            key=key,
            key_is_field=isinstance(self.key, str),
            max_open_keys=self.max_open_keys,
            **{k: self.config[k] for k in _CONFIG_FIELDS},
        )

    def key_of(self, item: Any, index: int) -> str:
        """The key of `item` (the `index`-th of its call), as text, or `InvalidInput`."""
        if callable(self.key):
            try:
                value = self.key(item)
            except Exception as exc:  # the user's function: its failure names the item
                raise InvalidInput(
                    f"items[{index}]: the key function of batcher {self.name!r} failed: "
                    f"{type(exc).__name__}: {exc}",
                    field="items",
                    index=index,
                ) from exc
        elif isinstance(item, dict) and self.key in item:
            value = item[self.key]
        else:
            raise InvalidInput(
                f"items[{index}] has no field {self.key!r}, the key of batcher {self.name!r}",
                field="items",
                index=index,
            )
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidInput(
                f"items[{index}]: a key must be text or an integer, not {value!r}",
                field="items",
                index=index,
            )
        key = str(value)
        if (
            not key
            or len(key) > MAX_KEY_LENGTH
            or "::" in key
            or key[0] == ":"
            or key[-1] == ":"
            or "\x00" in key
        ):
            raise InvalidInput(
                f"items[{index}]: key {key!r} must be 1 to {MAX_KEY_LENGTH} characters, "
                "without NUL or '::', and not start or end with ':'",
                field="items",
                index=index,
            )
        return key


_CONFIG_FIELDS = (
    "handler",
    "max_batch_size",
    "max_batch_bytes",
    "flush_interval",
    "flush_after_idle",
    "ordered",
    "max_attempts",
)


@dataclass(frozen=True)
class BatcherInfo:
    """A registered batcher's settings: its key (an item field, or a function's name) and
    its batches' limits."""

    name: str
    key: str
    key_is_field: bool
    handler: str
    max_batch_size: int
    max_batch_bytes: int | None
    flush_interval: float | None
    flush_after_idle: float | None
    ordered: bool
    max_attempts: int
    max_open_keys: int | None


@dataclass(frozen=True)
class BatcherSummary:
    """A batcher at a glance: its settings, its unfinished batches now, and what its
    flushes did in the last hour (items flushed; items failed, a flush that failed whole
    counting all of its items)."""

    batcher: BatcherInfo
    open_keys: int  # keys with an accumulating batch
    items_waiting: int  # items of its unfinished batches not yet delivered
    accumulating: int
    flushing: int
    dead: int
    last_hour: FlushTotals


@dataclass(frozen=True)
class BatcherStatus:
    """A batcher's batches that are not finished (accumulating, flushing, dead), by key."""

    name: str
    open_keys: int  # keys with an accumulating batch
    max_open_keys: int | None
    keys: dict[str, list[BatchInfo]]


class Batchers:
    """The registered batchers of one yard, and adding to them."""

    def __init__(self, runtime: Runtime, adder: Adder, flusher: Flusher) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.adder = adder
        self.flusher = flusher
        self._by_name: dict[str, Batcher] = {}

    def register(
        self,
        name: str,
        *,
        key: str | Callable[[Any], Any],
        max_open_keys: int | None = None,
        **options: Any,
    ) -> Batcher:
        """Register (or register again, replacing) the batcher `name`."""
        if not isinstance(name, str) or not name or ":" in name or "\x00" in name:
            raise InvalidInput(
                "a batcher's name must be a non-empty string without ':' or NUL", field="name"
            )
        if not callable(key) and (not isinstance(key, str) or not key):
            raise InvalidInput(
                "key must be an item field name or a function of an item", field="key"
            )
        if max_open_keys is not None and (
            isinstance(max_open_keys, bool) or not isinstance(max_open_keys, int)
        ):
            raise InvalidInput("max_open_keys must be a positive integer", field="max_open_keys")
        if max_open_keys is not None and max_open_keys < 1:
            raise InvalidInput("max_open_keys must be a positive integer", field="max_open_keys")
        batcher = Batcher(name, key, self.adder.config(**options), max_open_keys)
        self._by_name[name] = batcher
        return batcher

    def get(self, name: str) -> Batcher:
        batcher = self._by_name.get(name) if isinstance(name, str) else None
        if batcher is None:
            raise NotFound(
                f"no batcher is registered as {name!r} (register it with yard.register_batcher)",
                batcher=name,
            )
        return batcher

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def registered(self, prefix: str | None = None) -> list[BatcherInfo]:
        """The registered batchers (whose name starts with `prefix`, if given), by name."""
        return [
            self._by_name[name].info()
            for name in self.names
            if prefix is None or name.startswith(prefix)
        ]

    def add(self, name: str, items: Sequence[Any]) -> list[AddResult]:
        """Route `items` to their keys' batches; one result per key, in the order each key
        first came. Every item is checked (its key, its JSON) before any is added."""
        batcher = self.get(name)
        by_key = self.route(batcher, items)
        if batcher.max_open_keys is None:
            return [
                self.adder.add_configured(batcher.base_of(key), texts, batcher.config)
                for key, texts in by_key.items()
            ]
        bases = [batcher.base_of(key) for key in by_key]
        self.adder.ensure_bases(bases)
        # pipelined, as the producer's writes: each key's statements go together
        with self.store.transaction(self.runtime.now(), pipeline=True) as tx:
            self.lock(tx, batcher)
            results = []
            for base, texts in zip(bases, by_key.values(), strict=True):
                self.make_room(tx, batcher, base)
                results.append(self.adder.add_encoded(tx, base, texts, batcher.config))
        return results

    @staticmethod
    def route(batcher: Batcher, items: Sequence[Any]) -> dict[str, list[str]]:
        """Each key's items, JSON-encoded, in the order they came (keys in the order they
        first came); `InvalidInput` naming the first bad item (an item larger than the
        batcher's byte limit too: refused before any key's items are added)."""
        encoded = encode_items(items)
        if batcher.config["max_batch_bytes"] is not None:
            item_sizes(encoded, batcher.config["max_batch_bytes"])
        by_key: dict[str, list[str]] = {}
        for index, (item, text) in enumerate(zip(items, encoded, strict=True)):
            by_key.setdefault(batcher.key_of(item, index), []).append(text)
        return by_key

    @staticmethod
    def lock(tx: Tx, batcher: Batcher) -> None:
        """Take the batcher's lock for the rest of `tx`: its open keys are counted and
        opened by one transaction at a time."""
        tx.execute("{lock_name}", {"lock": f"batcher:{batcher.name}"})

    def make_room(self, tx: Tx, batcher: Batcher, base: str) -> None:
        """Before `base` takes items in `tx` (which holds the batcher's lock): if it has no
        open batch and the batcher has `max_open_keys` open, close the oldest open batches
        until one more fits."""
        if batcher.max_open_keys is None:
            return
        low, high = _prefix_range(batcher.name)
        open_batches = tx.all(
            "SELECT batch_id, base_id FROM batchyard_batches "
            "WHERE base_id >= :low AND base_id < :high AND status = 'accumulating' "
            "ORDER BY created_at, batch_no",
            {"low": low, "high": high},
        )
        if any(row["base_id"] == base for row in open_batches):
            return  # its key is open already: no key more
        excess = len(open_batches) - batcher.max_open_keys + 1
        for row in open_batches[: max(0, excess)]:  # the oldest go first
            closed = self.flusher.close(tx, row["batch_id"], FlushReason.MAX_OPEN_KEYS)
            schedule_flush(self.runtime.tasks, tx, closed)

    def status(self, name: str) -> BatcherStatus:
        batcher = self.get(name)
        low, high = _prefix_range(name)
        # a read: no write lock (the dashboard asks every few seconds), in one round trip
        with self.store.transaction(self.runtime.now(), write=False, pipeline=True) as tx:
            clock = tx.clock_later()
            rows = tx.later(
                f"SELECT {sql.BATCH_COLUMNS} FROM batchyard_batches b "
                "WHERE b.base_id >= :low AND b.base_id < :high "
                "AND b.status IN ('accumulating', 'flushing', 'dead') "
                "ORDER BY b.base_id, b.sequence",
                {"low": low, "high": high},
            )
        now = clock()
        keys: dict[str, list[BatchInfo]] = {}
        for row in rows.all():
            keys.setdefault(row["base_id"][len(name) + 1 :], []).append(batch_info(row, now))
        open_keys = sum(
            any(b.status == BatchStatus.ACCUMULATING for b in batches) for batches in keys.values()
        )
        return BatcherStatus(name, open_keys, batcher.max_open_keys, keys)

    def summaries(self, names: Sequence[str], reader: Reader) -> list[BatcherSummary]:
        """`status` of each batcher counted, with the totals of its flushes in the last
        hour (one read of the hour's flushes for them all)."""
        found = [self.status(name) for name in names]
        totals = reader.flush_totals(names, LAST_HOUR)
        return [
            _summary(self.get(status.name).info(), status, totals[status.name]) for status in found
        ]

    def history(
        self,
        name: str,
        reader: Reader,
        limit: int = 20,
        offset: int = 0,
        outcome: str | None = None,
        prefix: str | None = None,
    ) -> list[FlushRecord]:
        """Flush attempts of every key of the batcher in the last day, newest first (of
        the keys starting with `prefix`, if given); a key's whole history is its base's."""
        self.get(name)
        under = f"{name}:{prefix or ''}"
        return reader.recent_history(under, RECENT_HISTORY, limit, offset, outcome)


def _summary(info: BatcherInfo, status: BatcherStatus, last_hour: FlushTotals) -> BatcherSummary:
    batches = [b for key_batches in status.keys.values() for b in key_batches]

    def counted(state: BatchStatus) -> int:
        return sum(b.status == state for b in batches)

    return BatcherSummary(
        batcher=info,
        open_keys=status.open_keys,
        items_waiting=sum(b.pending_count for b in batches),
        accumulating=counted(BatchStatus.ACCUMULATING),
        flushing=counted(BatchStatus.FLUSHING),
        dead=counted(BatchStatus.DEAD),
        last_hour=last_hour,
    )


def _function_name(function: Callable[[Any], Any]) -> str:
    name = getattr(function, "__name__", None) or type(function).__name__
    return f"{name}()"


def _prefix_range(name: str) -> tuple[str, str]:
    """The base ids of a batcher's keys, ``name:...``, as a range an index can walk (a name
    holds no ':', and ';' is the character after it)."""
    return f"{name}:", f"{name};"
