"""`batchyard batches`: the accumulator's batches - list, status, history, items, and the
dead ones to flush again or give up."""

from __future__ import annotations

from typing import Annotated

import typer

from batchyard.accumulator.records import BatchStatus
from batchyard.cli._common import AppOption, StoreOption, load_yard
from batchyard.cli._output import Column, Id, JsonOption, fields, say, show_list, show_one

app = typer.Typer(help="Inspect and steer batches.", no_args_is_help=True)

BATCH_COLUMNS = [
    Id("batch_id"),
    Column("status"),
    Column("item_count", "items"),
    Column("pending_count", "pending"),
    Column("byte_count", "bytes"),
    Column("attempts"),
    Column("age_seconds", "age"),
    Column("blocked_by", "blocked by"),
    Column("last_error"),
]
BATCHER_COLUMNS = [
    Id("name"),
    Column("key"),
    Column("handler"),
    Column("max_batch_size", "size"),
    Column("max_batch_bytes", "bytes"),
    Column("open_keys", "open keys"),
    Column("items_waiting", "waiting"),
    Column("dead"),
    Column("items_flushed", "flushed (hour)"),
    Column("failed_items", "failed (hour)"),
]


@app.command("list")
def list_batches(
    app_path: AppOption = None,
    store: StoreOption = None,
    status: Annotated[BatchStatus | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Batches of every base id, most recently changed first."""
    rows = load_yard(app_path, store).list_batches(status, limit)
    show_list(rows, as_json, BATCH_COLUMNS)


@app.command("status")
def status(
    base_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Active batches of a base id."""
    show_list(load_yard(app_path, store).get_batch_status(base_id), as_json, BATCH_COLUMNS)


@app.command("batcher")
def batcher(
    name: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A batcher's unfinished batches, every key's (the app registers the batcher)."""
    found = load_yard(app_path, store).get_batcher_status(name)
    if as_json:
        show_one(found, as_json)
        return
    bound = "" if found.max_open_keys is None else f" of at most {found.max_open_keys}"
    say(f"{name}: {found.open_keys} open key(s){bound}")
    rows = [batch for batches in found.keys.values() for batch in batches]
    show_list(rows, as_json, BATCH_COLUMNS)


@app.command("batchers")
def batchers(
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """The batchers the app registers: settings, open keys, items waiting, the last hour's
    items flushed and failed."""
    yard = load_yard(app_path, store)
    summaries = yard.get_batcher_summaries([b.name for b in yard.list_batchers()])
    if as_json:
        show_list(summaries, as_json, [])
        return
    rows = [
        {
            **fields(s.batcher),
            **fields(s),
            **fields(s.last_hour),
        }
        for s in summaries
    ]
    show_list(rows, as_json, BATCHER_COLUMNS)


@app.command("history")
def history(
    base_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Flush attempts of a base id, newest first."""
    show_list(
        load_yard(app_path, store).get_flush_history(base_id, limit),
        as_json,
        [
            Id("batch_id"),
            Column("attempt"),
            Column("reason"),
            Column("outcome"),
            Column("item_count", "items"),
            Column("failed_count", "failed"),
            Column("started_at", "started"),
            Column("duration_seconds", "took"),
            Column("error"),
        ],
    )


@app.command("dead")
def dead(
    app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Dead-lettered batches."""
    show_list(
        load_yard(app_path, store).list_dead_batches(),
        as_json,
        [
            Id("batch_id"),
            Column("pending_count", "pending"),
            Column("attempts"),
            Column("last_error"),
        ],
    )


@app.command("flush")
def flush(
    batch_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close a batch and schedule its flush now."""
    show_one(load_yard(app_path, store).flush(batch_id), as_json)


@app.command("redrive")
def redrive(
    batch_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Flush a dead-lettered batch again."""
    show_one(load_yard(app_path, store).redrive_batch(batch_id), as_json)


@app.command("items")
def items(
    batch_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    after: Annotated[
        int | None, typer.Option(help="the last position seen (the next page starts after it)")
    ] = None,
    limit: Annotated[int, typer.Option(help="items per page, 1-1000")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Items of one batch (a dead one, say), with the reason each failed, if it did."""
    show_list(
        load_yard(app_path, store).get_batch_items(batch_id, after=after, limit=limit),
        as_json,
        [Column("position"), Column("payload"), Column("error")],
    )


@app.command("discard")
def discard(
    batch_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give up a dead batch: it is marked discarded, its items recorded as dropped."""
    show_one(load_yard(app_path, store).discard_batch(batch_id), as_json)
