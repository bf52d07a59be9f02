"""`batchyard worker` and `batchyard healthcheck`: running workers, and checking on them."""

from __future__ import annotations

from typing import Annotated

import typer

from batchyard.cli._common import (
    AppOption,
    ConcurrencyOption,
    LogFormatOption,
    LogLevelOption,
    StoreOption,
    api_tokens,
    configure_logging,
    load_yard,
)
from batchyard.cli._output import say
from batchyard.errors import BatchyardError
from batchyard.health import DEFAULT_MAX_HEARTBEAT_AGE, run_checks
from batchyard.logs import Redactor
from batchyard.store import DEFAULT_URL, open_store


def worker(
    app_path: AppOption = None,
    store: StoreOption = None,
    concurrency: ConcurrencyOption = 4,
    lease: Annotated[
        float,
        typer.Option(
            envvar="BATCHYARD_LEASE", min=0.1, metavar="SECONDS", help="lease of a claimed task"
        ),
    ] = 30.0,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            envvar="BATCHYARD_SHUTDOWN_TIMEOUT",
            min=0,
            metavar="SECONDS",
            help="time to finish the work in flight at a stop",
        ),
    ] = 30.0,
    # not from the environment: a mode of the command, not a setting of the container
    once: Annotated[bool, typer.Option(help="run what is due now, then exit")] = False,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Run a worker until SIGTERM/SIGINT (a second signal exits at once)."""
    configure_logging(log_level, log_format)
    yard = load_yard(app_path, store, create=True)
    ran = yard.run_worker(
        concurrency=concurrency, wait=not once, lease=lease, shutdown_timeout=shutdown_timeout
    )
    say(f"ran {ran} task(s)")


def healthcheck(
    store: StoreOption = None,
    max_heartbeat_age: Annotated[
        float, typer.Option(help="a worker must have beaten within this many seconds")
    ] = DEFAULT_MAX_HEARTBEAT_AGE,
    workers: Annotated[
        bool, typer.Option(help="check worker heartbeats (--no-workers: the store alone)")
    ] = True,
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
