"""Running a test's function in several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_together(work: Callable[[int], None], count: int) -> None:
    """Call `work(n)` in `count` threads started together (they meet at a barrier first),
    wait for all, then raise the first exception any of them raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def thread(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:  # raised below, once every thread has ended
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(n,)) for n in range(count)]
    for each in threads:
        each.start()
    for each in threads:
        each.join()
    if errors:
        raise errors[0]
