"""`batchyard iterators`: iterator jobs - list, status, and pause, resume or cancel one."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from batchyard.cli._common import AppOption, StoreOption, console, load_yard, show

app = typer.Typer(help="Inspect and steer iterator jobs.", no_args_is_help=True)

COLUMNS = [
    "job_id",
    "status",
    "processed",
    "batches",
    "total",
    "rate_per_second",
    "eta_seconds",
    "last_error",
]


@app.command("list")
def list_jobs(
    app_path: AppOption = None,
    store: StoreOption = None,
    status: Annotated[str | None, typer.Option(help="only this state")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Iterator jobs, most recently changed first."""
    rows = load_yard(app_path, store).list_iterator_jobs(status)
    show([asdict(r) for r in rows], as_json, COLUMNS)


@app.command("status")
def status(
    job_id: str,
    app_path: AppOption = None,
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One job's status and progress."""
    show([asdict(load_yard(app_path, store).get_iterator_status(job_id))], as_json, COLUMNS)


def _add_action(verb: str) -> None:
    """`iterators <verb> ID`, calling the yard's `<verb>_iterator`: the three differ in
    nothing else."""

    def command(job_id: str, app_path: AppOption = None, store: StoreOption = None) -> None:
        yard = load_yard(app_path, store)
        status = getattr(yard, f"{verb}_iterator")(job_id)
        console.print(f"{job_id}: {status.status}")

    command.__doc__ = f"{verb.capitalize()} an iterator job."
    app.command(verb)(command)


for _verb in ("pause", "resume", "cancel"):
    _add_action(_verb)
