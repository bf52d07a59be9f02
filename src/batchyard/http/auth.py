"""Bearer API tokens: which requests may use the API.

Tokens come from ``BATCHYARD_API_TOKEN`` (comma-separated) and from a token file
(``BATCHYARD_API_TOKEN_FILE`` or ``serve --token-file``: one token per line, ``#`` comments).
With none configured the API is open; with any, every path but `PUBLIC_PATHS` needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import orjson
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from batchyard.errors import ConfigError

# Probes that load balancers and orchestrators call without credentials; they reveal
# nothing. (/metrics does reveal names and counts: Prometheus sends a bearer token.)
PUBLIC_PATHS = frozenset({"/health", "/readyz"})

TOKEN_ENV = "BATCHYARD_API_TOKEN"
TOKEN_FILE_ENV = "BATCHYARD_API_TOKEN_FILE"


def _digest(token: str) -> bytes:
    # surrogateescape: a header byte that is not UTF-8 still hashes, it just matches nothing
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class ApiTokens:
    """The tokens that open the API, kept only as sha256 digests.

    `valid` compares a candidate against every digest with `hmac.compare_digest` and never
    stops early, so neither which token matched nor how much of one did shows in the time.
    """

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        digests = (_digest(token.strip()) for token in tokens if token.strip())
        self._digests = tuple(dict.fromkeys(digests))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ApiTokens:
        """Tokens from a file, one per line; blank lines and lines starting with ``#`` are
        skipped. Raises ConfigError if the file cannot be read or holds no token (a token
        file that opens the API to everyone is a mistake, not a choice)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read the token file {str(path)!r}: {exc}", field="token_file"
            ) from exc
        lines = (line.strip() for line in text.splitlines())
        tokens = cls(line for line in lines if not line.startswith("#"))
        if not tokens.configured:
            raise ConfigError(f"the token file {str(path)!r} holds no token", field="token_file")
        return tokens

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> ApiTokens:
        """Tokens from ``BATCHYARD_API_TOKEN`` plus those of the token file (`token_file`,
        else ``BATCHYARD_API_TOKEN_FILE``)."""
        environ = os.environ if environ is None else environ
        tokens = cls(environ.get(TOKEN_ENV, "").split(","))
        token_file = token_file or environ.get(TOKEN_FILE_ENV) or None
        if token_file is not None:
            tokens = tokens | cls.from_file(token_file)
        return tokens

    def __or__(self, other: ApiTokens) -> ApiTokens:
        merged = ApiTokens()
        merged._digests = tuple(dict.fromkeys(self._digests + other._digests))
        return merged

    @property
    def configured(self) -> bool:
        """Whether any token is set; without one the API is open."""
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiTokens(<{len(self)} token(s)>)"

    @property
    def digests(self) -> tuple[bytes, ...]:
        """The sha256 digests of the tokens (what a session may be keyed by)."""
        return self._digests

    @staticmethod
    def digest(token: str) -> bytes:
        return _digest(token)

    def valid(self, token: str) -> bool:
        """Whether `token` is one of the configured tokens (always False when none is)."""
        if not isinstance(token, str) or not token:
            return False
        candidate = _digest(token)
        matched = False
        for digest in self._digests:
            # `|=`, not `or`: every digest is compared, whichever matches
            matched |= hmac.compare_digest(candidate, digest)
        return matched


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, if it is one."""
    if not authorization:
        return None
    scheme, _, token = authorization.decode("utf-8", "surrogateescape").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class BearerAuth:
    """ASGI middleware: a request without a valid token gets 401 before anything reads it.

    A middleware rather than a route dependency so that every router, the schema and the
    docs are covered, including routers added later, and a 404 reveals no route to a
    stranger."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: ApiTokens,
        public_paths: frozenset[str] = PUBLIC_PATHS,
        self_guarded: str | None = None,
        readable: tuple[str, ...] = (),
        signed_in: Callable[[HTTPConnection], bool] | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.public_paths = public_paths
        # "/" and everything under this prefix check access themselves (the dashboard:
        # a browser proves itself with a login session rather than a header)
        self.self_guarded = self_guarded
        # these paths (and those under them) a browser signed in to the dashboard may also
        # GET - the API's docs and schema - without a header its address bar cannot send;
        # only reads, so a session cookie (SameSite) never makes an API call change anything
        self.readable = readable
        self.signed_in = signed_in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = b"Bearer"
        if dict(scope["headers"]).get(b"authorization"):
            challenge = b'Bearer error="invalid_token"'
        body = orjson.dumps(
            {
                "detail": "a valid API token is required (Authorization: Bearer <token>)",
                "error": "Unauthorized",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        if not self.tokens.configured:
            return True
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path in self.public_paths:
            return True
        if self.self_guarded is not None and (
            path == "/" or path == self.self_guarded or path.startswith(self.self_guarded + "/")
        ):
            return True
        token = bearer_token(dict(scope["headers"]).get(b"authorization"))
        if token is not None and self.tokens.valid(token):
            return True
        return (
            self.signed_in is not None
            and scope.get("method") in ("GET", "HEAD")
            and any(path == p or path.startswith(p + "/") for p in self.readable)
            and self.signed_in(HTTPConnection(scope))
        )
