"""The table iterator: process a large source in batches from a durable cursor.

A job is a chain of step tasks. Each step asks `get_next_batch(cursor, batch_size)` for a
page, hands its items to `process_batch(items, ctx)`, and then - in one transaction fenced by
the task's token and the job's generation - moves the cursor and schedules the next step.
Pause, resume and cancel bump the generation, so a step that was in flight can never move
the cursor or fork a second chain: one runner per job, always. A failing step is retried
after 1 s, 2 s, 4 s ... (at most 30 s); after `max_retries` the job is `failed` with its
error, and `resume_iterator` goes on from the last checkpoint.

With ``transactional=True`` the handler runs inside that same transaction (``ctx.tx``), so
writes to the same database commit together with the cursor: exactly once. Otherwise
delivery is at least once, with ``ctx.idempotency_key`` stable across retries of a batch.

With ``parallelism=N`` a source that can be cut into ranges runs as N slices at once,
each with its own cursor; the generation fences them all (see `slices`).
"""

from batchyard.iterator.errors import IteratorError
from batchyard.iterator.records import (
    ACTIVE,
    TERMINAL,
    IteratorState,
    IteratorStatus,
    Page,
    PageContext,
    SliceableSource,
    SliceStatus,
)
from batchyard.iterator.service import Iterators
from batchyard.iterator.slices import MAX_PARALLELISM
from batchyard.iterator.steps import COMPLETE_TASK, STEP_TASK

__all__ = [
    "ACTIVE",
    "COMPLETE_TASK",
    "MAX_PARALLELISM",
    "STEP_TASK",
    "TERMINAL",
    "IteratorError",
    "IteratorState",
    "IteratorStatus",
    "Iterators",
    "Page",
    "PageContext",
    "SliceStatus",
    "SliceableSource",
]
