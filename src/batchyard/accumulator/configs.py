"""A batch's configuration: the options of `add_items`, validated once and remembered.

The configuration travels with every add and is written on each batch the add creates
(a batch keeps its own limits, whoever adds to it later).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from batchyard.clock import seconds
from batchyard.errors import InvalidInput

if TYPE_CHECKING:
    from batchyard.runtime import Runtime

# a year: longer is surely a mistake, and far timers overflow datetime (and inf never fires)
MAX_FLUSH_INTERVAL_SECONDS = 365 * 24 * 3600.0


def _positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"{field} must be a positive integer, not {value!r}", field=field)
    return value


def _duration(value: float | timedelta | None, field: str) -> float | None:
    """A positive duration of at most a year, in seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        raise InvalidInput(f"{field} must be seconds or a timedelta", field=field)
    duration = seconds(value)
    if not 0 < duration <= MAX_FLUSH_INTERVAL_SECONDS:
        raise InvalidInput(
            f"{field} must be positive and at most "
            f"{MAX_FLUSH_INTERVAL_SECONDS:.0f} s, not {value!r}",
            field=field,
        )
    return duration


class Configs:
    """Validates batch configurations; callers repeat theirs, so each is remembered."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._known: dict[tuple[Any, ...], dict[str, Any]] = {}

    def __call__(
        self,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None,
        max_attempts: int | None,
        ordered: bool = False,
        max_batch_bytes: int | None = None,
        flush_after_idle: float | timedelta | None = None,
    ) -> dict[str, Any]:
        """The validated configuration. The key holds each value's type (True == 1 == 1.0
        as keys, yet only 1 is valid), and only handler names: a callable's name can change
        when a name is registered again."""
        args = (
            max_batch_size,
            on_flush,
            flush_interval,
            max_attempts,
            ordered,
            max_batch_bytes,
            flush_after_idle,
        )
        if not isinstance(on_flush, str):
            return self._validate(*args)
        key = (args, *map(type, args), self.runtime.retry.max_attempts)
        config = self._known.get(key)
        if config is None:
            config = self._validate(*args)
            if len(self._known) < 1000:
                self._known[key] = config
        return config

    def _validate(
        self,
        max_batch_size: int,
        on_flush: str | Callable[..., Any],
        flush_interval: float | timedelta | None,
        max_attempts: int | None,
        ordered: bool,
        max_batch_bytes: int | None,
        flush_after_idle: float | timedelta | None,
    ) -> dict[str, Any]:
        if not isinstance(ordered, bool):
            raise InvalidInput(f"ordered must be True or False, not {ordered!r}", field="ordered")
        _positive_int(max_batch_size, "max_batch_size")
        if max_batch_bytes is not None:
            _positive_int(max_batch_bytes, "max_batch_bytes")
        interval = _duration(flush_interval, "flush_interval")
        idle = _duration(flush_after_idle, "flush_after_idle")
        attempts = self.runtime.retry.max_attempts if max_attempts is None else max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidInput(
                f"max_attempts must be a positive integer, not {attempts!r}", field="max_attempts"
            )
        return {
            "handler": self.runtime.handlers.name_of(on_flush),
            "max_batch_size": max_batch_size,
            "flush_interval": interval,
            "max_attempts": attempts,
            "ordered": ordered,
            "max_batch_bytes": max_batch_bytes,
            "flush_after_idle": idle,
        }


def first_timer(config: dict[str, Any]) -> float | None:
    """When a new batch's flush task first fires, in seconds from its creation: after its
    flush_interval, or its flush_after_idle when that is sooner (the task then looks at
    the last add and waits again, or flushes); None when it has neither."""
    delays = [d for d in (config["flush_interval"], config["flush_after_idle"]) if d is not None]
    return min(delays) if delays else None
