"""Who may use the dashboard, and proof that a form was posted by the dashboard itself.

Access follows the API: with no API tokens configured, anyone who can reach the service may
use it (it binds 127.0.0.1 by default); with tokens, every page and action needs one, either
as ``Authorization: Bearer <token>`` or - for browsers - through the login form, which sets
an HttpOnly session cookie. That cookie holds an expiry and an HMAC keyed by a value derived
from the token, never the token itself: rotating the token ends every session made with it,
and the server keeps no session state.

Every action is a POST that must carry a CSRF token: an HMAC, under a secret of the store, of
a random nonce kept in an HttpOnly, SameSite=Strict cookie. A cross-site page can neither
read the nonce nor forge the HMAC. The request's Origin (or, failing that, its Referer) must
also name this host when the browser sends one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import Response

from batchyard.http.auth import ApiTokens

SESSION_COOKIE = "batchyard_session"
CSRF_COOKIE = "batchyard_csrf"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 12 * 3600
# Failed logins from one client address before it must wait; each failure counts for the
# window. A token worth the name cannot be guessed at ten tries a minute.
LOGIN_ATTEMPTS = 10
LOGIN_WINDOW_SECONDS = 60.0


class Access:
    """The dashboard's gate: tokens, browser sessions and CSRF tokens.

    `tokens` are the API tokens (none: open access). `secret` signs CSRF tokens: the app
    passes its store's, shared by every process; by default a random one per `Access`.
    """

    def __init__(
        self,
        tokens: ApiTokens | None = None,
        *,
        secret: bytes | None = None,
        session_seconds: float = SESSION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens or ApiTokens()
        self.secret = secret or secrets.token_bytes(32)
        self.session_seconds = session_seconds
        self.clock = clock
        self._failed_logins: dict[str, deque[float]] = {}  # per client address, in memory

    @property
    def required(self) -> bool:
        """Whether a token is needed at all."""
        return self.tokens.configured

    # -- tokens and sessions --------------------------------------------------------------

    def token_valid(self, candidate: str) -> bool:
        return self.tokens.valid(candidate)  # hashed, every digest compared

    def session_value(self, token: str, now: float | None = None) -> str:
        """The session cookie's value for a valid `token`."""
        expires = int((now or time.time()) + self.session_seconds)
        return f"{expires}.{_sign(_session_key(ApiTokens.digest(token)), str(expires))}"

    def session_valid(self, value: str, now: float | None = None) -> bool:
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return False
        found = False
        for digest in self.tokens.digests:
            found |= hmac.compare_digest(signature, _sign(_session_key(digest), expires))
        return found

    def authenticated(self, request: HTTPConnection) -> bool:
        """Whether `request` may see and act: open access, a bearer token or a session."""
        if not self.required:
            return True
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential and self.token_valid(credential.strip()):
            return True
        session = request.cookies.get(SESSION_COOKIE)
        return session is not None and self.session_valid(session)

    def start_session(self, request: HTTPConnection, response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.session_value(token),
            max_age=int(self.session_seconds),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    @staticmethod
    def end_session(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/")

    def login_wait(self, client: str) -> float:
        """Seconds `client` must wait before its next login attempt (0: it may try now):
        after `LOGIN_ATTEMPTS` failures within `LOGIN_WINDOW_SECONDS`, until the oldest of
        them leaves the window. Kept per server process."""
        failures = self._failed_logins.get(client)
        if failures is None or len(failures) < LOGIN_ATTEMPTS:
            return 0.0
        return max(0.0, failures[0] + LOGIN_WINDOW_SECONDS - self.clock())

    def login_failed(self, client: str) -> None:
        if len(self._failed_logins) >= 10_000 and client not in self._failed_logins:
            self._failed_logins.clear()  # a bound: a flood of addresses forgets the oldest
        failures = self._failed_logins.setdefault(client, deque(maxlen=LOGIN_ATTEMPTS))
        failures.append(self.clock())

    # -- cross-site request forgery -------------------------------------------------------

    def csrf_nonce(self, request: HTTPConnection) -> tuple[str, bool]:
        """The request's CSRF nonce and whether it is new (then set it with `keep_nonce`)."""
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if len(nonce) == 43:  # token_urlsafe(32)
            return nonce, False
        return secrets.token_urlsafe(32), True

    def csrf_token(self, nonce: str) -> str:
        return _sign(self.secret, nonce)

    @staticmethod
    def keep_nonce(request: HTTPConnection, response: Response, nonce: str) -> None:
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    def csrf_refusal(self, request: HTTPConnection, submitted: str | None) -> str | None:
        """Why this POST must be refused as possibly cross-site, or None when it is fine."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if origin is not None:
            host = request.headers.get("host", "")
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc != host:
                return f"cross-site request refused: origin {origin!r} is not this site"
        nonce = request.cookies.get(CSRF_COOKIE)
        if not nonce or not submitted:
            return "the form has no CSRF token: reload the page and try again"
        if not hmac.compare_digest(submitted, self.csrf_token(nonce)):
            return "the form's CSRF token is not valid: reload the page and try again"
        return None


def _session_key(token_digest: bytes) -> bytes:
    # keyed by the token's digest: the server holds no token, and rotating one ends its
    # sessions
    return hmac.new(token_digest, b"batchyard dashboard session", hashlib.sha256).digest()


def _sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
