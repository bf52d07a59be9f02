"""`batchyard batches`: the accumulator's batches - status, history, items, and the dead
ones to flush again or give up."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from batchyard.cli._common import AppOption, StoreOption, console, load_yard, show

app = typer.Typer(help="Inspect and steer batches.", no_args_is_help=True)


@app.command("status")
def status(
    base_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Active batches of a base id."""
    rows = load_yard(app_path, store).get_batch_status(base_id)
    show(
        [asdict(r) for r in rows],
        as_json,
        ["batch_id", "status", "item_count", "pending_count", "attempts", "last_error"],
    )


@app.command("history")
def history(
    base_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    limit: int = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Flush attempts of a base id, newest first."""
    rows = load_yard(app_path, store).get_flush_history(base_id, limit)
    show(
        [asdict(r) for r in rows],
        as_json,
        ["batch_id", "attempt", "reason", "outcome", "item_count", "duration_seconds", "error"],
    )


@app.command("dead")
def dead(
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Dead-lettered batches."""
    rows = load_yard(app_path, store).list_dead_batches()
    show(
        [asdict(r) for r in rows], as_json, ["batch_id", "pending_count", "attempts", "last_error"]
    )


@app.command("flush")
def flush(batch_id: str, app_path: AppOption = None, store: StoreOption = None) -> None:
    """Close a batch and schedule its flush now."""
    result = load_yard(app_path, store).flush(batch_id)
    console.print(json.dumps(asdict(result)))


@app.command("redrive")
def redrive(batch_id: str, app_path: AppOption = None, store: StoreOption = None) -> None:
    """Flush a dead-lettered batch again."""
    result = load_yard(app_path, store).redrive_batch(batch_id)
    console.print(json.dumps(asdict(result)))


@app.command("items")
def items(
    batch_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    after: Annotated[
        int | None, typer.Option(help="the last position seen (the next page starts after it)")
    ] = None,
    limit: Annotated[int, typer.Option(help="items per page, 1-1000")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Items of one batch (a dead one, say), with the reason each failed, if it did."""
    rows = load_yard(app_path, store).get_batch_items(batch_id, after=after, limit=limit)
    show(
        [
            {**asdict(r), "payload": json.dumps(r.payload)} if not as_json else asdict(r)
            for r in rows
        ],
        as_json,
        ["position", "payload", "error"],
    )


@app.command("discard")
def discard(batch_id: str, app_path: AppOption = None, store: StoreOption = None) -> None:
    """Give up a dead batch: it is marked discarded, its items recorded as dropped."""
    result = load_yard(app_path, store).discard_batch(batch_id)
    console.print(json.dumps(asdict(result)))
