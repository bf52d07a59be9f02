"""Pruning: finished batches, their items and the flush history go after the retention.

A busy store finishes millions of item rows a day, and SQLite has one writer: a prune in one
transaction held it for seconds, and every add waited that long. So the prune goes in
steps, each one short transaction: at most `batches` batches holding at most `items` item
rows between them (a batch larger than that goes alone, so a step never splits a batch),
and at most `flushes` flush records. A batch goes whole, in one step - its items, its item
failures and its row together - so a prune stopped between two steps (a crash, a stopped
worker) leaves every batch either all there or all gone, and the next prune goes on from
what is left. Nothing live is touched: only finished batches (a terminal status, so nothing
changes them meanwhile) whose completion is older than the retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchyard.accumulator.records import FINISHED_STATUSES

if TYPE_CHECKING:
    from batchyard.runtime import Runtime
    from batchyard.store import Tx

# Measured on SQLite (bench/prune.py): a step of 2,000 item rows held the writer ~3 ms on an
# idle machine of 2 cores, ~10 ms on a loaded one.
PRUNE_ITEMS = 2_000
PRUNE_BATCHES = 500
PRUNE_FLUSHES = 1_000


@dataclass(frozen=True)
class PruneStep:
    """What one step removed, and whether more is left to prune."""

    batches: int
    items: int  # counted by their positions before the step
    flushes: int
    more: bool


class Pruner:
    """Removes what the retention no longer keeps, a bounded step at a time."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        items: int = PRUNE_ITEMS,
        batches: int = PRUNE_BATCHES,
        flushes: int = PRUNE_FLUSHES,
    ) -> None:
        self.runtime = runtime
        self.items = items
        self.batches = batches
        self.flushes = flushes

    def step(self, older_than: float) -> PruneStep:
        """One transaction: the oldest finished batches past `older_than` seconds (whole,
        with their items and item failures) and the oldest flush records past it."""
        with self.runtime.store.transaction(self.runtime.now()) as tx:
            chosen, more_batches = self._choose(tx, older_than)
            # one statement per batch and table, sent as one batch of statements: each finds
            # its rows by the primary key, whatever the planner knows of the tables (an IN
            # list read a PostgreSQL table whose statistics were behind from end to end)
            numbers = [{"batch_no": no} for no, _ in chosen]
            for table in ("batchyard_items", "batchyard_item_failures", "batchyard_batches"):
                if numbers:
                    tx.executemany(f"DELETE FROM {table} WHERE batch_no = :batch_no", numbers)
            # oldest first, through the index on started_at: the step reads what it deletes
            flushes = int(
                tx.execute(
                    "DELETE FROM batchyard_flushes WHERE id IN (SELECT id FROM "
                    "batchyard_flushes WHERE started_at < {now} - :age "
                    "ORDER BY started_at LIMIT :limit)",
                    {"age": older_than, "limit": self.flushes},
                ).rowcount
            )
        return PruneStep(
            batches=len(chosen),
            items=sum(items for _, items in chosen),
            flushes=flushes,
            more=more_batches or flushes == self.flushes,
        )

    def prune(self, older_than: float) -> int:
        """Every step until nothing is left to prune; return how many batches went."""
        gone = 0
        while True:
            step = self.step(older_than)
            gone += step.batches
            if not step.more:
                return gone

    def _choose(self, tx: Tx, older_than: float) -> tuple[list[tuple[int, int]], bool]:
        """The batches of the next step, as (number, item rows), and whether others wait."""
        candidates: list[tuple[int, int]] = []
        # one status at a time: each is one range of the index (status, completed_at), read
        # in order up to the limit, where both at once would sort every batch past it
        for status in sorted(FINISHED_STATUSES):
            candidates += [
                (int(r["batch_no"]), int(r["n"]))
                for r in tx.all(
                    "SELECT b.batch_no, COALESCE((SELECT MAX(i.position) + 1 FROM "
                    "batchyard_items i WHERE i.batch_no = b.batch_no), 0) AS n "
                    "FROM batchyard_batches b WHERE b.status = :status "
                    "AND b.completed_at < {now} - :age ORDER BY b.completed_at LIMIT :limit",
                    {
                        "status": status,
                        "age": older_than,
                        "limit": self.batches + 1 - len(candidates),
                    },
                )
            ]
            if len(candidates) > self.batches:
                break
        chosen: list[tuple[int, int]] = []
        rows = 0
        for number, items in candidates[: self.batches]:
            if chosen and rows + items > self.items:
                break
            chosen.append((number, items))
            rows += items
        return chosen, len(candidates) > len(chosen)
