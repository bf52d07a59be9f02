"""History for the read and prune benches, written straight into the tables.

Draining a million items through a worker takes minutes per store; the rows it leaves behind
are simple, so they are inserted directly instead, shaped as a drain leaves them: completed
batches of one base with consecutive sequences, their items (positions 0..n-1), one
completed flush each, and the base's `next_sequence` moved past them. Every row satisfies
the schema's constraints, and the store's own code then reads, adds to and prunes them.
"""

from __future__ import annotations

from batchyard.store import Store

PAYLOAD = '{"payload": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'


def drained_history(
    store: Store, base: str, batches: int, items_per_batch: int, completed_at: float
) -> None:
    """`batches` completed batches of `items_per_batch` items on `base`, finished at
    `completed_at` (epoch seconds), with their flush records."""
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO batchyard_batch_bases (base_id, next_sequence) VALUES (:base, :n) "
            "ON CONFLICT (base_id) DO UPDATE SET next_sequence = :n",
            {"base": base, "n": batches},
        )
        tx.executemany(
            "INSERT INTO batchyard_batches (batch_id, base_id, sequence, status, handler, "
            "max_batch_size, flush_interval, max_attempts, attempts, idempotency_key, "
            "flush_reason, created_at, updated_at, flush_requested_at, completed_at) "
            "VALUES (:batch_id, :base, :seq, 'completed', 'noop', :size, NULL, 5, 1, :key, "
            "'size', :at, :at, :at, :at)",
            [
                {
                    "batch_id": f"{base}::{s}",
                    "base": base,
                    "seq": s,
                    "size": items_per_batch,
                    "key": f"history-{base}-{s}",
                    "at": completed_at,
                }
                for s in range(batches)
            ],
        )
        tx.execute("CREATE TEMPORARY TABLE bench_positions (n INTEGER NOT NULL)")
        tx.executemany(
            "INSERT INTO bench_positions (n) VALUES (:n)",
            [{"n": n} for n in range(items_per_batch)],
        )
        tx.execute(
            "INSERT INTO batchyard_items (batch_no, position, payload, added_at) "
            "SELECT b.batch_no, p.n, :payload, :at FROM batchyard_batches b, bench_positions p "
            "WHERE b.base_id = :base AND b.status = 'completed' ORDER BY b.batch_no, p.n",
            {"payload": PAYLOAD, "at": completed_at, "base": base},
        )
        tx.execute("DROP TABLE bench_positions")
        tx.execute(
            "INSERT INTO batchyard_flushes (batch_id, base_id, sequence, attempt, reason, "
            "outcome, item_count, failed_count, worker_id, started_at, duration) "
            "SELECT batch_id, base_id, sequence, 1, 'size', 'completed', :n, 0, 'bench', "
            ":at, 0.001 FROM batchyard_batches WHERE base_id = :base AND status = 'completed' "
            "ORDER BY batch_no",
            {"n": items_per_batch, "at": completed_at, "base": base},
        )
