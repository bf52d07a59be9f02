"""Durable tasks: the kinds capabilities declare, and the queue that holds them."""

from batchyard.tasks.kinds import Grouping, TaskKind, TaskKinds

__all__ = ["Grouping", "TaskKind", "TaskKinds"]
