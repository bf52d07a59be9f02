"""`batchyard handlers`: the limited handlers of the store - their limits, the calls in
flight across every worker, the starts in the rate window, and the flushes waiting for room.
It reads the store alone, so it works without `--app`."""

from __future__ import annotations

from batchyard.cli._common import AppOption, StoreOption, load_yard
from batchyard.cli._output import Column, Id, JsonOption, show_list

COLUMNS = [
    Id("handler"),
    Column("concurrency"),
    Column("in_flight", "in flight"),
    Column("rate_count", "starts"),
    Column("rate_seconds", "per"),
    Column("recent_starts", "started"),
    Column("waiting"),
]


def handlers(
    app_path: AppOption = None, store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Limited handlers: their limits and load, across every worker."""
    show_list(load_yard(app_path, store).handler_loads(), as_json, COLUMNS)
