"""The `batchyard` command, assembled: each concept's module holds its commands (or a group
of them) and this module registers them, in the order `--help` lists them.

    _common.py    what every command shares: --app/--store and the yard they load,
                  the BATCHYARD_* options of serve and worker, logging, one-line errors
    _output.py    tables for people, --json for machines     _units.py  1.2 s, 589/s, 3 MiB
    serve.py      serve                       worker.py   worker, healthcheck
    db.py         db upgrade | version        batches.py  batches ...
    iterators.py  iterators ...               aggregators.py  aggregators ...
    bulk.py       import, export, stats, jobs ...   handlers.py  handlers
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
import typer.core

from batchyard import __version__
from batchyard.cli import aggregators, batches, bulk, db, handlers, iterators, serve, worker
from batchyard.cli._common import one_line
from batchyard.errors import BatchyardError, ConfigError

app = typer.Typer(
    help="Durable batch processing on SQLite or PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"batchyard {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Durable batch processing on SQLite or PostgreSQL."""


app.command()(serve.serve)
app.command()(worker.worker)
app.command()(worker.healthcheck)
app.command("import")(bulk.import_file)
app.command("export")(bulk.export_ns)
app.command("stats")(bulk.stats)
app.command("handlers")(handlers.handlers)
app.add_typer(db.app, name="db")
app.add_typer(batches.app, name="batches")
app.add_typer(iterators.app, name="iterators")
app.add_typer(aggregators.app, name="aggregators")
app.add_typer(bulk.jobs_app, name="jobs")


def _flags_take_no_value() -> None:
    # typer's rich help prints a value type beside every option, flags included
    # (`--help <bool>`), though a flag takes none: it gets none
    show_type = typer.core.TyperOption.display_type_rich

    def display_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else show_type(self, ctx)

    typer.core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


if hasattr(typer.core.TyperOption, "display_type_rich"):
    _flags_take_no_value()

# click's ClickException, from the click typer runs on (its own copy in recent typer): a
# usage error, a bad option value
_UsageProblem: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except BatchyardError as exc:
        # one line an operator can act on, not a traceback: these are expected failures
        # (a store that is down, full or missing, bad input), and the message names what
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None
    except _UsageProblem as exc:
        # the same single line for a mistyped command or option (exit 2, as click's own)
        message = one_line(Exception(exc.format_message()))  # type: ignore[attr-defined]
        if message:  # none when the help was asked for by giving no command
            print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
