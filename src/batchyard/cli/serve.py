"""`batchyard serve`: the HTTP API and the dashboard, with an in-process worker."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from batchyard.cli._common import (
    AppOption,
    LogFormatOption,
    StoreOption,
    configure_logging,
    console,
    errors,
    load_yard,
)


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
        typer.Option(
            envvar="BATCHYARD_API_TOKEN_FILE",
            help="API tokens, one per line (adds to $BATCHYARD_API_TOKEN)",
        ),
    ] = None,
    log_format: LogFormatOption = "text",
) -> None:
    """Run the HTTP API and the dashboard with an in-process worker.

    Bearer tokens from $BATCHYARD_API_TOKEN (comma-separated) and --token-file guard every
    route but /health and /readyz. Without a token the API is open, so it only binds to loopback."""
    # imported here: the other commands start without loading the web stack
    import uvicorn

    from batchyard.http import create_app
    from batchyard.http.auth import TOKEN_ENV, ApiTokens

    tokens = ApiTokens.from_environment(token_file=token_file)
    if not tokens.configured and not is_loopback(host):
        errors.print(
            f"error: refusing to serve on {host} without an API token: anyone who "
            f"can reach it could use the API. Set ${TOKEN_ENV} or --token-file, or "
            f"bind to 127.0.0.1.",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    configure_logging(log_level, log_format)
    yard = load_yard(app_path, store, create=True)
    console.print(
        f"batchyard on {yard.store.dialect} - http://{host}:{port} "
        f"({'token required' if tokens.configured else 'open, loopback only'})",
        highlight=False,
    )
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
