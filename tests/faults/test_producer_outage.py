"""The producer's writer rides through a PostgreSQL outage of any length: adds go on into
memory up to the target, then block and raise Backpressure; nothing accepted is lost, and
everything is written once the store is back."""

from __future__ import annotations

import logging
import time

import pytest

from batchyard import Backpressure, Yard


def stored(url: str) -> list[int]:
    yard = Yard(url)
    with yard.store.transaction(write=False) as tx:
        rows = tx.all(
            "SELECT i.payload FROM batchyard_items i JOIN batchyard_batches b "
            "ON b.batch_no = i.batch_no ORDER BY b.sequence, i.position"
        )
    yard.close()
    return [int(r["payload"]) for r in rows]


def test_the_producer_writer_waits_out_an_outage_and_loses_nothing(proxy, pg_database, caplog):
    yard = Yard(proxy.url)
    yard.handler("h")(lambda items, ctx: None)
    producer = yard.producer(max_pending_items=50, add_timeout=0.5)
    try:
        producer.add("ev", list(range(10)), max_batch_size=100, on_flush="h")
        producer.flush()
        with caplog.at_level(logging.INFO, logger="batchyard.producer"):
            proxy.outage()
            for n in range(10, 60):  # accepted into memory, up to the target
                producer.add("ev", [n], max_batch_size=100, on_flush="h")
            with pytest.raises(TimeoutError):
                producer.wait_durable(timeout=1)
            # longer than the writer's retries of other errors (5 attempts, ~3 s)
            time.sleep(6)
            with pytest.raises(Backpressure):
                producer.add("ev", [60], max_batch_size=100, on_flush="h")
            assert producer.stats().pending_items == 50
            proxy.heal()
            producer.flush(timeout=60)
            producer.add("ev", [60], max_batch_size=100, on_flush="h")
            producer.flush(timeout=60)
        assert stored(pg_database) == list(range(61))
        warnings = [
            r
            for r in caplog.records
            if r.name == "batchyard.producer" and r.levelno == logging.WARNING
        ]
        assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
        assert any("working again" in r.getMessage() for r in caplog.records)
    finally:
        proxy.heal()
        producer.close()
        yard.close()
