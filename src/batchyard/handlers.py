"""Handlers: user callables registered under stable names, sync or ``async def``.

Configurations stored in the database name a handler, never hold a callable, so any worker
process that imports the application can run the work.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from batchyard.clock import seconds
from batchyard.errors import HandlerNotFound, InvalidInput

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class HandlerLimit:
    """A handler's limits: at most `concurrency` calls at once, at most `rate_count` starts
    in any `rate_seconds` (either may be None: not limited that way)."""

    concurrency: int | None = None
    rate_count: int | None = None
    rate_seconds: float | None = None


class Handlers:
    """The registry of one yard."""

    def __init__(self) -> None:
        self._by_name: dict[str, Callable[..., Any]] = {}
        self._limits: dict[str, HandlerLimit | None] = {}
        self._loops = threading.local()
        self._opened_loops: list[asyncio.AbstractEventLoop] = []
        self._lock = threading.Lock()

    def register(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, float | timedelta] | None = None,
    ) -> Callable[[F], F]:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("a handler name must be a non-empty string", field="name")
        limit = _limit(concurrency, rate)

        def decorator(fn: F) -> F:
            if not callable(fn):
                raise InvalidInput(f"handler {name!r} is not callable", field="name")
            self._by_name[name] = fn
            self._limits[name] = limit
            return fn

        return decorator

    def limited(self, name: str) -> bool:
        """Whether `name` is registered here with limits."""
        return self._limits.get(name) is not None

    def limit(self, name: str) -> HandlerLimit | None:
        """The limits `name` is registered here with, or None."""
        return self._limits.get(name)

    def limits(self) -> dict[str, HandlerLimit | None]:
        """Each registered handler's limits (None: not limited)."""
        return dict(self._limits)

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


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _limit(
    concurrency: int | None, rate: tuple[int, float | timedelta] | None
) -> HandlerLimit | None:
    """The limits a handler is registered with, checked (None: none)."""
    if concurrency is not None and not _positive_int(concurrency):
        raise InvalidInput(
            f"concurrency must be a positive integer, not {concurrency!r}", field="concurrency"
        )
    if rate is None:
        return None if concurrency is None else HandlerLimit(concurrency=concurrency)
    if not isinstance(rate, tuple) or len(rate) != 2:
        raise InvalidInput(f"rate must be (count, per_seconds), not {rate!r}", field="rate")
    count, per = rate
    if not _positive_int(count):
        raise InvalidInput(f"rate[0] must be a positive integer, not {count!r}", field="rate[0]")
    if (
        isinstance(per, bool)
        or not isinstance(per, (int, float, timedelta))
        or not (0 < seconds(per) < float("inf"))
    ):
        raise InvalidInput(
            f"rate[1] must be a positive number of seconds or a timedelta, not {per!r}",
            field="rate[1]",
        )
    return HandlerLimit(concurrency=concurrency, rate_count=count, rate_seconds=seconds(per))
