"""`batchyard aggregators`: every aggregator on the store - list, status, parked events -
and running one or folding its parked events again.

`list`, `status` and `parked` read the store alone, so they work without `--app`. `run`
and `retry` fold events, which takes the aggregator's key and fold: they need the `--app`
that registers it, or (`run --queue`) ask a worker that has it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from batchyard.aggregator import AggregatorStatus
from batchyard.cli._common import AppOption, StoreOption, load_yard
from batchyard.cli._output import Column, Id, JsonOption, say, show_list, show_one
from batchyard.errors import NotFound
from batchyard.overview import Overview
from batchyard.yard import Yard

app = typer.Typer(help="Inspect and run aggregators.", no_args_is_help=True)

COLUMNS = [
    Id("name"),
    Column("stream"),
    Column("lag_events", "lag"),
    Column("lag_seconds", "behind"),
    Column("events_folded", "folded"),
    Column("parked"),
    Column("running"),
    Column("last_run_at", "last run"),
    Column("last_error"),
]


@app.command("list")
def list_aggregators(
    app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Aggregators with their lag and parked events, by name."""
    show_list(Overview.of(load_yard(app_path, store)).aggregators(), as_json, COLUMNS)


@app.command("status")
def status(
    name: str, app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """One aggregator's cursor, lag, last run and parked events."""
    show_one(_status(load_yard(app_path, store), name), as_json)


def _status(yard: Yard, name: str) -> AggregatorStatus:
    # the store's row, registered in this process or not (as `list` shows it)
    for aggregator in Overview.of(yard).aggregators():
        if aggregator.name == name:
            return aggregator
    raise NotFound(f"no aggregator {name!r}", name=name)


@app.command("run")
def run(
    name: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    queue: Annotated[
        bool, typer.Option("--queue", help="ask the workers to run it now instead")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Fold the aggregator's new events until caught up, here (needs the --app that
    registers it), or with --queue in a worker."""
    yard = load_yard(app_path, store)
    if queue:
        yard.request_aggregator_run(name)
        say(f"{name}: queued")
        return
    show_one(_registered(name, yard.run_aggregator), as_json)


@app.command("parked")
def parked(
    name: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Events the aggregator's fold raised on, with their errors, in stream order."""
    show_list(
        load_yard(app_path, store).list_parked_events(name, limit),
        as_json,
        [
            Id("event_id", "event"),
            Column("position"),
            Column("parked_at", "parked"),
            Column("error"),
            Column("event", "payload"),
        ],
    )


@app.command("retry")
def retry(
    name: str, app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Fold the parked events again (after fixing the fold; needs the --app that registers
    it). Those that fail again stay parked with their new error."""
    yard = load_yard(app_path, store)
    folded = _registered(name, yard.retry_parked_events)
    left = _status(yard, name).parked
    if as_json:
        show_one({"name": name, "folded": folded, "parked": left}, as_json)
    else:
        say(f"{name}: {folded} folded, {left} still parked")


T = TypeVar("T")


def _registered(name: str, action: Callable[[str], T]) -> T:
    """`action(name)`, its NotFound saying what this command needs."""
    try:
        return action(name)
    except NotFound as exc:
        raise NotFound(
            f"{exc} in this process: pass the --app that registers it", name=name
        ) from None
