"""The `batchyard` command on a store that is broken, read-only or missing: one line naming
the problem and a non-zero exit, never a traceback, and never a new file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from batchyard.store import open_store
from tests.faults.disks import not_a_database, read_only_view

COMMANDS = [("db", "version"), ("healthcheck",), ("batches", "dead")]


def batchyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchyard", *args],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    if result.args[3] == "healthcheck":  # one line per check, the store's first
        line = result.stdout.splitlines()[0]
        assert line.startswith("FAIL  store"), output
    else:
        [line] = result.stderr.splitlines()
        assert line.startswith("error: ") and not result.stdout, output
    assert all(word in line for word in words), output


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_that_is_not_a_database(tmp_path, command):
    path = not_a_database(tmp_path / "yard.db")
    assert_one_clear_line(
        batchyard(*command, "--store", f"sqlite:///{path}"), f"{path} is not a SQLite database"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_store_on_a_read_only_file_system(tmp_path, command):
    folder = tmp_path / "data"
    folder.mkdir()
    open_store(f"sqlite:///{folder}/yard.db").close()
    with read_only_view(folder, tmp_path / "view") as view:
        result = batchyard(*command, "--store", f"sqlite:///{view}/yard.db")
    assert_one_clear_line(result, f"{view}/yard.db is on a read-only file system")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_mistyped_path_creates_no_file(tmp_path, command):
    path = tmp_path / "mistyped.db"
    assert_one_clear_line(
        batchyard(*command, "--store", f"sqlite:///{path}"), f"no SQLite database at {path}"
    )
    assert not path.exists()
