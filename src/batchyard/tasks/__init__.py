"""Durable tasks: the queue that holds them, and the kinds capabilities declare."""

from batchyard.tasks.kinds import Grouping, TaskKind, TaskKinds
from batchyard.tasks.queue import TaskQueue
from batchyard.tasks.records import Task

__all__ = ["Grouping", "Task", "TaskKind", "TaskKinds", "TaskQueue"]
