"""A TCP proxy in front of PostgreSQL that delays each direction and counts round trips.

    python bench/_netproxy.py [--delays 0,0.25,0.5] [--samples 2000]   # self-check

The benches start it themselves::

    with DelayProxy(delay_ms=0.5) as proxy:      # 0.5 ms each way: a 1 ms round trip
        url = proxy.url("mydb")                  # postgresql://...@127.0.0.1:<port>/mydb
        proxy.reset()
        ...                                      # talk to the database through `url`
        print(proxy.round_trips)                 # request/response turns since the reset
        proxy.delay_ms = 0.25                    # takes effect for the next chunk

A *round trip* is a turn of the traffic on one connection: bytes travelling server -> client
right after bytes travelled client -> server (a request, or a pipelined burst of them,
followed by its answer). What a client pipelines costs one turn, as it costs one network
round trip; a BEGIN sent and waited for costs one of its own.

The proxy runs in a child process, so that its threads do not take the GIL from the
client being measured (and the client's threads not from it). Each chunk it reads is
sent on at its arrival time plus the delay - not after the previous chunk's sleep - so
back-to-back chunks overlap their delays as they would on a wire, and pipelining is
rewarded. Sleeps end ~0.2 ms early and the rest is waited out on the clock, which keeps
the delay accurate to a few tens of microseconds on an idle machine (figures in
bench/README.md; the self-check prints them).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import math
import multiprocessing
import select
import socket
import statistics
import time
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from types import TracebackType
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from _harness import PG_ADMIN_URL

# The last part of a wait is polled: a sleep alone overshoots by 50-100 us.
SPIN_S = 0.0002
CHUNK = 256 * 1024
# Stop reading a source while this much is waiting to be delivered from it.
MAX_BACKLOG = 8 * 1024 * 1024


class DelayProxy:
    """A delaying, round-trip-counting proxy to `target`, in a child process."""

    def __init__(
        self,
        delay_ms: float = 0.0,
        target: tuple[str, int] | None = None,
        trace: str | None = None,
    ) -> None:
        """`trace`: a file to write a line per round trip to - the connection's number and
        what the client sent in that turn (message types, the start of each statement)."""
        admin = urlsplit(PG_ADMIN_URL)
        self.target = target or (admin.hostname or "127.0.0.1", admin.port or 5432)
        ctx = multiprocessing.get_context("spawn")
        self._delay: Synchronized[float] = ctx.Value("d", delay_ms / 1000.0)
        self._turns: Synchronized[int] = ctx.Value("q", 0)
        self._connections: Synchronized[int] = ctx.Value("q", 0)
        ours, theirs = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve,
            args=(self.target, self._delay, self._turns, self._connections, theirs, trace),
            daemon=True,
        )
        self._process.start()
        if not ours.poll(30):
            self._process.kill()
            raise RuntimeError("the proxy did not start")
        self.port: int = ours.recv()
        ours.close()

    @property
    def delay_ms(self) -> float:
        """The one-way delay in each direction, in milliseconds."""
        return self._delay.value * 1000.0

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        self._delay.value = value / 1000.0

    @property
    def round_trips(self) -> int:
        """Request/response turns counted over all connections since the last reset."""
        return self._turns.value

    @property
    def connections(self) -> int:
        """Connections accepted since the last reset."""
        return self._connections.value

    def reset(self) -> None:
        with self._turns.get_lock():
            self._turns.value = 0
        with self._connections.get_lock():
            self._connections.value = 0

    def url(self, dbname: str = "postgres") -> str:
        """A postgresql:// URL for `dbname` through the proxy (user as in the admin URL)."""
        return self.via(urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path=f"/{dbname}")))

    def via(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(5)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


# --- the child process -------------------------------------------------------------------


def _serve(
    target: tuple[str, int],
    delay: Synchronized[float],
    turns: Synchronized[int],
    connections: Synchronized[int],
    ready: Connection,
    trace_path: str | None,
) -> None:
    """One thread, one select() loop: no hand-over between threads on the path of a chunk
    (threads cost ~0.2 ms a round trip here), and select() takes microsecond timeouts
    where epoll rounds up to milliseconds."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    listener.setblocking(False)
    ready.send(listener.getsockname()[1])
    ready.close()
    directions: dict[socket.socket, _Direction] = {}
    trace = open(trace_path, "a", buffering=1) if trace_path else None  # noqa: SIM115
    while True:
        now = time.perf_counter()
        next_due = math.inf
        for way in list(directions.values()):
            way.release(now)
            if way.pending:
                next_due = min(next_due, way.pending[0][0])
        readers = [
            listener,
            *(s for s, w in directions.items() if w.open and w.backlog() < MAX_BACKLOG),
        ]
        writers = [w.sink for w in directions.values() if w.out]
        # select() ends ~0.2 ms early, then polls (timeout 0) until the chunk is due: a
        # sleep's overshoot is taken out, and what arrives meanwhile is stamped at once
        timeout = None if next_due == math.inf else max(0.0, next_due - now - SPIN_S)
        readable, writable, _ = select.select(readers, writers, [], timeout)
        for sock in writable:
            way = next((w for w in directions.values() if w.sink is sock), None)
            if way is not None:
                way.write()
        for sock in readable:
            if sock is listener:
                _accept(listener, target, directions, _Link(delay, turns, trace), connections)
            elif sock in directions:
                directions[sock].read()
        for sock in [s for s, w in directions.items() if w.done()]:
            directions.pop(sock).close()


def _accept(
    listener: socket.socket,
    target: tuple[str, int],
    directions: dict[socket.socket, _Direction],
    link: _Link,
    connections: Synchronized[int],
) -> None:
    try:
        client, _ = listener.accept()
        server = socket.create_connection(target)
    except OSError:
        return
    with connections.get_lock():
        connections.value += 1
    link.number = next(_NUMBERS)
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
    directions[client] = _Direction(link, client, server, upstream=True)
    directions[server] = _Direction(link, server, client, upstream=False)
    link.ways = [directions[client], directions[server]]


_NUMBERS = itertools.count(1)  # connections in the trace, never reset


class _Link:
    """What the two directions of one connection share: the turn detector."""

    def __init__(
        self, delay: Synchronized[float], turns: Synchronized[int], trace: TextIO | None
    ) -> None:
        self.delay, self.turns, self.trace = delay, turns, trace
        self.last_upstream = False  # did the last chunk travel client -> server?
        self.ways: list[_Direction] = []
        self.number = 0
        self.sent: list[str] = []  # traced: what the client sent since the last turn

    def arrived(self, upstream: bool, data: bytes) -> None:
        if self.last_upstream and not upstream:
            with self.turns.get_lock():
                self.turns.value += 1
            if self.trace:
                self.trace.write(f"{self.number}\t{' '.join(self.sent)}\n")
                self.sent.clear()
        elif upstream and self.trace:
            self.sent.extend(messages(data))
        self.last_upstream = upstream


def messages(data: bytes) -> list[str]:
    """The frontend messages that start in `data`, for a trace: a type letter, with the
    start of the statement for Query and Parse (a chunk may end inside a message)."""
    found, at = [], 0
    while at + 5 <= len(data):
        kind = chr(data[at])
        length = int.from_bytes(data[at + 1 : at + 5], "big")
        if not kind.isalpha() or length < 4:
            found.append("<startup>")
            break
        body = data[at + 5 : at + 1 + length]
        if kind == "Q":
            kind += ":" + body.split(b"\0")[0][:40].decode(errors="replace")
        elif kind == "P":
            parts = body.split(b"\0")  # statement name, query, ...
            kind += ":" + (parts[1] if len(parts) > 1 else b"")[:40].decode(errors="replace")
        found.append(kind.replace(" ", "_").replace("\n", "_"))
        at += 1 + length
    return found


class _Direction:
    """Bytes from `source` to `sink`: each chunk is due at its arrival plus the delay."""

    def __init__(
        self, link: _Link, source: socket.socket, sink: socket.socket, upstream: bool
    ) -> None:
        self.link, self.source, self.sink, self.upstream = link, source, sink, upstream
        self.pending: collections.deque[tuple[float, bytes]] = collections.deque()
        self.out = bytearray()
        self.open = True

    def backlog(self) -> int:
        return len(self.out) + sum(len(data) for _, data in self.pending)

    def read(self) -> None:
        try:
            data = self.source.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        arrival = time.perf_counter()
        if not data:
            self.open = False
            for way in self.link.ways:  # the peer is gone: what is left goes now
                way.open = False
            return
        self.link.arrived(self.upstream, data)
        due = arrival + self.link.delay.value
        if self.pending and due < self.pending[-1][0]:
            due = self.pending[-1][0]  # the delay was lowered: no overtaking
        self.pending.append((due, data))

    def release(self, now: float) -> None:
        """Move the chunks that are due to the output (all of them once the peer is gone)."""
        while self.pending and (self.pending[0][0] <= now or not self.open):
            self.out += self.pending.popleft()[1]
        if self.out:
            self.write()

    def write(self) -> None:
        try:
            sent = self.sink.send(self.out)
        except BlockingIOError:
            return
        except OSError:
            self.out.clear()
            self.pending.clear()
            for way in self.link.ways:
                way.open = False
            return
        del self.out[:sent]

    def done(self) -> bool:
        return all(not w.open and not w.pending and not w.out for w in self.link.ways)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.source.close()


# --- self-check ----------------------------------------------------------------------------


def select1_ms(url: str, samples: int) -> dict[str, float]:
    """Median and p99 of a `SELECT 1` round trip on one connection, in milliseconds."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(50):
            conn.execute("SELECT 1").fetchone()
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return {"p50": statistics.median(times), "p99": times[int(len(times) * 0.99) - 1]}


def self_check(delays_ms: list[float], samples: int) -> list[tuple[str, dict[str, float], float]]:
    """SELECT 1 direct, then through the proxy at each one-way delay; with turns per query."""
    rows = [("direct", select1_ms(PG_ADMIN_URL, samples), float("nan"))]
    with DelayProxy() as proxy:
        for delay in delays_ms:
            proxy.delay_ms = delay
            proxy.reset()
            timing = select1_ms(proxy.url(), samples)
            # 50 warm-up queries + connection set-up are in the count: report per query
            rows.append(
                (f"proxy, {delay:g} ms each way", timing, proxy.round_trips / (samples + 50))
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="0,0.25,0.5", help="one-way delays, ms")
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    print("\n| SELECT 1 round trip | p50 ms | p99 ms | added p50 | turns/query |")
    print("|---|---|---|---|---|")
    rows = self_check([float(d) for d in args.delays.split(",")], args.samples)
    direct = rows[0][1]["p50"]
    for label, timing, turns in rows:
        print(
            f"| {label} | {timing['p50']:.3f} | {timing['p99']:.3f} | "
            f"{timing['p50'] - direct:+.3f} | {'-' if math.isnan(turns) else f'{turns:.2f}'} |"
        )


if __name__ == "__main__":
    main()
