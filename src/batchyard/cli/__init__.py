"""The `batchyard` command, assembled: each concept's module holds its commands (or a group
of them) and this module registers them, in the order `--help` lists them.

    _common.py    what every command shares: --app/--store and the yard they load,
                  logging, output
    serve.py      serve                       worker.py   worker, healthcheck
    db.py         db upgrade | version        batches.py  batches ...
    iterators.py  iterators ...               bulk.py     import, export, stats, jobs ...
"""

from __future__ import annotations

import sys

import typer

from batchyard.cli import batches, bulk, db, iterators, serve, worker
from batchyard.cli._common import one_line
from batchyard.errors import BatchyardError, ConfigError

app = typer.Typer(
    help="Durable batch processing on SQLite or PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(serve.serve)
app.command()(worker.worker)
app.command()(worker.healthcheck)
app.command("import")(bulk.import_file)
app.command("export")(bulk.export_ns)
app.command("stats")(bulk.stats)
app.add_typer(db.app, name="db")
app.add_typer(batches.app, name="batches")
app.add_typer(iterators.app, name="iterators")
app.add_typer(bulk.jobs_app, name="jobs")


def main() -> None:
    try:
        app()
    except BatchyardError as exc:
        # one line an operator can act on, not a traceback: these are expected failures
        # (a store that is down, full or missing, bad input), and the message names what
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None
