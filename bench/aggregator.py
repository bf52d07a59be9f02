"""run_aggregator against a hand-written fold loop over the same events, in one run.

    python bench/aggregator.py [--repeat 3] [--events 1000000] [--keys 10000]

The loop is what a careful user would write without batchyard: read a page of 1,000 events
after the cursor, fold them in Python, upsert the totals and write the cursor in one
transaction. One SQL GROUP BY over the same events is printed for scale.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

from _harness import fresh_postgres, fresh_sqlite, median_rates, print_table
from batchyard import Yard, folds


def fill(yard: Yard, events: int, keys: int) -> None:
    rng = random.Random(7)
    with yard.store.transaction() as tx:
        tx.executemany(
            "INSERT INTO batchyard_events (stream, position, payload, created_at) "
            "VALUES ('bench', {event_position}, :payload, {now})",
            [
                {"payload": json.dumps({"k": f"key-{rng.randrange(keys)}", "n": 1})}
                for _ in range(events)
            ],
        )


def batchyard_run(yard: Yard, events: int) -> tuple[int, float]:
    yard.reset_aggregator("bench")
    start = time.perf_counter()
    run = yard.run_aggregator("bench")
    assert run.events == events, run
    return events, time.perf_counter() - start


def hand_loop(yard: Yard, events: int) -> tuple[int, float]:
    with yard.store.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS hand_totals (key TEXT PRIMARY KEY, n BIGINT)")
        tx.execute("CREATE TABLE IF NOT EXISTS hand_cursor (id BIGINT)")
        # what a careful user adds for this loop: an index matching its ORDER BY
        tx.execute("CREATE INDEX IF NOT EXISTS hand_events ON batchyard_events (stream, id)")
        tx.execute("DELETE FROM hand_totals")
        tx.execute("DELETE FROM hand_cursor")
        tx.execute("INSERT INTO hand_cursor VALUES (0)")
    start = time.perf_counter()
    done = 0
    while True:
        with yard.store.transaction() as tx:
            cursor = tx.one("SELECT id FROM hand_cursor")["id"]
            rows = tx.all(
                "SELECT id, payload FROM batchyard_events WHERE stream = 'bench' "
                "AND id > :cursor ORDER BY id LIMIT 1000",
                {"cursor": cursor},
            )
            if not rows:
                break
            counts = Counter(json.loads(r["payload"])["k"] for r in rows)
            tx.executemany(
                "INSERT INTO hand_totals VALUES (:key, :n) ON CONFLICT (key) "
                "DO UPDATE SET n = hand_totals.n + excluded.n",
                [{"key": k, "n": n} for k, n in counts.items()],
            )
            tx.execute("UPDATE hand_cursor SET id = :id", {"id": rows[-1]["id"]})
            done += len(rows)
    assert done == events
    return events, time.perf_counter() - start


def group_by(yard: Yard, events: int) -> tuple[int, float]:
    expr = (
        "json_extract(payload, '$.k')"
        if yard.store.dialect == "sqlite"
        else "CAST(payload AS jsonb) ->> 'k'"
    )
    start = time.perf_counter()
    with yard.store.transaction(write=False) as tx:
        tx.all(
            f"SELECT {expr} AS k, COUNT(*) AS n FROM batchyard_events "
            "WHERE stream = 'bench' GROUP BY 1"
        )
    return events, time.perf_counter() - start


def measure(url: str, label: str, events: int, keys: int, repeat: int) -> None:
    yard = Yard(url)
    yard.register_aggregator(
        "bench", stream="bench", key="k", fold=folds.count(), page_size=1000, max_keys=keys
    )
    fill(yard, events, keys)
    # the three take turns run by run (see median_rates)
    hand, ours, sql = median_rates(
        [
            lambda: hand_loop(yard, events),
            lambda: batchyard_run(yard, events),
            lambda: group_by(yard, events),
        ],
        repeat,
    )
    print_table(
        f"{label}: fold {events:,} events over {keys:,} keys (events/s)",
        [
            ("hand-written loop, 1,000 events/tx", hand, "the baseline"),
            ("run_aggregator", ours, "goal >= 0.5"),
            ("one SQL GROUP BY (no cursor, no totals)", sql, "for scale"),
        ],
    )
    yard.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    measure(f"sqlite:///{fresh_sqlite()}", "SQLite", args.events, args.keys, args.repeat)
    with fresh_postgres() as url:
        measure(url, "PostgreSQL", args.events, args.keys, args.repeat)


if __name__ == "__main__":
    main()
