"""A claimed task, as every claim gives it to its runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from batchyard.store.base import Row


@dataclass(frozen=True)
class Task:
    """A claimed task: its fencing ``token`` must accompany every write about it. `ahead`
    is what the transaction that claimed it read ahead for its run, or None: the start of a
    flush that a hand-off or a directed claim made in that transaction (see
    `batchyard.tasks.handoff` and `batchyard.tasks.directed`). `place` is set on a task that
    was claimed ahead for the place it runs in: a future that gives, once the books that
    put it there are written, the task claimed ahead for that place after it (or None)."""

    id: int
    kind: str
    key: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    token: int
    last_error: str | None = None
    ahead: Any = field(default=None, compare=False, repr=False)
    place: Any = field(default=None, compare=False, repr=False)


def task_of(row: Row) -> Task:
    """The task of a claim's row (the columns of `sql.RETURNING`)."""
    return Task(
        id=int(row["id"]),
        kind=row["kind"],
        key=row["key"],
        payload=orjson.loads(row["payload"]),
        attempts=int(row["attempts"]),
        max_attempts=int(row["max_attempts"]),
        token=int(row["token"]),
        last_error=row["last_error"],
    )
