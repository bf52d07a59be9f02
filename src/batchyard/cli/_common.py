"""What every command of `batchyard` shares: the --app and --store options and the yard they
load, the options of the long-running commands (with their BATCHYARD_* variables), logging
setup, the API tokens, and one-line errors. Output (tables, JSON) is `_output`'s."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from batchyard.logs import FORMATS, Redactor, setup_logging
from batchyard.store import DEFAULT_URL, open_store
from batchyard.yard import Yard

errors = Console(stderr=True)

# Each option people set in a container reads a BATCHYARD_* variable when it is not given on
# the command line (docs/cli.md lists them in one table, checked against these by a test).
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        envvar="BATCHYARD_APP",
        metavar="MODULE:ATTR",
        help="module:attribute of your Yard (or a function returning one)",
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="BATCHYARD_STORE",
        metavar="URL",
        help=f"store URL when no --app is given [default: {DEFAULT_URL}]",
    ),
]
ConcurrencyOption = Annotated[
    int,
    typer.Option(envvar="BATCHYARD_CONCURRENCY", min=1, metavar="N", help="tasks run at once"),
]
LogLevelOption = Annotated[
    str, typer.Option(envvar="BATCHYARD_LOG_LEVEL", metavar="LEVEL", help="logging level")
]
LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        envvar="BATCHYARD_LOG_FORMAT",
        metavar="FORMAT",
        help=f"log lines as {' or '.join(FORMATS)}",
    ),
]


def load_yard(app_path: str | None, store: str | None, *, create: bool = False) -> Yard:
    """The user's yard from `module:attribute`, or a yard on `store` with the built-in
    handlers (``log``). Only a command that `create`s (serve, worker, import) makes a new
    SQLite file: any other, on a mistyped path, says there is no database there."""
    if app_path is None:
        yard = Yard(open_store(store or DEFAULT_URL, create=create))
        register_builtin_handlers(yard)
        return yard
    module_name, _, attribute = app_path.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        target: Any = getattr(module, attribute or "yard")
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot load {app_path!r}: {exc}", param_hint="--app") from exc
    yard = target() if callable(target) and not isinstance(target, Yard) else target
    if not isinstance(yard, Yard):
        raise typer.BadParameter(f"{app_path!r} is not a Yard", param_hint="--app")
    return yard


LOGGED_ITEMS_CHARS = 2048  # of the items' JSON in the `log` handler's line: a look, not a dump


def register_builtin_handlers(yard: Yard) -> None:
    flush_log = logging.getLogger("batchyard.flush")

    @yard.handler("log")
    def log(items: list[Any], ctx: Any) -> None:
        """Log each flushed batch with its items (the first 2 KB of their JSON): for trying
        batchyard out without writing a handler."""
        text = json.dumps(items, ensure_ascii=False)
        if len(text) > LOGGED_ITEMS_CHARS:
            text = text[:LOGGED_ITEMS_CHARS] + f"... ({len(text)} characters in all)"
        flush_log.info(
            "flushed %s (%d items, attempt %d): %s",
            ctx.batch_id,
            len(items),
            ctx.attempt,
            text,
            extra={"batch_id": ctx.batch_id, "item_count": len(items)},
        )


def api_tokens() -> list[str]:
    """The API tokens from BATCHYARD_API_TOKEN (several may be separated by commas)."""
    return [t.strip() for t in os.environ.get("BATCHYARD_API_TOKEN", "").split(",") if t.strip()]


def configure_logging(level: str, log_format: str) -> None:
    """Log at `level` in `log_format`, masking the API tokens in every line."""
    if log_format not in FORMATS:
        raise typer.BadParameter(f"use {' or '.join(FORMATS)}", param_hint="--log-format")
    setup_logging(level, log_format, secrets=api_tokens())


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, with secrets (tokens, URL passwords) masked."""
    return Redactor(api_tokens())(" ".join(str(exc).split()))
