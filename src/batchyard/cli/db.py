"""`batchyard db`: the store's schema version, and upgrading it."""

from __future__ import annotations

import typer

from batchyard.cli._common import StoreOption, console
from batchyard.store import DEFAULT_URL, open_store

app = typer.Typer(help="The store's schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(store: StoreOption = None) -> None:
    """Apply the schema migrations that are missing."""
    opened = open_store(store or DEFAULT_URL, migrate=False)
    before = opened.schema_version()
    after = opened.migrate()
    opened.close()
    console.print(f"schema version {before} -> {after}")


@app.command("version")
def version(store: StoreOption = None) -> None:
    """Print the schema version and the latest one this batchyard knows."""
    opened = open_store(store or DEFAULT_URL, migrate=False, create=False)
    console.print(f"schema version {opened.schema_version()} (latest {opened.latest_version()})")
    opened.close()
