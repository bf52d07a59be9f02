"""RetryPolicy: when to try again, or that it is time for the dead letters. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in attempts and in delay.

    Attempt ``n`` (1-based) that fails is retried after ``base_delay * factor**(n-1)`` seconds,
    capped at ``max_delay``, spread by +/- ``jitter`` (a fraction) so that a crowd of failures
    does not retry in lockstep. After ``max_attempts`` attempts the work is dead-lettered.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("delays must be >= 0 and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def next_delay(
        self, attempt: int, rng: random.Random | None = None, *, max_attempts: int | None = None
    ) -> float | None:
        """Seconds to wait after failed attempt ``attempt``, or None when it was the last.
        ``max_attempts`` overrides the policy's own for work that carries its own bound (a
        batch's or a task's)."""
        if attempt >= (self.max_attempts if max_attempts is None else max_attempts):
            return None
        delay = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        if self.jitter:
            spread = (rng or random).uniform(-self.jitter, self.jitter)
            delay = min(self.max_delay, delay * (1 + spread))
        return max(0.0, delay)
