"""The `batchyard` command: serve, worker, healthcheck, db, batches, iterators (and, from
`cli_jobs`, import, export, jobs and stats)."""

from __future__ import annotations

import importlib
import ipaddress
import json
import logging
import os
import sys
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from batchyard.errors import BatchyardError, ConfigError
from batchyard.health import DEFAULT_MAX_HEARTBEAT_AGE, run_checks
from batchyard.logs import FORMATS, Redactor, setup_logging
from batchyard.store import DEFAULT_URL, open_store
from batchyard.yard import Yard

app = typer.Typer(help="Durable batch processing on SQLite or PostgreSQL.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
batches_app = typer.Typer(help="Inspect and steer batches.", no_args_is_help=True)
iterators_app = typer.Typer(help="Inspect and steer iterator jobs.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(batches_app, name="batches")
app.add_typer(iterators_app, name="iterators")
console = Console()
errors = Console(stderr=True)

AppOption = Annotated[
    str | None,
    typer.Option("--app", help="module:attribute of your Yard (or a function returning one)"),
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", envvar="BATCHYARD_STORE",
                 help=f"store URL when no --app is given [default: {DEFAULT_URL}]"),
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
        flush_log.info("flushed %s (%d items, attempt %d): %s", ctx.batch_id, len(items),
                       ctx.attempt, text, extra={"batch_id": ctx.batch_id,
                                                 "item_count": len(items)})


LogFormatOption = Annotated[
    str, typer.Option("--log-format", help=f"log lines as {' or '.join(FORMATS)}"),
]


def api_tokens() -> list[str]:
    """The API tokens from BATCHYARD_API_TOKEN (several may be separated by commas)."""
    return [t.strip() for t in os.environ.get("BATCHYARD_API_TOKEN", "").split(",") if t.strip()]


def _setup_logging(level: str, log_format: str) -> None:
    if log_format not in FORMATS:
        raise typer.BadParameter(f"use {' or '.join(FORMATS)}", param_hint="--log-format")
    setup_logging(level, log_format, secrets=api_tokens())


@app.command()
def serve(
    app_path: AppOption = None,
    store: StoreOption = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    concurrency: Annotated[int, typer.Option(help="in-process worker threads")] = 4,
    worker: Annotated[bool, typer.Option(help="run an in-process worker")] = True,
    log_level: Annotated[str, typer.Option(help="logging level")] = "info",
    token_file: Annotated[
        str | None,
        typer.Option(envvar="BATCHYARD_API_TOKEN_FILE",
                     help="API tokens, one per line (adds to $BATCHYARD_API_TOKEN)"),
    ] = None,
    log_format: LogFormatOption = "text",
) -> None:
    """Run the HTTP API and the dashboard with an in-process worker.

    Bearer tokens from $BATCHYARD_API_TOKEN (comma-separated) and --token-file guard every
    route but /health and /readyz. Without a token the API is open, so it only binds to loopback."""
    import uvicorn

    from batchyard.http import create_app
    from batchyard.http.auth import TOKEN_ENV, ApiTokens

    tokens = ApiTokens.from_environment(token_file=token_file)
    if not tokens.configured and not is_loopback(host):
        errors.print(f"error: refusing to serve on {host} without an API token: anyone who "
                     f"can reach it could use the API. Set ${TOKEN_ENV} or --token-file, or "
                     f"bind to 127.0.0.1.", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    _setup_logging(log_level, log_format)
    yard = load_yard(app_path, store, create=True)
    console.print(f"batchyard on {yard.store.dialect} - http://{host}:{port} "
                  f"({'token required' if tokens.configured else 'open, loopback only'})",
                  highlight=False)
    app = create_app(yard, worker=worker, concurrency=concurrency, tokens=tokens)
    # log_config=None: uvicorn's records go through our handler (format, masking)
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), log_config=None)


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # any other name may resolve anywhere
        return False


@app.command()
def worker(
    app_path: AppOption = None,
    store: StoreOption = None,
    concurrency: Annotated[int, typer.Option(help="tasks run at once")] = 4,
    lease: Annotated[float, typer.Option(help="lease of a claimed task, seconds")] = 30.0,
    shutdown_timeout: Annotated[float, typer.Option(help="seconds to finish at stop")] = 30.0,
    once: Annotated[bool, typer.Option(help="run what is due now, then exit")] = False,
    log_level: Annotated[str, typer.Option(help="logging level")] = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Run a worker until SIGTERM/SIGINT (a second signal exits at once)."""
    _setup_logging(log_level, log_format)
    yard = load_yard(app_path, store, create=True)
    ran = yard.run_worker(concurrency=concurrency, wait=not once, lease=lease,
                          shutdown_timeout=shutdown_timeout)
    console.print(f"ran {ran} task(s)")


@app.command()
def healthcheck(
    store: StoreOption = None,
    max_heartbeat_age: Annotated[float, typer.Option(
        help="a worker must have beaten within this many seconds")] = DEFAULT_MAX_HEARTBEAT_AGE,
    workers: Annotated[bool, typer.Option(
        help="check worker heartbeats (--no-workers: the store alone)")] = True,
) -> None:
    """Check the store, its schema and the workers' heartbeats; exit 1 if any check fails.
    Changes nothing (a schema that is behind is reported, not upgraded)."""
    try:
        opened = open_store(store or DEFAULT_URL, migrate=False, create=False)
    except BatchyardError as exc:
        print(f"FAIL  store    unreachable: {Redactor(api_tokens())(str(exc))}")
        raise typer.Exit(1) from None
    try:
        checks = run_checks(opened, max_heartbeat_age=max_heartbeat_age if workers else None)
    finally:
        opened.close()
    for check in checks:
        print(check.line())
    raise typer.Exit(0 if all(check.ok for check in checks) else 1)


@db_app.command("upgrade")
def db_upgrade(store: StoreOption = None) -> None:
    """Apply the schema migrations that are missing."""
    opened = open_store(store or DEFAULT_URL, migrate=False)
    before = opened.schema_version()
    after = opened.migrate()
    opened.close()
    console.print(f"schema version {before} -> {after}")


@db_app.command("version")
def db_version(store: StoreOption = None) -> None:
    """Print the schema version and the latest one this batchyard knows."""
    opened = open_store(store or DEFAULT_URL, migrate=False, create=False)
    console.print(f"schema version {opened.schema_version()} (latest {opened.latest_version()})")
    opened.close()


@batches_app.command("status")
def batches_status(base_id: str, app_path: AppOption = None, store: StoreOption = None,
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Active batches of a base id."""
    rows = load_yard(app_path, store).get_batch_status(base_id)
    _show([asdict(r) for r in rows], as_json,
          ["batch_id", "status", "item_count", "pending_count", "attempts", "last_error"])


@batches_app.command("history")
def batches_history(base_id: str, app_path: AppOption = None, store: StoreOption = None,
                    limit: int = 20,
                    as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Flush attempts of a base id, newest first."""
    rows = load_yard(app_path, store).get_flush_history(base_id, limit)
    _show([asdict(r) for r in rows], as_json,
          ["batch_id", "attempt", "reason", "outcome", "item_count", "duration_seconds",
           "error"])


@batches_app.command("dead")
def batches_dead(app_path: AppOption = None, store: StoreOption = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Dead-lettered batches."""
    rows = load_yard(app_path, store).list_dead_batches()
    _show([asdict(r) for r in rows], as_json,
          ["batch_id", "pending_count", "attempts", "last_error"])


@batches_app.command("flush")
def batches_flush(batch_id: str, app_path: AppOption = None,
                  store: StoreOption = None) -> None:
    """Close a batch and schedule its flush now."""
    result = load_yard(app_path, store).flush(batch_id)
    console.print(json.dumps(asdict(result)))


@batches_app.command("redrive")
def batches_redrive(batch_id: str, app_path: AppOption = None,
                    store: StoreOption = None) -> None:
    """Flush a dead-lettered batch again."""
    result = load_yard(app_path, store).redrive_batch(batch_id)
    console.print(json.dumps(asdict(result)))


@batches_app.command("items")
def batches_items(batch_id: str, app_path: AppOption = None, store: StoreOption = None,
                  after: Annotated[int | None, typer.Option(
                      help="the last position seen (the next page starts after it)")] = None,
                  limit: Annotated[int, typer.Option(help="items per page, 1-1000")] = 100,
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Items of one batch (a dead one, say), with the reason each failed, if it did."""
    rows = load_yard(app_path, store).get_batch_items(batch_id, after=after, limit=limit)
    _show([{**asdict(r), "payload": json.dumps(r.payload)} if not as_json else asdict(r)
           for r in rows], as_json, ["position", "payload", "error"])


@batches_app.command("discard")
def batches_discard(batch_id: str, app_path: AppOption = None,
                    store: StoreOption = None) -> None:
    """Give up a dead batch: it is marked discarded, its items recorded as dropped."""
    result = load_yard(app_path, store).discard_batch(batch_id)
    console.print(json.dumps(asdict(result)))


_ITERATOR_COLUMNS = ["job_id", "status", "processed", "batches", "total", "rate_per_second",
                     "eta_seconds", "last_error"]


@iterators_app.command("list")
def iterators_list(app_path: AppOption = None, store: StoreOption = None,
                   status: Annotated[str | None, typer.Option(help="only this state")] = None,
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Iterator jobs, most recently changed first."""
    rows = load_yard(app_path, store).list_iterator_jobs(status)
    _show([asdict(r) for r in rows], as_json, _ITERATOR_COLUMNS)


@iterators_app.command("status")
def iterators_status(job_id: str, app_path: AppOption = None, store: StoreOption = None,
                     as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One job's status and progress."""
    _show([asdict(load_yard(app_path, store).get_iterator_status(job_id))], as_json,
          _ITERATOR_COLUMNS)


def _iterator_action(verb: str) -> None:
    def command(job_id: str, app_path: AppOption = None, store: StoreOption = None) -> None:
        yard = load_yard(app_path, store)
        status = getattr(yard, f"{verb}_iterator")(job_id)
        console.print(f"{job_id}: {status.status}")

    command.__doc__ = f"{verb.capitalize()} an iterator job."
    iterators_app.command(verb)(command)


for _verb in ("pause", "resume", "cancel"):
    _iterator_action(_verb)


def _show(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    if as_json:
        print(json.dumps(rows, default=str))
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    console.print(table)


def main() -> None:
    from batchyard import cli_jobs  # noqa: F401 - registers import, export, jobs and stats

    try:
        app()
    except BatchyardError as exc:
        # one line an operator can act on, not a traceback: these are expected failures
        # (a store that is down, full or missing, bad input), and the message names what
        print(f"error: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, with secrets (tokens, URL passwords) masked."""
    return Redactor(api_tokens())(" ".join(str(exc).split()))
