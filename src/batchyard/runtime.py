"""The runtime: what every capability needs, held once.

The store, the clock (and `now()`, the time to bind in SQL), the registered handlers, the
retry policy, the task queue and the task kinds the worker runs, the embedder, and the id
and lease of the worker running in this process. Capabilities take a `Runtime`, never the
`Yard` facade: arrows point down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchyard.clock import Clock
from batchyard.handlers import Handlers
from batchyard.retry import RetryPolicy
from batchyard.store import Store
from batchyard.tasks import TaskKinds, TaskQueue
from batchyard.tasks.leases import Leases

if TYPE_CHECKING:
    from batchyard.embedder import Embedder


@dataclass
class Runtime:
    store: Store
    clock: Clock
    handlers: Handlers = field(default_factory=Handlers)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    kinds: TaskKinds = field(default_factory=TaskKinds)
    worker_id: str | None = None
    lease: float = 30.0  # the lease of the worker running in this process, in seconds
    # whether the end of a task may claim the next one for that worker (not once it stops)
    handing_over: bool = False
    _embedder: Embedder | None = None
    tasks: TaskQueue = field(init=False)
    # what the worker holds beyond its runs (tasks claimed ahead, ends written behind)
    leases: Leases = field(init=False)

    def __post_init__(self) -> None:
        self.tasks = TaskQueue(self.store)
        self.leases = Leases(self.clock)

    def now(self) -> float | None:
        """The time to bind in SQL: the manual clock's, or None for the store's own clock."""
        return self.clock.time() if self.clock.manual else None

    @property
    def embedder(self) -> Embedder:
        """The model of generate-embeddings jobs and search. The default is created on first
        use; without the ``batchyard[embeddings]`` extra that raises `MissingExtra`."""
        if self._embedder is None:
            from batchyard.embedder import SentenceTransformerEmbedder

            self._embedder = SentenceTransformerEmbedder()
        return self._embedder

    @embedder.setter
    def embedder(self, embedder: Embedder) -> None:
        self._embedder = embedder
