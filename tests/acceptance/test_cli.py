"""The `batchyard` command in real processes: serve, worker (signals), db."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from batchyard import ItemFailures, RetryPolicy, Yard
from batchyard.sources import sql_keyset
from tests.processes import app_env, recorded
from tests.servers import free_port, wait_for_http, wait_until

HERE = Path(__file__).parent


def cli(*args, env=None, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "batchyard", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.fixture
def env(store_url, tmp_path):
    return app_env(store_url, tmp_path / "calls.jsonl", HERE)


def test_serve_accepts_items_and_flushes_them_in_process(env):
    port = free_port()
    server = cli("serve", "--app", "app:yard", "--port", str(port), env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health")
        response = httpx.post(
            f"{base}/batches/ev/items",
            json={"items": [1, 2], "max_batch_size": 2, "on_flush": "record"},
        )
        assert response.json()["flushed"] is True
        wait_until(lambda: recorded(env["RECORD_PATH"]), what="the flush")
        assert recorded(env["RECORD_PATH"]) == [{"batch_id": "ev::0", "items": [1, 2]}]
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    # uvicorn re-raises the signal it handled once its graceful shutdown is over
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "stopped after 1 tasks" in output


def test_sigterm_lets_in_flight_flushes_finish(env):
    yard = Yard(env["BATCHYARD_STORE"])
    yard.handler("record")(lambda items, ctx: None)
    yard.add_items("ev", [1, 2, 3], max_batch_size=3, on_flush="record")
    worker = cli(
        "worker", "--app", "app:yard", "--concurrency", "1", env={**env, "HANDLER_SLEEP": "1.5"}
    )
    wait_until(lambda: yard.get_batch_status("ev")[0].attempts == 1, what="the flush to start")
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert recorded(env["RECORD_PATH"]) == [{"batch_id": "ev::0", "items": [1, 2, 3]}]
    assert yard.get_batch_status("ev") == []  # completed
    yard.close()


def test_shutdown_timeout_gives_leases_back_and_a_second_signal_exits_at_once(env):
    yard = Yard(env["BATCHYARD_STORE"])
    yard.handler("record")(lambda items, ctx: None)
    yard.add_items("ev", [1], max_batch_size=1, on_flush="record")
    yard.add_items("other", [2], max_batch_size=1, on_flush="record")
    slow = {**env, "HANDLER_SLEEP": "60"}
    worker = cli(
        "worker", "--app", "app:yard", "--concurrency", "1", "--shutdown-timeout", "0.5", env=slow
    )
    wait_until(lambda: _running(yard) == 1, what="a claim")
    worker.send_signal(signal.SIGTERM)
    worker.communicate(timeout=30)
    assert _running(yard) == 0  # the lease was given back, not left to expire

    stuck = cli("worker", "--app", "app:yard", "--concurrency", "1", env=slow)
    wait_until(lambda: _running(yard) == 1, what="a claim")
    stuck.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    stuck.send_signal(signal.SIGTERM)
    stuck.communicate(timeout=10)  # no waiting for the 60 s handler
    assert stuck.returncode != 0
    yard.close()


def _running(yard):
    with yard.store.transaction() as tx:
        return tx.one("SELECT count(*) AS n FROM batchyard_tasks WHERE state = 'running'")["n"]


def test_db_upgrade_and_version(tmp_path):
    from batchyard.store import open_store

    url = f"sqlite:///{tmp_path}/new.db"
    latest = open_store(url, migrate=False).latest_version()
    env = {**os.environ, "BATCHYARD_STORE": url}
    result = subprocess.run(
        [sys.executable, "-m", "batchyard", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"schema version 0 -> {latest}" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "batchyard", "db", "version"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"schema version {latest} (latest {latest})" in result.stdout


def test_unknown_store_scheme_is_a_clear_error(tmp_path):
    env = {**os.environ, "BATCHYARD_STORE": "mysql://x"}
    result = subprocess.run(
        [sys.executable, "-m", "batchyard", "db", "version"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2  # configuration, like a usage error
    assert result.stderr.startswith("error: unknown store scheme 'mysql'")


def test_iterators_commands(env):
    yard = Yard(env["BATCHYARD_STORE"])
    yard.handler("source")(lambda cursor, size: {"items": [1], "cursor": 1, "done": True})
    yard.handler("record")(lambda items, ctx: None)
    yard.start_iterator("job-1", batch_size=5, get_next_batch="source", process_batch="record")
    yard.close()

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "batchyard", "iterators", *args],
            env=env,
            capture_output=True,
            text=True,
        )

    assert "job-1: paused" in run("pause", "job-1").stdout
    [row] = json.loads(run("list", "--json").stdout)
    assert row["job_id"] == "job-1" and row["status"] == "paused"
    assert "job-1: running" in run("resume", "job-1").stdout
    assert "job-1: cancelled" in run("cancel", "job-1").stdout
    assert json.loads(run("status", "job-1", "--json").stdout)["status"] == "cancelled"
    missing = run("status", "nope")
    assert missing.returncode == 1 and "no iterator job 'nope'" in missing.stderr


def test_iterators_status_shows_a_parallel_jobs_slices(env):
    yard = Yard(env["BATCHYARD_STORE"])
    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE wide_src (id INTEGER PRIMARY KEY)")
        tx.executemany("INSERT INTO wide_src (id) VALUES (:id)", [{"id": n} for n in range(30)])
    sql_keyset(yard, "wide", table="wide_src", order_by="id", tie_breaker="id")
    yard.handler("record")(lambda items, ctx: None)
    yard.start_iterator(
        "wide",
        batch_size=5,
        get_next_batch="wide",
        process_batch="record",
        parallelism=3,
        delay_between_batches=0,
    )
    yard.run_worker(wait=False)
    yard.close()
    command = [sys.executable, "-m", "batchyard", "iterators", "status", "wide"]
    shown = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    assert "parallelism" in shown and "slice" in shown and "cursor" in shown
    as_json = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, check=True
    ).stdout
    slices = json.loads(as_json)["slices"]
    assert len(slices) >= 3 and sum(s["processed"] for s in slices) == 30
    listed = subprocess.run(
        [sys.executable, "-m", "batchyard", "iterators", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "parallelism" in listed


def test_batches_items_and_discard_commands(env):
    yard = Yard(env["BATCHYARD_STORE"], retry=RetryPolicy(max_attempts=1))

    @yard.handler("down")
    def down(items, ctx):
        raise ItemFailures({1: "refused by the sink"})

    yard.add_items("ev", [{"n": 1}, {"n": 2}], max_batch_size=2, on_flush="down")
    yard.run_worker(wait=False)
    yard.close()

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "batchyard", "batches", *args],
            env=env,
            capture_output=True,
            text=True,
        )

    assert json.loads(run("items", "ev::0", "--json").stdout) == [
        {"position": 0, "payload": {"n": 1}, "error": None},
        {"position": 1, "payload": {"n": 2}, "error": "refused by the sink"},
    ]
    table = run("items", "ev::0", "--after", "0").stdout
    assert "refused by the sink" in table and '"n": 2' in table and '"n": 1' not in table
    bad = run("items", "ev::0", "--limit", "0")
    assert bad.returncode == 1 and "limit" in bad.stderr
    discarded = run("discard", "ev::0", "--json")
    assert discarded.returncode == 0, discarded.stdout + discarded.stderr
    assert json.loads(discarded.stdout) == {
        "batch_id": "ev::0",
        "item_count": 1,
        "status": "discarded",
    }
    again = run("discard", "ev::0")
    assert again.returncode == 1 and "only a dead batch" in again.stderr
    [record, _] = json.loads(run("history", "ev", "--json").stdout)
    assert (record["outcome"], record["item_count"]) == ("discarded", 1)


def test_serve_logs_a_failed_flush_with_its_traceback_and_shows_it(env):
    port = free_port()
    server = cli("serve", "--app", "app:yard", "--port", str(port), env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health")
        httpx.post(
            f"{base}/batches/ev/items",
            json={"items": [1, 2], "max_batch_size": 2, "on_flush": "explode", "max_attempts": 1},
        )
        wait_until(
            lambda: httpx.get(f"{base}/batches/ev/history").json()["data"], what="the failed flush"
        )
        page = httpx.get(f"{base}/ui/batches/ev").text
        assert "<summary>traceback</summary>" in page and "fail_in_the_sink" in page
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert "ERROR batchyard.accumulator: flush of ev::0 failed" in output, output
    assert "Traceback (most recent call last)" in output
    assert "fail_in_the_sink" in output and "the sink refused 2 items" in output


def test_worker_logs_a_failed_flush_with_its_traceback_as_json(env):
    yard = Yard(env["BATCHYARD_STORE"])
    yard.handler("explode")(lambda items, ctx: None)
    yard.add_items("ev", [1, 2, 3], max_batch_size=3, on_flush="explode", max_attempts=2)
    yard.close()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchyard",
            "worker",
            "--app",
            "app:yard",
            "--once",
            "--log-format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [
        json.loads(line) for line in result.stderr.splitlines() if '"batchyard.accumulator"' in line
    ]
    assert (line["level"], line["batch_id"], line["attempt"], line["handler"]) == (
        "warning",
        "ev::0",
        1,
        "explode",
    )
    assert "fail_in_the_sink" in line["exception"]
    assert "the sink refused 3 items" in line["exception"]


def test_the_builtin_log_handler_logs_the_items_it_received(tmp_path, caplog):
    from batchyard.cli._common import register_builtin_handlers

    yard = Yard(f"sqlite:///{tmp_path}/yard.db")
    register_builtin_handlers(yard)
    yard.add_items("ev", [{"n": 1}, {"text": "x" * 3000}], max_batch_size=2, on_flush="log")
    with caplog.at_level(logging.INFO):
        yard.run_worker(wait=False)
    yard.close()
    [record] = [r for r in caplog.records if r.name == "batchyard.flush"]
    line = record.getMessage()
    assert line.startswith('flushed ev::0 (2 items, attempt 1): [{"n": 1}, {"text": "xxx')
    assert line.endswith("... (3024 characters in all)") and len(line) < 2200
    assert record.item_count == 2


def test_serve_on_a_busy_port_says_so_before_starting_anything(tmp_path):
    store = tmp_path / "new.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "batchyard", "serve", "--port", str(port)],
            env={**os.environ, "BATCHYARD_STORE": f"sqlite:///{store}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2  # configuration, as an unknown store scheme
    assert result.stderr == f"error: port {port} on 127.0.0.1 is in use\n"
    assert result.stdout == ""  # no banner, no worker's lines
    assert not store.exists()  # the store was not opened


def test_serve_and_worker_take_their_options_from_the_environment(env, tmp_path):
    port = free_port()
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret\n")
    settings = {
        "BATCHYARD_APP": "app:yard",
        "BATCHYARD_HOST": "127.0.0.1",
        "BATCHYARD_PORT": str(port),
        "BATCHYARD_CONCURRENCY": "2",
        "BATCHYARD_IN_PROCESS_WORKER": "false",
        "BATCHYARD_LOG_LEVEL": "info",
        "BATCHYARD_LOG_FORMAT": "json",
        "BATCHYARD_API_TOKEN_FILE": str(tokens),
    }
    server = cli("serve", env={**env, **settings})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/health")
        headers = {"Authorization": "Bearer s3cret"}
        assert httpx.get(f"{base}/batches/ev", headers=headers).status_code == 200
        assert httpx.get(f"{base}/batches/ev").status_code == 401
        added = httpx.post(
            f"{base}/batches/ev/items",
            json={"items": [1], "max_batch_size": 1, "on_flush": "record"},
            headers=headers,
        )
        assert added.json()["flushed"] is True
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port} (token required)" in output
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line["message"] == "Application shutdown complete." for line in logged)
    # no in-process worker (it would log its stop): the batch waits for one
    assert not any(line["logger"] == "batchyard.worker" for line in logged), logged
    assert recorded(env["RECORD_PATH"]) == []

    worker = subprocess.run(
        [sys.executable, "-m", "batchyard", "worker", "--once"],
        env={**env, **settings, "BATCHYARD_SHUTDOWN_TIMEOUT": "5", "BATCHYARD_LEASE": "10"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert recorded(env["RECORD_PATH"]) == [{"batch_id": "ev::0", "items": [1]}]  # app:yard's
    bad = subprocess.run(
        [sys.executable, "-m", "batchyard", "worker", "--once"],
        env={**env, "BATCHYARD_CONCURRENCY": "none"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "BATCHYARD_CONCURRENCY" in bad.stderr, bad.stderr


def test_batches_batcher_shows_a_batchers_keys(env):
    yard = Yard(env["BATCHYARD_STORE"])
    yard.handler("record")(lambda items, ctx: None)
    yard.register_batcher("clicks", key="user", max_batch_size=10, on_flush="record")
    yard.add("clicks", [{"user": "ann"}, {"user": "bob"}, {"user": "ann"}])
    yard.close()

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "batchyard", "batches", "batcher", *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=HERE,
        )

    shown = run("clicks", "--app", "app:yard")
    assert shown.returncode == 0, shown.stderr
    assert "clicks: 2 open key(s) of at most 2" in shown.stdout
    assert "clicks:ann::0" in shown.stdout and "clicks:bob::0" in shown.stdout
    as_json = json.loads(run("clicks", "--app", "app:yard", "--json").stdout)
    assert [b["item_count"] for b in as_json["keys"]["ann"]] == [2]
    missing = run("nope", "--app", "app:yard")
    assert missing.returncode == 1 and "no batcher is registered as 'nope'" in missing.stderr


def test_batches_batchers_lists_the_apps_batchers(env):
    yard = Yard(env["BATCHYARD_STORE"])
    yard.handler("record")(lambda items, ctx: None)
    yard.register_batcher("clicks", key="user", max_batch_size=10, on_flush="record")
    yard.add("clicks", [{"user": "ann"}, {"user": "bob"}, {"user": "ann"}])
    yard.close()

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "batchyard", "batches", "batchers", *args],
            env={**env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            cwd=HERE,
        )

    shown = run("--app", "app:yard")
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if "clicks" in line]
    assert [c.strip() for c in line.split("│")[1:-1]] == [
        *("clicks", "user", "record", "10", ""),  # no byte limit
        *("2", "3", "0", "0", "0"),  # open keys, waiting, dead, flushed and failed (hour)
    ]
    [summary] = json.loads(run("--app", "app:yard", "--json").stdout)
    assert summary["batcher"]["max_open_keys"] == 2 and summary["items_waiting"] == 3
