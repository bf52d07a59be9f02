"""Durable tasks: the queue that holds them, and the kinds capabilities declare."""

from batchyard.tasks.kinds import Grouping, TaskKind, TaskKinds
from batchyard.tasks.queue import Task, TaskQueue

__all__ = ["Grouping", "Task", "TaskKind", "TaskKinds", "TaskQueue"]
