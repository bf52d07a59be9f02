"""Helpers for tests that run an application of their own (an `app.py` beside the test) in
real `batchyard` processes: the environment those processes get, and the calls the app's
handler recorded (one JSON object a line, appended to RECORD_PATH)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def app_env(store_url: str, record_path: str | Path, app_dir: str | Path) -> dict[str, str]:
    """This process's environment plus BATCHYARD_STORE, RECORD_PATH, and `app_dir` first on
    PYTHONPATH (so `--app app:yard` finds the app)."""
    return {
        **os.environ,
        "BATCHYARD_STORE": store_url,
        "RECORD_PATH": str(record_path),
        "PYTHONPATH": str(app_dir) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def recorded(record_path: str | Path) -> list[dict[str, Any]]:
    """The calls recorded so far, in order; none while the file does not exist."""
    path = Path(record_path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def store_count(store: Any, sql: str) -> int:
    """The ``n`` of a counting query, read from the store the processes share."""
    with store.transaction(write=False) as tx:
        return int(tx.one(sql)["n"])
