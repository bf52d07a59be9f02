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
    batch_no: int,
    at: Placement,
    max_bytes: int | None,
) -> None:
    """Insert items into one batch at a placement (`sizing.Placement`)."""
    if encoded:
        tx.execute(
            sql.INSERT_ITEMS_AT,
            {
                "batch_no": batch_no,
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
    room: int,
    open_no: int,
    count: int,
    first_no: int = 0,
    size: int = 1,
) -> None:
    if encoded:
        tx.execute(
            sql.INSERT_ITEMS,
            {
                "room": room,
                "open_no": open_no,
                "count": count,
                "first_no": first_no,
                "size": size,
                "values": orjson.dumps(encoded).decode(),
                "trace": trace,
            },
        )


def create_batches(
    tx: Tx, base: str, config: dict[str, Any], count: int, full: int
) -> list[tuple[str, int]]:
    """Make the base's next `count` batches, as (id, number) in sequence order: the
    first `full` closed for their size, the last open if the add leaves it room. The
    caller holds the base's lock (see `sql.LOCK_BASE`) and has filled its open batch."""
    if count <= 0:
        return []
    first = int(
        tx.one(
            "UPDATE batchyard_batch_bases SET next_sequence = next_sequence + :count "
            "WHERE base_id = :base RETURNING next_sequence - :count AS first",
            {"base": base, "count": count},
        )["first"]
    )
    keys = orjson.dumps([uuid.uuid4().hex for _ in range(count)]).decode()
    params = {"base": base, "first": first}
    tx.execute(
        sql.INSERT_BATCHES,
        {**params, "values": keys, "full": full, **config},
    )
    numbers = tx.one(sql.NEW_BATCH_NUMBERS, params)
    if numbers["hi"] - numbers["lo"] == count - 1:  # consecutive, in sequence order
        return [(f"{base}::{first + i}", numbers["lo"] + i) for i in range(count)]
    return [
        (f"{base}::{row['sequence']}", row["batch_no"])
        for row in tx.all(
            "SELECT sequence, batch_no FROM batchyard_batches WHERE base_id = :base "
            "AND sequence >= :first ORDER BY sequence",
            params,
        )
    ]


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
