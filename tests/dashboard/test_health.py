"""`batchyard healthcheck` in a real process, and /readyz, on both stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from fastapi.testclient import TestClient

from batchyard.http import create_app
from batchyard.store import open_store


def healthcheck(store_url, *args):
    done = subprocess.run(
        [sys.executable, "-m", "batchyard", "healthcheck", "--store", store_url, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout.splitlines()


def fall_behind(store_url):
    """Forget the latest migration, as if this store were older than this batchyard."""
    store = open_store(store_url)
    with store.transaction() as tx:
        tx.execute("DELETE FROM batchyard_schema WHERE version = :v", {"v": store.latest_version()})
    store.close()


def test_healthcheck_reports_each_check_and_exits_by_them(store_url):
    open_store(store_url).close()
    code, lines = healthcheck(store_url)
    assert code == 1
    assert lines[0].startswith("ok") and "store" in lines[0]
    assert lines[1].startswith("ok") and "schema" in lines[1]
    assert lines[2].startswith("FAIL") and "no worker is registered" in lines[2]
    assert healthcheck(store_url, "--no-workers") == (0, lines[:2])

    fall_behind(store_url)
    code, lines = healthcheck(store_url, "--no-workers")
    assert code == 1 and lines[1].startswith("FAIL") and "db upgrade" in lines[1]


def test_healthcheck_sees_a_live_worker_and_its_end(store_url, tmp_path):
    open_store(store_url).close()
    env = {**os.environ, "BATCHYARD_STORE": store_url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "batchyard", "worker", "--lease", "3"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while (result := healthcheck(store_url, "--max-heartbeat-age", "10"))[0] != 0:
            assert time.monotonic() < deadline, result
            time.sleep(0.2)
        assert result[1][2].startswith("ok") and "1 alive" in result[1][2]
        # a bound shorter than the time since the last beat fails
        code, lines = healthcheck(store_url, "--max-heartbeat-age", "0.001")
        assert code == 1 and "no heartbeat within 0.001 s" in lines[2]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    code, lines = healthcheck(store_url)
    assert code == 1 and "no worker is registered" in lines[2]


def test_healthcheck_of_an_unreachable_store_fails():
    code, lines = healthcheck("sqlite:////nonexistent-dir/x/yard.db", "--no-workers")
    assert code == 1 and lines[0].startswith("FAIL") and "unreachable" in lines[0]


def test_readyz_follows_the_store(make_yard, store_url):
    yard = make_yard()
    client = TestClient(create_app(yard, worker=False))
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json()["status"] == "ready"
    assert [c["name"] for c in response.json()["checks"]] == ["store", "schema"]
    fall_behind(store_url)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert not response.json()["checks"][1]["ok"]
