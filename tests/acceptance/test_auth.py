"""Bearer tokens on the HTTP API, and `serve` refusing to expose an open API."""

from __future__ import annotations

import hmac
import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from batchyard import ConfigError
from batchyard.http import create_app
from batchyard.http.auth import PUBLIC_PATHS, ApiTokens
from tests.acceptance.test_cli import cli
from tests.servers import free_port, wait_for_http

TOKENS = ["first-token-0123456789", "second-token-abcdefghij", "third-token-zyxwvutsrq"]


@pytest.fixture
def store_url(tmp_path):
    """Auth is the same on every store: SQLite alone here."""
    return f"sqlite:///{tmp_path}/yard.db"


@pytest.fixture
def app(make_yard):
    return create_app(make_yard(), worker=False, tokens=ApiTokens(TOKENS))


def every_operation(app):
    """(method, path) of every route the app serves, routers added later included, with
    the path parameters filled in."""
    operations = [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/no/such/route")]
    for route in app.routes:
        if isinstance(route, APIRoute):
            path = re.sub(r"\{[^}]+\}", "ev::0", route.path)
            operations += [(method, path) for method in sorted(route.methods)]
    return operations


def test_every_route_but_the_public_ones_needs_a_token(app):
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        for method, path in every_operation(app):
            if path in PUBLIC_PATHS or path == "/" or path.startswith("/ui"):
                continue  # the dashboard guards itself: tests/dashboard/test_security.py
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Authorization": f"Basic {TOKENS[0]}"},
                {"Authorization": f"Bearer {TOKENS[0]}x"},
                {"Authorization": "Bearer "},
            ):
                response = client.request(method, path, headers=headers, json={"items": [1]})
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.json()["error"] == "Unauthorized"


def test_each_configured_token_opens_the_api(app):
    with TestClient(app) as client:
        for token in TOKENS:
            headers = {"Authorization": f"Bearer {token}"}
            assert client.get("/batches/ev", headers=headers).status_code == 200
            assert client.get("/openapi.json", headers=headers).status_code == 200
        # the scheme is case-insensitive (RFC 7235)
        assert (
            client.get("/batches/ev", headers={"Authorization": f"bearer {TOKENS[1]}"}).status_code
            == 200
        )
        assert (
            client.post(
                "/batches/ev/flush", headers={"Authorization": f"Bearer {TOKENS[2]}"}
            ).status_code
            == 200
        )


def test_a_wrong_token_is_told_it_is_invalid(app):
    with TestClient(app) as client:
        assert client.get("/batches/ev").headers["www-authenticate"] == "Bearer"
        wrong = client.get("/batches/ev", headers={"Authorization": "Bearer nope"})
        assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_without_tokens_the_api_is_open(make_yard):
    with TestClient(create_app(make_yard(), worker=False, tokens=ApiTokens())) as client:
        assert client.get("/batches/ev").status_code == 200


def test_the_app_reads_tokens_from_the_environment(make_yard, monkeypatch, tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text("# ops\nfrom-the-file-0123456789\n")
    monkeypatch.setenv("BATCHYARD_API_TOKEN", "from-the-env-0123456789")
    monkeypatch.setenv("BATCHYARD_API_TOKEN_FILE", str(token_file))
    app = create_app(make_yard(), worker=False)
    assert app.state.tokens.valid("from-the-env-0123456789")
    with TestClient(app) as client:
        assert client.get("/batches/ev").status_code == 401
        for token in ("from-the-env-0123456789", "from-the-file-0123456789"):
            response = client.get("/batches/ev", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200


def test_token_file_has_one_token_a_line_and_comments(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# the deploy bot\n  bot-token-1  \n\n# humans\nalice-token-2\n")
    tokens = ApiTokens.from_file(path)
    assert len(tokens) == 2
    assert tokens.valid("bot-token-1") and tokens.valid("alice-token-2")
    assert not tokens.valid("# the deploy bot") and not tokens.valid("")


def test_a_token_file_that_opens_nothing_is_a_config_error(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match="holds no token"):
        ApiTokens.from_file(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        ApiTokens.from_file(tmp_path / "missing")


def test_environment_tokens_are_comma_separated_and_add_to_the_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("file-token\n")
    tokens = ApiTokens.from_environment({"BATCHYARD_API_TOKEN": " a-token, b-token,,"})
    assert len(tokens) == 2 and tokens.valid("a-token") and tokens.valid("b-token")
    both = ApiTokens.from_environment({"BATCHYARD_API_TOKEN": "a-token"}, token_file=path)
    assert len(both) == 2 and both.valid("file-token")
    from_env_file = ApiTokens.from_environment({"BATCHYARD_API_TOKEN_FILE": str(path)})
    assert from_env_file.configured and from_env_file.valid("file-token")
    assert not ApiTokens.from_environment({}).configured


def test_tokens_are_kept_only_as_digests():
    tokens = ApiTokens(["secret-token-value"])
    assert "secret-token-value" not in repr(tokens)
    assert all(b"secret-token-value" not in digest for digest in tokens._digests)
    assert not ApiTokens().valid("anything")


def test_valid_compares_against_every_token_in_constant_time():
    """Every configured digest goes through hmac.compare_digest on every call, whether the
    first, the last or none matches: nothing returns early."""
    tokens = ApiTokens(TOKENS)
    compared = []

    def watch(frame, event, arg):
        if event == "c_call" and arg is hmac.compare_digest:
            compared.append(arg)

    for candidate, expected in [
        (TOKENS[0], True),
        (TOKENS[2], True),
        ("nope", False),
        (TOKENS[0][:-1], False),
    ]:
        compared.clear()
        sys.setprofile(watch)
        try:
            result = tokens.valid(candidate)
        finally:
            sys.setprofile(None)
        assert result is expected
        assert len(compared) == len(TOKENS), candidate


# serve in real processes


def serve_env(store_url, **extra):
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("BATCHYARD_API_TOKEN")
    }
    return {**env, "BATCHYARD_STORE": store_url, **extra}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_serve_refuses_to_listen_beyond_loopback_without_a_token(store_url, host):
    result = subprocess.run(
        [sys.executable, "-m", "batchyard", "serve", "--host", host],
        env=serve_env(store_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"refusing to serve on {host} without an API token" in result.stderr
    assert "BATCHYARD_API_TOKEN" in result.stderr


def test_serve_beyond_loopback_with_a_token_starts_and_requires_it(store_url, tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text("# for the test\nserve-token-0123456789\n")
    port = free_port()
    server = cli(
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--no-worker",
        "--token-file",
        str(token_file),
        env=serve_env(store_url),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health")
        assert httpx.get(f"{base}/batches/ev").status_code == 401
        response = httpx.get(
            f"{base}/batches/ev", headers={"Authorization": "Bearer serve-token-0123456789"}
        )
        assert response.status_code == 200 and response.json()["data"] == []
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "token required" in output


def test_serve_on_loopback_without_a_token_is_open(store_url):
    port = free_port()
    server = cli(
        "serve", "--host", "localhost", "--port", str(port), "--no-worker", env=serve_env(store_url)
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/batches/ev")
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert "open, loopback only" in output
