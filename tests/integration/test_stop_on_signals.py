"""A worker's graceful stop on SIGTERM, wherever the signal finds its main thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# The main thread holds a lock that `stop` takes when the signal arrives - as a worker's
# main thread holds an event's lock inside `Event.wait` while `stop` sets that event. The
# handler runs in the main thread at that point: had it called `stop` itself, it would wait
# for its own lock for ever.
CHILD = textwrap.dedent(
    """
    import os, signal, threading, time
    from batchyard.supervision import stop_on_signals

    lock, stopping = threading.Lock(), threading.Event()

    def stop():
        with lock:
            stopping.set()

    restore = stop_on_signals(stop, stopping)
    with lock:
        os.kill(os.getpid(), signal.SIGTERM)  # handled here, in this thread, lock held
        time.sleep(0.2)
    assert stopping.wait(10), "not stopped"
    restore()
    print("stopped")
    """
)


def test_a_signal_stops_gracefully_even_when_the_main_thread_holds_what_stop_takes():
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr


def test_the_handlers_put_back_leave_no_thread_behind():
    child = textwrap.dedent(
        """
        import signal, threading
        from batchyard.supervision import stop_on_signals

        before = threading.active_count()
        restore = stop_on_signals(lambda: None, threading.Event())
        restore()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert threading.active_count() == before, threading.enumerate()
        print("clean")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=30, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "clean"), done.stderr
