"""What a forked child must not inherit: locks another thread may hold at the fork, lanes and
queues of calls made in the parent. Objects that keep such state let it go in the child."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def forget_in_child(forget: Callable[[], None]) -> None:
    """Call the method `forget` in a forked child, for as long as its object lives."""
    method = weakref.WeakMethod(forget)
    os.register_at_fork(after_in_child=lambda: (call := method()) and call())
