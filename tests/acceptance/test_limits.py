"""Request limits and bad input on the HTTP API: sizes, content types, nesting, field paths,
and no bad input ever answered with a 5xx."""

from __future__ import annotations

import json
import logging
import socket
import threading

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from batchyard import StoreError
from batchyard.http import create_app
from batchyard.http.auth import ApiTokens
from tests.servers import free_port, wait_until

JSON = {"content-type": "application/json"}
GOOD = {"items": [1], "max_batch_size": 5, "on_flush": "collect"}


@pytest.fixture
def yard(yard):
    """The shared yard (tests/conftest.py), with this module's handlers."""
    yard.handler("collect")(lambda items, ctx: None)
    return yard


@pytest.fixture
def client(yard):
    with TestClient(
        create_app(yard, worker=False, tokens=ApiTokens()), raise_server_exceptions=False
    ) as client:
        yield client


def post_items(client, body, headers=JSON, base="ev"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(f"/batches/{base}/items", content=content, headers=headers)


def nested(depth):
    """An add_items body whose items nest to `depth` levels in all (the body is level 1)."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return f'{{"items": [{inner}], "max_batch_size": 5, "on_flush": "collect"}}'.encode()


# size


@pytest.mark.parametrize("headers", [JSON, {"content-type": "text/plain"}])
def test_a_declared_length_over_the_limit_is_refused_unread(yard, headers):
    with TestClient(
        create_app(yard, worker=False, max_body_bytes=100, tokens=ApiTokens())
    ) as client:
        response = post_items(client, b"x" * 101, headers)
        assert response.status_code == 413
        assert "limit of 100 bytes" in response.json()["detail"]
        assert post_items(client, GOOD).status_code == 200


@pytest.fixture
def live_server(yard):
    """The app on a real uvicorn in a thread, with a 1,000-byte body limit."""
    port = free_port()
    app = create_app(yard, worker=False, max_body_bytes=1000, tokens=ApiTokens())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn")
    yield ("127.0.0.1", port)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_chunked_body_is_cut_at_the_limit_before_it_ends(live_server, content_type):
    """No Content-Length: the body is counted as it comes, and the answer arrives while the
    client has not even finished sending."""
    with socket.create_connection(live_server, timeout=10) as sock:
        sock.sendall(
            f"POST /batches/ev/items HTTP/1.1\r\nHost: test\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        for _ in range(3):  # 1,800 bytes, and never the closing 0-length chunk
            sock.sendall(b"258\r\n" + b"[" * 600 + b"\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_a_streamed_body_over_the_limit_is_refused_by_httpx(live_server):
    host, port = live_server

    def body():
        yield b'{"items": ["'
        yield b"x" * 2000
        yield b'"], "max_batch_size": 5, "on_flush": "collect"}'

    response = httpx.post(f"http://{host}:{port}/batches/ev/items", content=body(), headers=JSON)
    assert response.status_code == 413
    small = httpx.post(
        f"http://{host}:{port}/batches/ev/items",
        headers=JSON,
        content=iter([json.dumps(GOOD).encode()]),
    )
    assert small.status_code == 200, small.text


# content type


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
        None,
    ],
)
def test_json_routes_refuse_other_content_types(client, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    response = post_items(client, GOOD, headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    assert client.get("/batches/ev").json()["data"] == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.batch+json",
        "Application/JSON",
    ],
)
def test_json_and_plus_json_are_accepted(client, content_type):
    assert post_items(client, GOOD, {"content-type": content_type}).status_code == 200


def test_routes_without_a_body_do_not_care_about_content_type(client):
    post_items(client, GOOD)
    response = client.post(
        "/batches/ev/flush", content=b"whatever", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 200


# nesting depth


def test_json_nested_past_the_limit_is_422_naming_it(client):
    assert post_items(client, nested(32)).status_code == 200
    response = post_items(client, nested(33))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"] and error["ctx"] == {"max_depth": 32}
    assert "limit of 32 levels" in error["msg"]


def test_a_deep_bomb_is_refused_before_parsing(client):
    response = post_items(client, b'{"items": ' + b"[" * 500_000 + b"]" * 500_000 + b"}")
    assert response.status_code == 422 and "32 levels" in response.text


def test_the_depth_limit_is_configurable_and_brackets_in_strings_do_not_count(yard):
    with TestClient(create_app(yard, worker=False, max_json_depth=3, tokens=ApiTokens())) as client:
        body = {"items": [["[[[[{{{{", '\\"[[[[']], "max_batch_size": 5, "on_flush": "collect"}
        assert post_items(client, body).status_code == 200
        assert post_items(client, nested(4)).status_code == 422


# field paths


def test_invalid_fields_answer_422_with_their_path(client):
    response = post_items(
        client, {"items": "x", "max_batch_size": "y", "on_flush": 3, "max_attempts": 0}
    )
    assert response.status_code == 422
    locations = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert {
        ("body", "items"),
        ("body", "max_batch_size"),
        ("body", "on_flush"),
        ("body", "max_attempts"),
    } <= locations
    response = client.get("/batches/ev/history?limit=0")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    ("body", "path", "loc"),
    [
        ({**GOOD, "on_flush": "nobody"}, "ev", ["body", "on_flush"]),
        ({**GOOD, "items": [1, {"x": 1e400}]}, "ev", ["body", "items", 1, "x"]),
        ({**GOOD, "flush_interval": 1e300}, "ev", ["body", "flush_interval"]),
        (GOOD, "::3", ["path", "batch_id"]),
    ],
)
def test_domain_errors_name_their_field_like_validation_errors_do(client, body, path, loc):
    content = json.dumps(body).replace("Infinity", "1e400").encode()
    response = post_items(client, content, base=path)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] in ("InvalidInput", "HandlerNotFound")
    assert answer["field"] == loc[1] and answer.get("index") == (loc[2:] or [None])[0]
    [problem] = answer["detail"]
    assert problem["loc"] == loc and problem["type"] in ("invalid_input", "handler_not_found")
    assert loc[1] in problem["msg"]


# never a 5xx


BAD_BODIES = [
    b"",
    b"{",
    b"{not json",
    b"[]",
    b"null",
    b'"items"',
    b"1",
    b"\xff\xfe\xfd",
    b'{"items": ["\xff"], "max_batch_size": 5, "on_flush": "collect"}',
    b'{"items": ["nul \\u0000 byte"], "max_batch_size": 5, "on_flush": "collect\\u0000"}',
    b'{"items": [1], "max_batch_size": 5, "on_flush": "lone \\ud800 surrogate"}',
    b'{"items": [' + b"9" * 5000 + b'], "max_batch_size": 5, "on_flush": "collect"}',
    b'{"items": [1], "max_batch_size": ' + b"9" * 40 + b', "on_flush": "collect"}',
    b'{"items": [1], "max_batch_size": 1e999, "on_flush": "collect"}',
    b'{"items": [1], "max_batch_size": 5.5, "on_flush": "collect"}',
    b'{"items": [1], "max_batch_size": true, "on_flush": "collect"}',
    b'{"items": [1], "max_batch_size": "5", "on_flush": "collect", "flush_interval": true}',
    b'{"items": [1], "max_batch_size": 5, "on_flush": "collect", "flush_interval": -1}',
    b'{"items": [1], "max_batch_size": 5, "on_flush": "collect", "flush_interval": 1e308}',
    b'{"items": [1], "max_batch_size": 5, "on_flush": "collect", "max_attempts": 1e10}',
    b'{"items": [NaN, Infinity], "max_batch_size": 5, "on_flush": "collect"}',
    b'{"items": [1], "max_batch_size": NaN, "on_flush": "collect", "max_attempts": -Infinity}',
    b'{"items": [1], "max_batch_size": 5, "on_flush": ""}',
    b'{"items": [1], "max_batch_size": 5, "on_flush": ["collect"]}',
    b'{"items": ' + b"[1]," * 3 + b"}",
    b'{"items": [1], "items": "twice", "max_batch_size": 5, "on_flush": "collect"}',
    b'{"items": [' + b"0," * 10_000 + b'0], "max_batch_size": 5, "on_flush": "collect"}',
    b"\x00" * 64,
]

BAD_PATHS = [
    ("GET", "/batches/%00"),
    ("GET", "/batches/a%00b/history"),
    ("POST", "/batches/a%00b/flush"),
    ("DELETE", "/batches/a%00b::0"),
    ("POST", "/batches/a%00::0/redrive"),
    ("GET", "/batches/a::%C2%B2"),
    ("DELETE", "/batches/a::%C2%B2"),
    ("POST", "/batches/a::%C2%B2/redrive"),
    ("DELETE", "/batches/a::99999999999999999999999"),
    ("POST", "/batches/a::99999999999999999999999/flush"),
    ("GET", "/batches/%20"),
    ("DELETE", "/batches/ev"),
    ("GET", "/batches/ev/history?limit=99999999999999999999"),
    ("GET", "/batches/ev/history?limit=-1"),
    ("GET", "/batches/ev/history?limit=x"),
]


def assert_client_error(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    for leak in ("Traceback", "SELECT", "INSERT", "psycopg", "sqlite3", 'File "'):
        assert leak not in response.text


def test_bad_bodies_never_get_a_5xx(client):
    for body in BAD_BODIES:
        assert_client_error(post_items(client, body))
    assert client.get("/batches/ev").json()["data"] == []


def test_bad_ids_and_queries_never_get_a_5xx(client):
    for method, path in BAD_PATHS:
        assert_client_error(client.request(method, path))
    # bytes that are not UTF-8 arrive as U+FFFD: an odd id, not an error
    assert client.get("/batches/a%ED%A0%80b").status_code == 200


# unexpected failures


def test_an_unexpected_error_is_a_generic_500_and_logged(yard, caplog):
    app = create_app(yard, worker=False, tokens=ApiTokens())

    def fail_in_store() -> None:
        raise StoreError("PostgreSQL: syntax error at SELECT secret FROM batchyard_batches")

    def fail_in_code() -> None:
        raise RuntimeError("a bug with a /private/path in it")

    app.add_api_route("/fail-in-store", fail_in_store)
    app.add_api_route("/fail-in-code", fail_in_code)
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, logger="batchyard.http"),
    ):
        for path, secret in [("/fail-in-store", "SELECT"), ("/fail-in-code", "/private")]:
            response = client.get(path)
            assert response.status_code == 500
            assert response.json() == {
                "detail": "internal error; the server log has the details",
                "error": "InternalError",
            }
            assert secret not in response.text
    logged = "\n".join(record.getMessage() + str(record.exc_info) for record in caplog.records)
    assert "GET /fail-in-store failed" in logged and "SELECT secret" in logged
    assert "GET /fail-in-code failed" in logged and "private/path" in logged
