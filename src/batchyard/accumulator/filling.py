"""The statements of an add's transaction (see `adding.Adder._fill`): the base's next
batches, the items at their places, and the flushes of the batches the add filled."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson

from batchyard.accumulator import sql
from batchyard.accumulator.flushing import flush_task
from batchyard.accumulator.outcomes import FlushSettings
from batchyard.accumulator.records import FLUSH_TASK
from batchyard.accumulator.sizing import Placement
from batchyard.store import Tx

if TYPE_CHECKING:
    from batchyard.tasks import TaskQueue


def insert_at(
    tx: Tx,
    encoded: list[str],
    trace: str | None,
    base: str,
    sequence: int,
    at: Placement,
    max_bytes: int | None,
) -> None:
    """Insert items into one batch, the base's of `sequence`, at a placement
    (`sizing.Placement`)."""
    if encoded:
        tx.execute(
            sql.INSERT_ITEMS_AT,
            {
                "base": base,
                "sequence": sequence,
                "position": at.position,
                "bytes": at.bytes_before,
                "sized": int(max_bytes is not None),
                "values": orjson.dumps(encoded).decode(),
                "trace": trace,
            },
        )


def insert_items(
    tx: Tx,
    encoded: list[str],
    trace: str | None,
    base: str,
    room: int,
    open_no: int,
    count: int,
    first: int,
    size: int,
) -> None:
    """Insert items: the first `room` into the open batch numbered `open_no` after its
    `count` items, the rest `size` to a batch into the base's new batches of sequences
    `first`, `first + 1`, ... (see `sql.INSERT_ITEMS`)."""
    if encoded:
        tx.execute(
            sql.INSERT_ITEMS,
            {
                "base": base,
                "room": room,
                "open_no": open_no,
                "count": count,
                "first": first,
                "size": size,
                "values": orjson.dumps(encoded).decode(),
                "trace": trace,
            },
        )


def create_batches(
    tx: Tx, base: str, first: int, config: dict[str, Any], count: int, full: int
) -> list[str]:
    """Make the base's next `count` batches, of sequences `first` on, and give their ids
    in sequence order: the first `full` closed for their size, the last open if the add
    leaves it room. The caller holds the base's lock, read `first` with it (see
    `sql.LOCK_BASE`), and has filled its open batch. Nothing is read back."""
    if count <= 0:
        return []
    tx.execute(sql.ADVANCE_SEQUENCE, {"base": base, "count": count})
    keys = orjson.dumps([uuid.uuid4().hex for _ in range(count)]).decode()
    tx.execute(
        sql.INSERT_BATCHES,
        {"base": base, "first": first, "values": keys, "full": full, **config},
    )
    return [f"{base}::{first + i}" for i in range(count)]


def schedule_size_flushes(tasks: TaskQueue, tx: Tx, full: list[tuple[str, FlushSettings]]) -> None:
    """Schedule the flushes (due now) of batches closed for their size, announced to the
    idle workers of this process, which claim them and start them in one transaction (see
    `batchyard.tasks.directed`)."""
    for settings in {settings for _, settings in full}:  # one value, nearly always
        attempts, handler, ordered = settings
        tasks.enqueue_many(
            tx,
            FLUSH_TASK,
            [flush_task(batch_id, ordered) for batch_id, each in full if each == settings],
            max_attempts=attempts,
            handler=handler,
            announce=True,
        )
