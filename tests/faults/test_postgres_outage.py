"""PostgreSQL goes away and comes back: `batchyard worker` and `batchyard serve` ride through.

The processes reach the real server through a proxy that cuts every connection and refuses
new ones for 3 s (what a restart or a failover looks like from a client), and their own
backends are killed with pg_terminate_backend. Batches are added before, during (refused
with the unavailable error, or 503) and after; afterwards every accepted batch is flushed,
no process exited, and the log says one thing when the outage starts and one when it ends.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from batchyard import StoreUnavailable, Yard
from tests.conftest import PG_ADMIN_URL
from tests.faults.proxy import FaultyProxy
from tests.processes import app_env, recorded
from tests.servers import free_port, wait_for_http, wait_until

HERE = Path(__file__).parent
OUTAGE_SECONDS = 3.0
# the worker's backoff cap (10 s), a poll, and the pool's next reconnect attempt
RECOVERY_SECONDS = 30.0
APPLICATION = "batchyard-under-test"  # how the connections through the proxy are told apart


def start(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "batchyard", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def env(proxy: FaultyProxy, tmp_path: Path) -> dict[str, str]:
    return app_env(f"{proxy.url}?application_name={APPLICATION}", tmp_path / "calls.jsonl", HERE)


def flushed(env: dict[str, str]) -> set[str]:
    return {call["batch_id"] for call in recorded(env["RECORD_PATH"])}


def terminate_backends(database_url: str) -> int:
    """Kill the server processes of the database's connections that came through the proxy
    (those of the process under test): what an administrator does."""
    database = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s",
            (database, APPLICATION),
        ).fetchall()
    return len(rows)


def add(yard: Yard, base: str) -> None:
    yard.add_items(base, [{"base": base}], max_batch_size=1, on_flush="record")


def add_when_back(yard: Yard, base: str) -> None:
    """Add as a client does after an outage: again, until the store answers."""

    def accepted() -> bool:
        try:
            add(yard, base)
        except StoreUnavailable:
            return False
        return True

    wait_until(accepted, RECOVERY_SECONDS, "the store to accept adds again")


def check_log(log: Path) -> str:
    text = log.read_text()
    assert "Traceback" not in text, text
    # one warning when the proxy's outage started and a line when it ended (the killed
    # backends may make one short outage of their own: each pooled connection's death is
    # found by its next use, told as "failed again" lines) - never a line per failed poll
    starts = text.count("the store is unavailable")
    ends = text.count("working again after")
    relapses = text.count("failed again just after it came back")
    assert 1 <= starts <= 2 and ends == starts + relapses and relapses <= 3, text
    return text


def test_a_worker_process_rides_through_a_postgres_outage(proxy, pg_database, env, tmp_path):
    log = tmp_path / "worker.log"
    direct = Yard(pg_database)  # adds that do not go through the proxy
    direct.handler("record")(lambda items, ctx: None)
    through = Yard(proxy.url)  # adds that meet the outage
    through.handler("record")(lambda items, ctx: None)
    worker = start("worker", "--app", "app:yard", "--concurrency", "2", env=env, log=log)
    try:
        add(direct, "before")
        wait_until(lambda: "before::0" in flushed(env), 60, "the first flush")

        assert terminate_backends(pg_database) >= 1
        add(direct, "after-terminate")
        wait_until(
            lambda: "after-terminate::0" in flushed(env),
            RECOVERY_SECONDS,
            "a flush after the backends were killed",
        )

        proxy.outage()
        add(direct, "during")  # accepted by the server; the worker cannot see it yet
        with pytest.raises(StoreUnavailable, match="PostgreSQL at"):
            add(through, "refused")
        time.sleep(OUTAGE_SECONDS)
        assert worker.poll() is None, log.read_text()
        proxy.heal()
        add_when_back(through, "after")

        wait_until(
            lambda: {"during::0", "after::0"} <= flushed(env),
            RECOVERY_SECONDS,
            "the flushes after the outage",
        )
        assert "refused::0" not in flushed(env)
        assert worker.poll() is None, log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        direct.close()
        through.close()
    assert worker.returncode == 0, log.read_text()
    check_log(log)


def test_serve_rides_through_a_postgres_outage_and_says_so(proxy, pg_database, env, tmp_path):
    log = tmp_path / "serve.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start("serve", "--app", "app:yard", "--port", str(port), env=env, log=log)

    def post(name: str) -> httpx.Response:
        return httpx.post(
            f"{base}/batches/{name}/items",
            timeout=30,
            json={"items": [1], "max_batch_size": 1, "on_flush": "record"},
        )

    def readyz() -> int:
        return httpx.get(f"{base}/readyz", timeout=30).status_code

    try:
        wait_for_http(f"{base}/health", 60)
        wait_until(lambda: readyz() == 200, 60, "readiness")
        assert post("before").status_code == 200
        wait_until(lambda: "before::0" in flushed(env), 60, "the first flush")

        proxy.outage()
        during = post("during")
        assert during.status_code == 503, during.text
        assert "Retry-After" in during.headers
        wait_until(lambda: readyz() == 503, RECOVERY_SECONDS, "/readyz to say 503")
        body = httpx.get(f"{base}/readyz", timeout=30).json()
        assert any(not check["ok"] and check["name"] == "store" for check in body["checks"])
        assert httpx.get(f"{base}/health", timeout=30).status_code == 200  # alive, not ready
        time.sleep(OUTAGE_SECONDS)
        proxy.heal()

        wait_until(lambda: readyz() == 200, RECOVERY_SECONDS, "/readyz to say 200 again")
        assert post("after").status_code == 200
        wait_until(lambda: "after::0" in flushed(env), RECOVERY_SECONDS, "the flush after")
        assert "during::0" not in flushed(env)
        assert server.poll() is None, log.read_text()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    check_log(log)
