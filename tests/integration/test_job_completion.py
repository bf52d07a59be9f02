"""A bulk job tells when it ends: its on_complete handler and its signed webhook, on both
stores, with a real HTTP receiver on this machine."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from batchyard import HandlerNotFound, InvalidInput, RetryPolicy
from batchyard.bulk import completion
from batchyard.bulk.completion import SIGNATURE_HEADER, TIMESTAMP_HEADER

ITEMS = [{"n": n} for n in range(150)]


@pytest.fixture
def jobs_yard(make_yard, clock):
    yard = make_yard(clock=clock, retry=RetryPolicy(base_delay=1.0, max_delay=1.0, jitter=0.0))
    yard.transform("double")(lambda item: item["n"] * 2)
    return yard


@pytest.fixture
def receiver():
    """A webhook receiver that refuses its first `refuse[0]` deliveries with a 500."""

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            server.posts.append((dict(self.headers), body))
            status = 500 if len(server.posts) <= server.refuse else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.posts = []
    server.refuse = 0
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/jobs"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def drain(yard, clock, rounds=6):
    for _ in range(rounds):
        yard.run_worker(wait=False)
        clock.advance(2)


def test_on_complete_is_called_once_with_the_final_job(jobs_yard, clock):
    told = []
    fails = [1]

    @jobs_yard.handler("job-done")
    def job_done(job):
        if fails[0]:
            fails[0] -= 1
            raise ConnectionError("the notifier is down")
        told.append(job)

    job_id = jobs_yard.create_batch_job(
        "transform-data", ITEMS, options={"transform": "double"}, on_complete="job-done"
    )
    drain(jobs_yard, clock)
    assert [(job.id, job.status, job.processed) for job in told] == [(job_id, "completed", 150)]


def test_jobs_that_end_without_running_tell_too(jobs_yard, clock):
    told = []
    jobs_yard.handler("job-done")(lambda job: told.append((job.id, job.status)))
    refused = jobs_yard.create_batch_job(
        "transform-data", [float("nan")], options={"transform": "double"}, on_complete="job-done"
    )
    cancelled = jobs_yard.create_batch_job(
        "transform-data", ITEMS, options={"transform": "double"}, on_complete="job-done"
    )
    jobs_yard.cancel_batch_job(cancelled)
    drain(jobs_yard, clock)
    assert sorted(told) == sorted([(refused, "failed"), (cancelled, "cancelled")])


def test_an_unknown_on_complete_handler_is_refused(jobs_yard):
    with pytest.raises(HandlerNotFound, match="on_complete: no handler is registered as 'nope'"):
        jobs_yard.create_batch_job(
            "transform-data", ITEMS, options={"transform": "double"}, on_complete="nope"
        )


def test_a_webhook_that_fails_twice_is_accepted_once_and_signed(
    jobs_yard, clock, receiver, monkeypatch
):
    monkeypatch.setenv("BATCHYARD_WEBHOOK_ALLOW_PRIVATE", "1")
    receiver.refuse = 2
    job_id = jobs_yard.create_batch_job(
        "transform-data", ITEMS, options={"transform": "double"}, callback_url=receiver.url
    )
    drain(jobs_yard, clock)
    assert len(receiver.posts) == 3  # refused twice, then taken - and never again
    headers, body = receiver.posts[-1]
    expected = hmac.new(
        jobs_yard.webhook_secret(),
        headers[TIMESTAMP_HEADER].encode() + b"." + body,
        hashlib.sha256,
    ).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], f"sha256={expected}")
    sent = json.loads(body)
    assert sent["id"] == job_id and sent["status"] == "completed" and sent["processed"] == 150
    job = jobs_yard.get_batch_job(job_id)
    assert [(d.attempt, d.status_code) for d in job.deliveries] == [(1, 500), (2, 500), (3, 204)]
    assert job.deliveries[0].error == "the receiver answered 500"
    assert job.deliveries[-1].error is None and job.callback_url == receiver.url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:9/hook", "non-public address"),
        ("http://10.1.2.3/hook", "non-public address"),
        ("http://[::1]/hook", "non-public address"),
        ("http://169.254.169.254/latest/meta-data", "non-public address"),
        ("ftp://example.com/hook", "http(s) URL"),
        ("http://user:secret@93.184.216.34/hook", "credentials"),
        ("not a url", "http(s) URL"),
    ],
)
def test_webhooks_to_private_or_odd_urls_are_refused(jobs_yard, url, problem):
    with pytest.raises(InvalidInput, match=re.escape(problem)) as raised:
        jobs_yard.create_batch_job(
            "transform-data", ITEMS, options={"transform": "double"}, callback_url=url
        )
    assert raised.value.fields["field"] == "callback_url"
    assert jobs_yard.list_batch_jobs() == []


def test_a_public_address_is_taken(jobs_yard):
    job_id = jobs_yard.create_batch_job(
        "transform-data",
        ITEMS,
        options={"transform": "double"},
        callback_url="https://93.184.216.34/hooks",
    )
    assert jobs_yard.get_batch_job(job_id).callback_url == "https://93.184.216.34/hooks"


def test_a_webhook_keeps_its_host_name_when_sent_to_the_address_checked(
    jobs_yard, clock, receiver, monkeypatch
):
    monkeypatch.setenv("BATCHYARD_WEBHOOK_ALLOW_PRIVATE", "1")
    port = receiver.server_address[1]
    job_id = jobs_yard.create_batch_job(
        "transform-data",
        ITEMS,
        options={"transform": "double"},
        callback_url=f"http://localhost:{port}/hooks/jobs",
    )
    drain(jobs_yard, clock)
    [(headers, _)] = receiver.posts  # localhost's other address (::1) refused: tried next
    assert headers["Host"] == f"localhost:{port}"
    assert [d.status_code for d in jobs_yard.get_batch_job(job_id).deliveries] == [204]


def test_a_name_that_rebinds_to_a_private_address_reaches_nothing_private(
    jobs_yard, clock, receiver, monkeypatch
):
    """DNS rebinding: a name that answers a public address while it is checked and this
    machine's address when it is connected to. No DNS server here can be told to do that,
    so the resolver's answers are scripted - the third lookup of the name (a connection
    that looked the name up again after its check) would reach the receiver."""
    resolve = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example":
            return resolve(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) >= 3 else "93.184.216.34"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(completion, "WEBHOOK_TIMEOUT_SECONDS", 1.0)
    port = receiver.server_address[1]
    job_id = jobs_yard.create_batch_job(
        "transform-data",
        ITEMS,
        options={"transform": "double"},
        callback_url=f"http://rebind.example:{port}/hooks/jobs",
    )
    jobs_yard.run_worker(wait=False)
    assert receiver.posts == []
    assert len(lookups) == 2  # the check at creation, the check before the delivery
    [delivery] = jobs_yard.get_batch_job(job_id).deliveries
    assert delivery.status_code != 204
