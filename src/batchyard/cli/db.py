"""`batchyard db`: the store's schema version, and upgrading it."""

from __future__ import annotations

import typer

from batchyard.cli._common import StoreOption
from batchyard.cli._output import JsonOption, say, show_one
from batchyard.store import DEFAULT_URL, open_store

app = typer.Typer(help="The store's schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(store: StoreOption = None) -> None:
    """Apply the schema migrations that are missing."""
    opened = open_store(store or DEFAULT_URL, migrate=False)
    before = opened.schema_version()
    after = opened.migrate()
    opened.close()
    say(f"schema version {before} -> {after}")


@app.command("version")
def version(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Print the schema version and the latest one this batchyard knows."""
    opened = open_store(store or DEFAULT_URL, migrate=False, create=False)
    try:
        current, latest = opened.schema_version(), opened.latest_version()
    finally:
        opened.close()
    if as_json:
        show_one({"schema_version": current, "latest_version": latest}, as_json)
    else:
        say(f"schema version {current} (latest {latest})")
