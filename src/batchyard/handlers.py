"""Handlers: user callables registered under stable names, sync or ``async def``.

Configurations stored in the database name a handler, never hold a callable, so any worker
process that imports the application can run the work.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from batchyard.errors import HandlerNotFound, InvalidInput

F = TypeVar("F", bound=Callable[..., Any])


class Handlers:
    """The registry of one yard."""

    def __init__(self) -> None:
        self._by_name: dict[str, Callable[..., Any]] = {}
        self._loops = threading.local()
        self._opened_loops: list[asyncio.AbstractEventLoop] = []
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[F], F]:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("a handler name must be a non-empty string", field="name")

        def decorator(fn: F) -> F:
            if not callable(fn):
                raise InvalidInput(f"handler {name!r} is not callable", field="name")
            self._by_name[name] = fn
            return fn

        return decorator

    def name_of(self, handler: str | Callable[..., Any], field: str = "on_flush") -> str:
        """The registered name for `handler` (a name or a registered callable)."""
        if isinstance(handler, str):
            if handler not in self._by_name:
                raise HandlerNotFound(
                    f"{field}: no handler is registered as {handler!r} "
                    f"(register it with @yard.handler({handler!r}))",
                    field=field,
                )
            return handler
        for name, fn in self._by_name.items():
            if fn is handler:
                return name
        raise HandlerNotFound(
            f"{field}: {handler!r} is not a registered handler (use @yard.handler(name))",
            field=field,
        )

    def get(self, name: str) -> Callable[..., Any]:
        return self._by_name[self.name_of(name, field="handler")]

    def call(self, name: str, *args: Any) -> Any:
        """Call a handler; an ``async def`` one runs on this thread's own event loop."""
        fn = self.get(name)
        if inspect.iscoroutinefunction(fn):
            loop = getattr(self._loops, "loop", None)
            if loop is None or loop.is_closed():
                loop = self._loops.loop = asyncio.new_event_loop()
                with self._lock:
                    self._opened_loops.append(loop)
            return loop.run_until_complete(fn(*args))
        return fn(*args)

    def close(self) -> None:
        """Close the event loops opened for async handlers."""
        with self._lock:
            loops, self._opened_loops = self._opened_loops, []
        for loop in loops:
            if not loop.is_running():
                loop.close()

    def __contains__(self, name: object) -> bool:
        return name in self._by_name
