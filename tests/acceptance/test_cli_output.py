"""What the `batchyard` commands print, in real processes: tables whose ids are whole at any
width, `--json` on every listing and show, `--version`, `batches list`, the `aggregators`
commands, help without value types beside flags, and one line for a usage error."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import batchyard
from batchyard import ItemFailures, RetryPolicy, Yard
from tests.processes import app_env

HERE = Path(__file__).parent
LONG_BASE = "orders-from-the-warehouse-in-the-north-east-region"
WORDY_BASE = "invoices-sent-to-the-customers-of-the-south-west-region"


@pytest.fixture
def env(store_url, tmp_path):
    return app_env(store_url, tmp_path / "calls.jsonl", HERE)


@pytest.fixture
def cli(env):
    def run(*args: str, columns: int = 200, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "batchyard", *args],
            env={**env, "COLUMNS": str(columns), **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def filled(env):
    """A store with two dead batches (one with an item failed, one under a long base id with
    a long error), an accumulating one under a long base id, an iterator job and a bulk
    job: something for every listing."""
    yard = Yard(env["BATCHYARD_STORE"], retry=RetryPolicy(max_attempts=1))

    @yard.handler("down")
    def down(items, ctx):
        raise ItemFailures({1: "refused by the sink"})

    @yard.handler("wordy")
    def wordy(items, ctx):
        # one long word (a URL, a path) is what squeezed the other columns
        raise RuntimeError("the sink at https://sink.example.com/" + "v1/" * 60 + " said no")

    yard.handler("source")(lambda cursor, size: {"items": [], "cursor": None, "done": True})
    yard.add_items("ev", [{"n": 1}, {"n": 2}], max_batch_size=2, on_flush="down")
    yard.add_items(WORDY_BASE, [1], max_batch_size=1, on_flush="wordy")
    yard.run_worker(wait=False)
    yard.add_items(LONG_BASE, [1], max_batch_size=10, on_flush="down")
    yard.start_iterator("walk", batch_size=5, get_next_batch="source", process_batch="down")
    job_id = yard.create_batch_job("import-things", [{"ns": "s", "id": "a"}, {"ns": "s"}])
    yard.close()
    return {"job_id": job_id, "batch_id": f"{LONG_BASE}::0", "dead_id": f"{WORDY_BASE}::0"}


def test_version(cli):
    result = cli("--version")
    assert (result.returncode, result.stdout) == (0, f"batchyard {batchyard.__version__}\n")


LISTINGS = [
    ("batches", "list"),
    ("batches", "status", "ev"),
    ("batches", "history", "ev"),
    ("batches", "dead"),
    ("batches", "items", "ev::0"),
    ("iterators", "list"),
    ("jobs", "list"),
    ("aggregators", "list"),
    ("aggregators", "parked", "views"),
]


@pytest.mark.parametrize("command", LISTINGS, ids=" ".join)
def test_every_listing_prints_a_json_array_with_json_and_a_table_without(cli, filled, command):
    as_json = cli(*command, "--app", "app:yard", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert isinstance(json.loads(as_json.stdout), list)
    table = cli(*command, "--app", "app:yard")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(("┏", "┌", "\n")) and "{" not in table.stdout.splitlines()[0]


def test_shows_print_a_json_object_with_json(cli, filled):
    job_id = filled["job_id"]
    shown = {
        "jobs show": json.loads(cli("jobs", "show", job_id, "--json").stdout),
        "iterators status": json.loads(cli("iterators", "status", "walk", "--json").stdout),
        "stats": json.loads(cli("stats", "--json").stdout),
        "db version": json.loads(cli("db", "version", "--json").stdout),
        "flush": json.loads(cli("batches", "flush", filled["batch_id"], "--json").stdout),
    }
    assert shown["jobs show"]["id"] == job_id and shown["jobs show"]["total"] == 2
    assert shown["iterators status"]["job_id"] == "walk"
    assert shown["stats"]["total"] == 1
    assert shown["db version"]["schema_version"] == shown["db version"]["latest_version"]
    assert shown["flush"] == {
        "batch_id": filled["batch_id"],
        "item_count": 1,
        "flushed": True,
        "status": "flushing",
        "reason": "manual",
    }


def test_batches_list_filters_by_status_and_limits(cli, filled):
    every = json.loads(cli("batches", "list", "--json").stdout)
    assert sorted(b["batch_id"] for b in every) == sorted(
        ["ev::0", filled["batch_id"], filled["dead_id"]]
    )
    dead = json.loads(cli("batches", "list", "--status", "dead", "--json").stdout)
    assert sorted(b["batch_id"] for b in dead) == sorted(["ev::0", filled["dead_id"]])
    assert len(json.loads(cli("batches", "list", "--limit", "1", "--json").stdout)) == 1
    bogus = cli("batches", "list", "--status", "bogus")
    assert bogus.returncode == 2 and bogus.stderr.startswith("error: ")
    assert "'bogus' is not one of" in bogus.stderr and len(bogus.stderr.splitlines()) == 1


@pytest.mark.parametrize("columns", [80, 160])
def test_ids_are_whole_in_a_narrow_terminal_and_a_wide_one(cli, filled, columns):
    # whole and on one line, to be copied into the next command
    for command, wanted in [
        (("batches", "list"), filled["batch_id"]),
        (("batches", "dead"), filled["dead_id"]),  # beside a long error
        (("batches", "history", WORDY_BASE), filled["dead_id"]),
        (("jobs", "list"), filled["job_id"]),
        (("jobs", "show", filled["job_id"]), filled["job_id"]),
    ]:
        result = cli(*command, columns=columns)
        assert result.returncode == 0, result.stderr
        assert any(wanted in line for line in result.stdout.splitlines()), result.stdout
        assert "…" not in result.stdout
        assert max(len(line) for line in result.stdout.splitlines()) <= columns, result.stdout


def test_numbers_are_rounded_with_units(cli, filled):
    [record] = json.loads(cli("batches", "history", "ev", "--json").stdout)
    took = record["duration_seconds"]
    assert isinstance(took, float)
    table = cli("batches", "history", "ev").stdout
    assert repr(took) not in table
    assert " ms " in table or " s " in table  # the flush took milliseconds, or seconds
    age = cli("batches", "list").stdout.split(filled["batch_id"])[1]
    assert re.search(r"│ \d+(\.\d)? (ms|s) ", age), age


def test_aggregators_list_status_run_parked_and_retry(cli, env):
    yard = Yard(env["BATCHYARD_STORE"])
    yard.append_events("views", [{"page": "/a"}, {"page": "/a"}, {"nopage": 1}])
    yard.close()
    [listed] = json.loads(cli("aggregators", "list", "--app", "app:yard", "--json").stdout)
    assert (listed["name"], listed["lag_events"], listed["parked"]) == ("views", 3, 0)

    no_app = cli("aggregators", "run", "views")
    assert no_app.returncode == 1
    assert no_app.stderr == (
        "error: no aggregator registered as 'views' in this process: "
        "pass the --app that registers it\n"
    )
    ran = json.loads(cli("aggregators", "run", "views", "--app", "app:yard", "--json").stdout)
    assert (ran["events"], ran["parked"], ran["caught_up"]) == (3, 1, True)

    status = json.loads(cli("aggregators", "status", "views", "--json").stdout)  # no --app
    assert (status["lag_events"], status["events_folded"], status["parked"]) == (0, 3, 1)
    assert "views" in cli("aggregators", "status", "views").stdout
    [parked] = json.loads(cli("aggregators", "parked", "views", "--json").stdout)
    assert parked["event"] == {"nopage": 1} and "KeyError" in parked["error"]
    assert "KeyError" in cli("aggregators", "parked", "views").stdout

    again = cli("aggregators", "retry", "views", "--app", "app:yard")
    assert again.stdout == "views: 0 folded, 1 still parked\n"
    fixed = cli("aggregators", "retry", "views", "--app", "app:yard", LENIENT_PAGES="1")
    assert fixed.stdout == "views: 1 folded, 0 still parked\n"
    assert json.loads(cli("aggregators", "parked", "views", "--json").stdout) == []

    queued = cli("aggregators", "run", "views", "--queue")
    assert queued.returncode == 0 and queued.stdout == "views: queued\n"
    missing = cli("aggregators", "status", "nope")
    assert (missing.returncode, missing.stderr) == (1, "error: no aggregator 'nope'\n")


@pytest.mark.parametrize(
    "command", [(), ("serve",), ("worker",), ("batches", "list"), ("aggregators", "run")]
)
def test_help_shows_no_value_type_beside_a_flag(cli, command):
    result = cli(*command, "--help")
    assert result.returncode == 0 and "--help" in result.stdout
    assert "<bool>" not in result.stdout


def test_a_usage_error_is_one_line(cli):
    result = cli("batches", "list", "--nope")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: No such option: --nope") and line.endswith("(see --help)")
