"""When a bulk job ends: its `on_complete` handler and its webhook, each a durable task.

The transaction that ends a job (its last chunk's commit, its last chunk dying, a cancel, or a
job with no valid item) queues a task for each: `on_complete(job)` is called with the final
`BulkJob`, and the webhook POSTs that record as the HTTP API shows it (camelCase JSON) to the
job's `callback_url`. Each is retried with backoff, then goes to the dead letters; a job
redriven and ended again is told again. Every delivery attempt is kept and shown with the job.

A webhook is signed so that its receiver can trust it and refuse replays: ::

    X-Batchyard-Timestamp: <unix seconds>
    X-Batchyard-Signature: sha256=<hex of HMAC-SHA256(secret, b"<timestamp>." + body)>

The timestamp is signed with the body (a receiver refuses old ones); the secret is the
deployment's (``BATCHYARD_WEBHOOK_SECRET``, else one made once per store: `Yard.webhook_secret`).
Only http(s) URLs are taken, and - against server-side request forgery - not ones whose host
is or resolves to a loopback, private, link-local or otherwise non-public address, unless the
deployment allows it (``BATCHYARD_WEBHOOK_ALLOW_PRIVATE=1``). The address is checked when the
job is created and again before each delivery, which then connects to the address it checked
(no second lookup for a rebinding DNS server to answer differently); redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from batchyard.bulk.records import BulkJob, BulkJobStatus
from batchyard.errors import InvalidInput
from batchyard.failures import error_text
from batchyard.store import Tx
from batchyard.tasks import Task, TaskKind

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

ON_COMPLETE_TASK = "job.on_complete"
WEBHOOK_TASK = "job.webhook"
ATTEMPTS = 8  # then the dead letters, where an operator sees and redrives it
WEBHOOK_TIMEOUT_SECONDS = 10.0
SIGNATURE_HEADER = "X-Batchyard-Signature"
TIMESTAMP_HEADER = "X-Batchyard-Timestamp"
MAX_URL_LENGTH = 2048
ENDED = frozenset({BulkJobStatus.COMPLETED, BulkJobStatus.FAILED, BulkJobStatus.CANCELLED})


def private_allowed() -> bool:
    """Whether this deployment lets webhooks reach private and loopback addresses."""
    return os.environ.get("BATCHYARD_WEBHOOK_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes")


def check_callback_url(url: Any) -> str:
    """`url` if a webhook may be sent there, else `InvalidInput` saying why."""
    _pinned(url)
    return str(url)


def _pinned(url: Any) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """Where to send a webhook for `url` - the URL with its host resolved once and checked,
    once per address found, in the resolver's order; the Host header and the TLS server name
    - else `InvalidInput` saying why. The request goes to an address that was checked: a name
    that resolves to a public address for the check and to a private one for the connection
    (DNS rebinding) reaches nothing private."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(
            f"callback_url must be an http(s) URL of at most {MAX_URL_LENGTH} characters",
            field="callback_url",
        )
    parts = urlsplit(url)
    try:
        hostname, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        hostname = port = None
    if parts.scheme not in ("http", "https") or not hostname:
        raise InvalidInput("callback_url must be an http(s) URL with a host", field="callback_url")
    if parts.username or parts.password:
        raise InvalidInput("callback_url must not carry credentials", field="callback_url")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(hostname)]
    except ValueError:  # a name: what it resolves to now
        try:
            found = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise InvalidInput(
                f"callback_url: the host {hostname!r} does not resolve ({exc})",
                field="callback_url",
            ) from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not private_allowed():
        for address in addresses:
            if not address.is_global:
                raise InvalidInput(
                    f"callback_url: {hostname} is a non-public address ({address}); "
                    "set BATCHYARD_WEBHOOK_ALLOW_PRIVATE=1 to allow private addresses",
                    field="callback_url",
                )
    pinned = [
        parts._replace(netloc=f"[{a}]:{port}" if a.version == 6 else f"{a}:{port}").geturl()
        for a in dict.fromkeys(addresses)
    ]
    extensions = {"sni_hostname": hostname} if parts.scheme == "https" else {}
    return pinned, {"Host": parts.netloc}, extensions


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of the signature header for `body` sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _post(
    urls: list[str], body: bytes, headers: dict[str, str], extensions: dict[str, Any]
) -> httpx.Response:
    """POST to the first of `urls` (one host's addresses) that takes a connection, as a
    connection to the host's name would try them."""
    with httpx.Client(timeout=WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client:
        for url in urls[:-1]:
            try:
                return client.post(url, content=body, headers=headers, extensions=extensions)
            except httpx.ConnectError:
                continue
        return client.post(urls[-1], content=body, headers=headers, extensions=extensions)


class WebhookRefused(Exception):
    """The receiver did not take the webhook (an error status, or no answer)."""


class Completions:
    """Tells that a bulk job ended: declares the two task kinds and queues them."""

    def __init__(
        self, runtime: Runtime, read_job: Callable[[str], BulkJob], secret: Callable[[], bytes]
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.tasks = runtime.tasks
        self.read_job = read_job
        self.secret = secret
        runtime.kinds.add(
            TaskKind(ON_COMPLETE_TASK, self.run_on_complete),
            TaskKind(WEBHOOK_TASK, self.run_webhook),
        )

    def job_ended(self, tx: Tx, job_id: str) -> None:
        """In the transaction that ended the job: queue what tells of it."""
        row = tx.one(
            "SELECT on_complete, callback_url FROM batchyard_jobs WHERE id = :id", {"id": job_id}
        )
        if row is None:
            return
        if row["on_complete"] is not None:
            self.tasks.enqueue(
                tx,
                ON_COMPLETE_TASK,
                {"job_id": job_id},
                key=f"job-complete:{job_id}",
                max_attempts=ATTEMPTS,
            )
        if row["callback_url"] is not None:
            self.tasks.enqueue(
                tx,
                WEBHOOK_TASK,
                {"job_id": job_id},
                key=f"job-webhook:{job_id}",
                max_attempts=ATTEMPTS,
            )

    def run_on_complete(self, task: Task) -> None:
        job = self.read_job(task.payload["job_id"])
        with self.store.transaction(write=False) as tx:
            name = tx.one("SELECT on_complete FROM batchyard_jobs WHERE id = :id", {"id": job.id})[
                "on_complete"
            ]
        self.runtime.handlers.call(name, job)
        with self.store.transaction(self.runtime.now()) as tx:
            self.tasks.complete(tx, task)

    def run_webhook(self, task: Task) -> None:
        job = self.read_job(task.payload["job_id"])
        with self.store.transaction(write=False) as tx:
            url = tx.one("SELECT callback_url FROM batchyard_jobs WHERE id = :id", {"id": job.id})[
                "callback_url"
            ]
        body = job.model_dump_json(by_alias=True).encode()
        timestamp = str(int(time.time()))
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            # checked again, and sent to the address checked: a name's answer may change
            pinned, host, extensions = _pinned(url)
            headers = {
                **host,
                "Content-Type": "application/json",
                "User-Agent": "batchyard-webhook",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(self.secret(), timestamp, body),
                "X-Batchyard-Job": job.id,
            }
            response = _post(pinned, body, headers, extensions)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"the receiver answered {status}"
        except InvalidInput as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = error_text(exc)
        with self.store.transaction(self.runtime.now()) as tx:
            tx.execute(
                "INSERT INTO batchyard_job_deliveries (job_id, attempt, status_code, error, "
                "duration, delivered_at) VALUES (:job_id, :attempt, :status, :error, "
                ":duration, {now})",
                {
                    "job_id": job.id,
                    "attempt": task.attempts,
                    "status": status,
                    "error": error,
                    "duration": time.perf_counter() - started,
                },
            )
            if error is None:
                self.tasks.complete(tx, task)
        if error is not None:
            raise WebhookRefused(f"webhook of job {job.id} to {url}: {error}")
