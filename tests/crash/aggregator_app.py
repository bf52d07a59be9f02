"""Processes for the aggregator's multi-process tests.

    python aggregator_app.py write URL WRITER SECONDS   append events, random commit delays
    python aggregator_app.py run URL                    run the aggregator over and over

A writer appends events {"k": key, "n": 1, "w": writer, "i": seq} in small transactions,
sleeping inside some of them so commits land out of order. It prints how many it committed.
"""

from __future__ import annotations

import random
import sys
import time

import psycopg

from batchyard import Yard, folds

KEYS = 20


def make_yard(url: str) -> Yard:
    yard = Yard(url)
    yard.register_aggregator(
        "totals", stream="events", key="k", fold=folds.sum("n"), page_size=50, max_keys=7, lease=2.0
    )
    return yard


def write(url: str, writer: int, seconds: float) -> None:
    rng = random.Random(writer)
    deadline = time.monotonic() + seconds
    committed = 0
    with psycopg.connect(url) as conn:
        while time.monotonic() < deadline:
            count = rng.randint(1, 5)
            for _ in range(count):
                conn.execute(
                    "INSERT INTO batchyard_events (stream, position, payload, created_at) "
                    "VALUES ('events', CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT), "
                    "%s, 0)",
                    (f'{{"k": "k{rng.randrange(KEYS)}", "n": 1}}',),
                )
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.0, 0.2))  # hold the transaction open a while
            conn.commit()
            committed += count
    print(committed)


def run(url: str) -> None:
    yard = make_yard(url)
    while True:
        yard.run_aggregator("totals")


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    if mode == "write":
        write(url, int(rest[0]), float(rest[1]))
    else:
        run(url)
