"""Real faults for tests: a TCP proxy in front of PostgreSQL that can drop every connection
and refuse new ones, as a server restart or a failover does, then heal; and that can stand
for a slow network, counting the round trips that cross it.

The proxy forwards bytes between a local port and the real server, a thread per direction.
`outage()` closes its listening socket (new connections are refused: nothing listens on the
port) and cuts every open connection (both ends see the connection end, as when a server
goes away); `heal()` listens on the same port again.

With a `delay`, what the client sends reaches the server that much later, and
`round_trips` counts the turns of the traffic: bytes from the server right after bytes from
the client (a request, or a pipelined burst of them, then its answer). A client that sends
its burst within the delay - every burst does, the delay being long - gets its answer in one
turn, so the count is the number of times it waited for the server, whatever the load.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class FaultyProxy:
    def __init__(self, target_url: str, *, delay: float = 0.0) -> None:
        """`delay`: seconds added to the way from the client to the server."""
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.delay = delay
        self.round_trips = 0  # turns of the traffic, over all connections (see above)
        self._url = parts
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    @property
    def url(self) -> str:
        """The target URL, through the proxy."""
        netloc = self._url.netloc.rsplit("@", 1)
        user = f"{netloc[0]}@" if len(netloc) == 2 else ""
        return urlunsplit(self._url._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the outage
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            last_up = [False]  # the connection's last bytes came from the client
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                args = (src, dst, last_up, up)
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, last_up: list[bool], up: bool) -> None:
        late: queue.Queue[tuple[float, bytes] | None] | None = None
        if up and self.delay:
            late = queue.Queue()
            threading.Thread(target=self._forward_late, args=(late, dst), daemon=True).start()
        try:
            while data := src.recv(65536):
                with self._lock:  # a turn is counted where the bytes arrive, in order
                    if last_up[0] and not up:
                        self.round_trips += 1
                    last_up[0] = up
                if late is None:
                    dst.sendall(data)
                else:  # each chunk due at its arrival plus the delay, as on a wire
                    late.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            if late is not None:
                late.put(None)
            self._close(src)
            self._close(dst)

    @staticmethod
    def _forward_late(late: queue.Queue[tuple[float, bytes] | None], dst: socket.socket) -> None:
        while (chunk := late.get()) is not None:
            due, data = chunk
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                dst.sendall(data)
            except OSError:
                return

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def drop(self) -> None:
        """Cut every open connection."""
        with self._lock:
            socks = list(self._open)
        for sock in socks:
            self._close(sock)

    def outage(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shut down first: a close alone does not wake the thread blocked in accept(),
            # which would go on accepting on the closed socket
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.drop()

    def heal(self) -> None:
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.outage()
