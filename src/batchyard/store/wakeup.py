"""The wake-up of a process's idle workers: a flag that can also be waited on with a socket.

A commit that queues work, a task's end that frees a thread and a worker's stop set it. A
worker on SQLite waits on the flag itself; on PostgreSQL it waits on its LISTEN connection,
for other processes' NOTIFYs, and on the flag at once (`fileno`: readable once set), so that
what this process does wakes it without a round trip - and a stop is not kept waiting for
the poll interval.
"""

from __future__ import annotations

import contextlib
import os
import threading


class Wakeup:
    """A `threading.Event` with a pipe beside it, made on first use in each process (a
    pipe must not cross fork(): a child's wake-up would end its parent's wait)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._pipe: tuple[int, int] | None = None
        self._pid = 0

    def set(self) -> None:
        self._event.set()
        if self._pipe is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):  # full (it already wakes the waiter)
                os.write(self._pipe[1], b"\0")

    def clear(self) -> None:
        self._event.clear()
        if self._pipe is not None and self._pid == os.getpid():
            try:
                while os.read(self._pipe[0], 4096):
                    pass
            except OSError:  # empty
                pass

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def fileno(self) -> int:
        """A descriptor that is readable while the flag is set (until `clear`)."""
        if self._pipe is None or self._pid != os.getpid():
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            self._pipe, self._pid = (read, write), os.getpid()
            if self._event.is_set():
                os.write(write, b"\0")
        return self._pipe[0]

    def close(self) -> None:
        if self._pipe is not None and self._pid == os.getpid():
            for fd in self._pipe:
                os.close(fd)
        self._pipe = None
