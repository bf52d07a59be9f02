"""The dashboard refuses actions without auth and without the cross-site token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from batchyard.http import create_app
from tests.dashboard.forms import csrf

TOKEN = "tok-5f2c9e"


@pytest.fixture
def yard(yard):
    """The shared yard (tests/conftest.py), with a handler and one open batch."""
    yard.handler("ok")(lambda items, ctx: None)
    yard.add_items("events", [1, 2], max_batch_size=10, on_flush="ok")
    return yard


def client_for(yard, tokens=None):
    return TestClient(create_app(yard, worker=False, tokens=tokens), base_url="http://dash.test")


def flushed(yard):
    return yard.get_batch_status("events")[0].status == "flushing"


def test_actions_need_the_csrf_token(yard):
    client = client_for(yard)
    token = csrf(client.get("/").text)
    assert client.post("/ui/batches/events/flush").status_code == 403
    wrong = client.post("/ui/batches/events/flush", data={"csrf_token": "0" * 64})
    assert wrong.status_code == 403
    # a token from another browser (another nonce cookie) is no good either
    other = client_for(yard)
    stolen = csrf(other.get("/").text)
    assert client.post("/ui/batches/events/flush", data={"csrf_token": stolen}).status_code == 403
    assert not flushed(yard)
    ok = client.post("/ui/batches/events/flush", data={"csrf_token": token}, follow_redirects=False)
    assert ok.status_code == 303 and flushed(yard)


def test_a_form_from_one_server_process_is_accepted_by_another(yard, make_yard):
    # behind a load balancer the page and the post may meet different processes (here: two
    # apps, each with its own yard and connections on the same store)
    one, another = client_for(yard), client_for(make_yard())
    token = csrf(one.get("/").text)
    another.cookies = one.cookies  # the same browser
    ok = another.post(
        "/ui/batches/events/flush", data={"csrf_token": token}, follow_redirects=False
    )
    assert ok.status_code == 303 and flushed(yard)


def test_actions_from_another_origin_are_refused(yard):
    client = client_for(yard)
    token = csrf(client.get("/").text)
    for header in (
        {"Origin": "http://evil.test"},
        {"Origin": "null"},
        {"Referer": "http://evil.test/page"},
    ):
        response = client.post(
            "/ui/batches/events/flush", data={"csrf_token": token}, headers=header
        )
        assert response.status_code == 403 and "cross-site" in response.text
    assert not flushed(yard)
    same = client.post(
        "/ui/batches/events/flush",
        data={"csrf_token": token},
        headers={"Origin": "http://dash.test"},
        follow_redirects=False,
    )
    assert same.status_code == 303 and flushed(yard)


def test_the_nonce_cookie_is_httponly_and_strict(yard):
    response = client_for(yard).get("/")
    cookie = response.headers["set-cookie"]
    assert "batchyard_csrf=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()


def test_repeated_failed_logins_make_the_client_wait(yard):
    client = client_for(yard, tokens=[TOKEN])
    access = client.app.state.access
    now = [1000.0]
    access.clock = lambda: now[0]
    token = csrf(client.get("/ui/login").text)

    def login(candidate):
        return client.post(
            "/ui/login", data={"csrf_token": token, "token": candidate}, follow_redirects=False
        )

    for _ in range(10):
        assert login("guess").status_code == 401
        now[0] += 1
    refused = login(TOKEN)  # even the right token: the address must wait first
    assert refused.status_code == 429 and "Too many failed logins" in refused.text
    assert refused.headers["Retry-After"] == "50"  # the first failure leaves the window
    now[0] += 50
    assert login(TOKEN).status_code == 303


def test_with_tokens_pages_send_browsers_to_the_login(yard):
    client = client_for(yard, tokens=[TOKEN])
    response = client.get("/ui/batches", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/batches"
    polled = client.get("/ui/batches", headers={"HX-Request": "true"})
    assert polled.status_code == 401 and polled.headers["HX-Redirect"].startswith("/ui/login")


def test_with_tokens_actions_are_refused_without_auth(yard):
    client = client_for(yard, tokens=[TOKEN])
    token = csrf(client.get("/ui/login").text)
    response = client.post("/ui/batches/events/flush", data={"csrf_token": token})
    assert response.status_code == 401 and not flushed(yard)


def test_login_sets_a_session_that_is_not_the_token(yard):
    client = client_for(yard, tokens=["other-token", TOKEN])
    token = csrf(client.get("/ui/login").text)
    bad = client.post("/ui/login", data={"csrf_token": token, "token": "guess"})
    assert bad.status_code == 401 and "not a valid API token" in bad.text
    assert "batchyard_session" not in client.cookies
    no_csrf = client.post("/ui/login", data={"token": TOKEN})
    assert no_csrf.status_code == 403

    good = client.post(
        "/ui/login",
        data={"csrf_token": token, "token": TOKEN, "next": "/ui/batches"},
        follow_redirects=False,
    )
    assert good.status_code == 303 and good.headers["location"] == "/ui/batches"
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and TOKEN not in cookie
    page = client.get("/ui/batches")
    assert page.status_code == 200 and 'data-base="events"' in page.text
    ok = client.post(
        "/ui/batches/events/flush", data={"csrf_token": csrf(page.text)}, follow_redirects=False
    )
    assert ok.status_code == 303 and flushed(yard)

    # logging out ends it
    client.post("/ui/logout", data={"csrf_token": csrf(page.text)})
    assert client.get("/ui/batches", follow_redirects=False).status_code == 303


def test_a_session_from_another_token_or_forged_is_refused(yard):
    login = client_for(yard, tokens=["old-token"])
    token = csrf(login.get("/ui/login").text)
    login.post("/ui/login", data={"csrf_token": token, "token": "old-token"})
    session = login.cookies["batchyard_session"]
    rotated = client_for(yard, tokens=[TOKEN])
    rotated.cookies.set("batchyard_session", session)
    assert rotated.get("/", follow_redirects=False).status_code == 303
    expires = session.split(".")[0]
    rotated.cookies.set("batchyard_session", f"{expires}.{'0' * 64}")
    assert rotated.get("/", follow_redirects=False).status_code == 303


def test_a_bearer_token_opens_the_dashboard_too(yard):
    client = client_for(yard, tokens=[TOKEN])
    response = client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


def test_login_redirects_only_to_this_site(yard):
    client = client_for(yard, tokens=[TOKEN])
    token = csrf(client.get("/ui/login").text)
    response = client.post(
        "/ui/login",
        data={"csrf_token": token, "token": TOKEN, "next": "//evil.test/x"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_a_signed_in_browser_reads_the_api_docs_but_calls_nothing_without_a_token(yard):
    client = client_for(yard, tokens=[TOKEN])
    for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css"):
        assert client.get(path).status_code == 401  # a stranger: nothing
    token = csrf(client.get("/ui/login").text)
    client.post("/ui/login", data={"csrf_token": token, "token": TOKEN})
    assert "batchyard_session" in client.cookies
    assert client.get("/docs").status_code == 200
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/batches" in schema["paths"] and schema["security"] == [{"bearer": []}]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # the session reads the docs only: the API itself still wants the bearer token
    assert client.get("/batches").status_code == 401
    assert client.post("/batches/events/flush").status_code == 401
    client.cookies.clear()
    client.cookies.set("batchyard_session", "99999999999.forged")
    assert client.get("/docs").status_code == 401
