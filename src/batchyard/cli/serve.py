"""`batchyard serve`: the HTTP API and the dashboard, with an in-process worker."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Annotated

import typer

from batchyard.cli._common import (
    AppOption,
    ConcurrencyOption,
    LogFormatOption,
    LogLevelOption,
    StoreOption,
    configure_logging,
    load_yard,
)
from batchyard.cli._output import say
from batchyard.errors import ConfigError


def serve(
    app_path: AppOption = None,
    store: StoreOption = None,
    host: Annotated[
        str, typer.Option(envvar="BATCHYARD_HOST", metavar="ADDRESS", help="address to bind")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            envvar="BATCHYARD_PORT", min=0, max=65535, metavar="PORT", help="port to bind"
        ),
    ] = 8000,
    concurrency: ConcurrencyOption = 4,
    worker: Annotated[
        bool,
        typer.Option(envvar="BATCHYARD_IN_PROCESS_WORKER", help="run an in-process worker"),
    ] = True,
    log_level: LogLevelOption = "info",
    token_file: Annotated[
        str | None,
        typer.Option(
            envvar="BATCHYARD_API_TOKEN_FILE",
            metavar="PATH",
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
        raise ConfigError(
            f"refusing to serve on {host} without an API token: anyone who can reach it "
            f"could use the API. Set ${TOKEN_ENV} or --token-file, or bind to 127.0.0.1."
        )
    configure_logging(log_level, log_format)
    # the port first: on a busy one nothing is opened, created or started
    listener = listen(host, port)
    try:
        yard = load_yard(app_path, store, create=True)
        port = listener.getsockname()[1]  # the one the system chose for --port 0
        say(
            f"batchyard on {yard.store.dialect} - http://{host}:{port} "
            f"({'token required' if tokens.configured else 'open, loopback only'})"
        )
        app = create_app(yard, worker=worker, concurrency=concurrency, tokens=tokens)
        # log_config=None: uvicorn's records go through our handler (format, masking)
        config = uvicorn.Config(app, log_level=log_level.lower(), log_config=None)
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` (the address the server will listen on), or a
    ConfigError saying why it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    listener = socket.socket(family, kind, proto)
    # as uvicorn does: a restart may bind while connections of the last run wind down
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use", host=host, port=port) from None
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    return listener


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # any other name may resolve anywhere
        return False
