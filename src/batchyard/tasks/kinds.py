"""Task kinds: what a capability tells the worker about each kind of task it queues.

A capability declares its kinds (`TaskKind`: how to run one, whether several may run
together, what its books say when one goes to the dead letters) and what must be scheduled
when a worker starts; the worker reads nothing else of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchyard.store import Tx
from batchyard.tasks.records import Task


@dataclass(frozen=True)
class Grouping:
    """How one kind's tasks run several at a time. `group(task)` names the group a task may
    share (the key prefix of its siblings), or None when it runs alone; `run(tasks)` does up
    to `size(task)` tasks of that task's group at once, all or nothing."""

    group: Callable[[Task], str | None]
    run: Callable[[list[Task]], None]
    size: Callable[[Task], int]


@dataclass(frozen=True)
class TaskKind:
    """One kind of task: its name (stored with each task), how to run one, and optionally
    how to run several together and the capability's books when one is dead-lettered (in
    the dead-lettering transaction). `run` may return a task that the end of this one
    claimed for this worker (`TaskQueue.hand_off`): the worker runs it next, on the same
    slot. `start_ahead(tx, payloads)` sends, in a directed claim's transaction before its
    claim (see `directed`), the start of the runs of tasks with these payloads, each only
    while its task is claimable there (`sql.directed`); it returns what gives, after the
    commit, what the start of a claimed task read (its `Task.ahead`), or None."""

    name: str
    run: Callable[[Task], Task | None]
    grouping: Grouping | None = None
    on_dead: Callable[[Tx, Task, str], None] | None = None
    start_ahead: Callable[[Tx, list[Mapping[str, Any]]], Callable[[Task], Any]] | None = None


class TaskKinds:
    """The registry the worker runs from: every kind by name, and what to schedule when a
    worker starts (recurring maintenance, aggregators' timers)."""

    def __init__(self) -> None:
        self._kinds: dict[str, TaskKind] = {}
        self._on_start: list[Callable[[], None]] = []

    def add(self, *kinds: TaskKind) -> None:
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"task kind {kind.name!r} is declared twice")
            self._kinds[kind.name] = kind

    def on_worker_start(self, schedule: Callable[[], None]) -> None:
        """Run `schedule` whenever a worker starts."""
        self._on_start.append(schedule)

    def get(self, name: str) -> TaskKind | None:
        return self._kinds.get(name)

    def worker_started(self) -> None:
        for schedule in self._on_start:
            schedule()
