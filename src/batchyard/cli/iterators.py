"""`batchyard iterators`: iterator jobs - list, status, and pause, resume or cancel one."""

from __future__ import annotations

from typing import Annotated

import typer

from batchyard.cli._common import AppOption, StoreOption, load_yard
from batchyard.cli._output import Column, Id, JsonOption, say, show_list, show_one
from batchyard.iterator import IteratorState

app = typer.Typer(help="Inspect and steer iterator jobs.", no_args_is_help=True)

COLUMNS = [
    Id("job_id"),
    Column("status"),
    Column("processed"),
    Column("batches"),
    Column("total"),
    Column("parallelism"),
    Column("rate_per_second", "rate"),
    Column("eta_seconds", "eta"),
    Column("last_error"),
]

SLICE_COLUMNS = [
    Column("slice"),
    Column("done"),
    Column("processed"),
    Column("batches"),
    Column("total"),
    Column("cursor"),
]


@app.command("list")
def list_jobs(
    app_path: AppOption = None,
    store: StoreOption = None,
    status: Annotated[IteratorState | None, typer.Option(help="only this state")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Iterator jobs, most recently changed first."""
    show_list(load_yard(app_path, store).list_iterator_jobs(status, limit), as_json, COLUMNS)


@app.command("status")
def status(
    job_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """One job's status and progress (a parallel job's slices below it)."""
    job = load_yard(app_path, store).get_iterator_status(job_id)
    show_one(job, as_json, omit=("slices",))
    if job.slices and not as_json:
        show_list(job.slices, False, SLICE_COLUMNS)


def _add_action(verb: str) -> None:
    """`iterators <verb> ID`, calling the yard's `<verb>_iterator`: the three differ in
    nothing else."""

    def command(
        job_id: str,
        app_path: AppOption = None,
        store: StoreOption = None,
        as_json: JsonOption = False,
    ) -> None:
        status = getattr(load_yard(app_path, store), f"{verb}_iterator")(job_id)
        if as_json:
            show_one(status, as_json)
        else:
            say(f"{job_id}: {status.status}")

    command.__doc__ = f"{verb.capitalize()} an iterator job."
    app.command(verb)(command)


for _verb in ("pause", "resume", "cancel"):
    _add_action(_verb)
