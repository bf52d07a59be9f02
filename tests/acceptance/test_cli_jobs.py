"""`batchyard import | export | jobs | stats` in real processes, on both stores."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import orjson
import pytest

from batchyard import Yard


def run(*args, store_url, cwd):
    return subprocess.run(
        [sys.executable, "-m", "batchyard", *args],
        env={**os.environ, "BATCHYARD_STORE": store_url, "COLUMNS": "200"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def cli(store_url, tmp_path):
    return lambda *args: run(*args, store_url=store_url, cwd=tmp_path)


def test_import_each_format_then_export_and_inspect(cli, tmp_path):
    (tmp_path / "a.ndjson").write_text(
        "".join(orjson.dumps({"id": f"n{i}", "data": {"i": i}}).decode() + "\n" for i in range(300))
        + '\n{"id": 7}\n'
    )
    (tmp_path / "b.csv").write_text("id,type,data.price,colour\nc1,T,=1+1,red\n")
    (tmp_path / "c.json").write_text(json.dumps([{"id": "j1", "content": "hello"}]))

    first = cli("import", "a.ndjson", "--ns", "shop")
    assert first.returncode == 1, first.stdout + first.stderr  # one item failed
    assert "failed - 300 processed, 1 failed" in first.stdout
    assert "item 300: id: must be a string, not a number" in first.stdout
    for name in ("b.csv", "c.json"):
        done = cli("import", name, "--ns", "shop")
        assert done.returncode == 0 and "completed - 1 processed, 0 failed" in done.stdout

    exported = cli("export", "shop", "--format", "csv", "-o", "out.csv")
    assert exported.returncode == 0 and "302 thing(s)" in exported.stdout
    with (tmp_path / "out.csv").open(newline="") as file:
        rows = {row["id"]: row for row in csv.DictReader(file)}
    assert len(rows) == 302 and rows["c1"]["data.price"] == "'=1+1"
    assert rows["c1"]["data.colour"] == "red" and rows["j1"]["content"] == "hello"
    assert not (tmp_path / "out.csv.part").exists()

    jobs = json.loads(cli("jobs", "list", "--json").stdout)
    assert sorted(job["status"] for job in jobs) == ["completed", "completed", "failed"]
    failed = next(job for job in jobs if job["status"] == "failed")
    errors = json.loads(cli("jobs", "errors", failed["id"], "--json").stdout)
    assert errors == [{"index": 300, "error": "id: must be a string, not a number"}]
    shown = json.loads(cli("jobs", "show", failed["id"], "--json").stdout)
    assert shown["processed"] == 300 and shown["errors"][0]["index"] == 300
    assert json.loads(cli("stats", "--json").stdout)["success_rate"] == "66.67%"
    table = cli("jobs", "show", failed["id"]).stdout  # its fields, then its first errors
    assert failed["id"] in table and "300" in table and "id: must be a string" in table
    assert re.search(r"success_rate +│ 66\.67%", cli("stats").stdout)


def test_a_bad_line_stops_the_import_before_anything_is_submitted(cli, store_url, tmp_path):
    (tmp_path / "bad.ndjson").write_text('{"id": "a"}\n\n{"id": \n')
    result = cli("import", "bad.ndjson", "--ns", "x")
    assert result.returncode == 1 and "bad.ndjson, line 3: not valid JSON" in result.stderr
    with Yard(store_url) as yard:
        assert yard.list_batch_jobs() == []


def test_jobs_retry_makes_one_job_of_the_failed_items(cli, store_url):
    yard = Yard(store_url)
    try:

        @yard.transform("odd-fails")
        def odd_fails(item):
            if item % 2:
                raise ValueError("odd")
            return item

        job_id = yard.create_batch_job(
            "transform-data", list(range(6)), options={"transform": "odd-fails"}
        )
        yard.run_worker(wait=False)
    finally:
        yard.close()
    made = cli("jobs", "retry", job_id, "--json")
    assert made.returncode == 0, made.stdout + made.stderr
    retry = json.loads(made.stdout)
    assert retry["parent_job_id"] == job_id and retry["total"] == 3
    again = cli("jobs", "retry", job_id)
    assert again.returncode == 0 and again.stdout.startswith(f"{retry['id']}: 3 failed item(s)")
    nothing = cli("jobs", "retry", retry["id"])  # its items have not run: it is pending
    assert nothing.returncode == 1 and "retry its failed items once it ends" in nothing.stderr
