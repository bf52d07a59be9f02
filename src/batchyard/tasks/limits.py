"""Handler limits: how many tasks of one handler run at once, and how many start in a
period, across every worker process and machine that shares the store.

A limit lives in the store (`batchyard_handler_limits`, one row per handler name), put
there by each worker that registers the handler with limits. Tasks that carry a handler
name (flushes carry their batch's) are left alone by the ordinary claim while the handler
has a limit; they are claimed here instead, only as far as the handler has room: fewer
running tasks with a live lease than its concurrency (an expired lease frees its place),
fewer starts within the last `rate_seconds` than `rate_count`. A task that has no room
stays queued and due: it holds no worker thread and its attempt is not counted.

Room is counted and taken under the handler rows' locks, taken by a statement before the
count, so that every limited claim of the fleet counts what the one before it committed
(on PostgreSQL a statement that waits for a lock still reads with the snapshot it took
before the wait, so the lock cannot be taken by the counting statement itself); SQLite has
one writer, which does the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from batchyard.handlers import HandlerLimit
from batchyard.store import Store, Tx
from batchyard.store.base import Row

# no limit, as a number the room can be compared with
_NO_LIMIT = "1000000000"

# the room of every limited handler: places to run, and starts left in the rate window
ROOM = (
    "SELECT l.handler, l.concurrency, l.rate_count, l.rate_seconds, "
    "(SELECT COUNT(*) FROM batchyard_tasks r WHERE r.handler = l.handler "
    "AND r.state = 'running' AND r.due_at > {now}) AS in_flight, "
    "(SELECT COUNT(*) FROM batchyard_handler_starts s WHERE s.handler = l.handler "
    "AND s.started_at > {now} - l.rate_seconds) AS recent_starts "
    "FROM batchyard_handler_limits l"
)
_FREE = (
    f"{{least}}(COALESCE(r.concurrency - r.in_flight, {_NO_LIMIT}), "
    f"COALESCE(r.rate_count - r.recent_starts, {_NO_LIMIT}))"
)


@dataclass(frozen=True)
class HandlerLoad:
    """A limited handler as the store sees it now: its limits, the calls in flight (tasks
    running with a live lease), the starts within its rate window, and the tasks that are
    due but wait for room."""

    handler: str
    concurrency: int | None
    rate_count: int | None
    rate_seconds: float | None
    in_flight: int
    recent_starts: int
    waiting: int


def claim_limited_sql(free_gate: str, returning: str) -> str:
    """The claim of limited handlers' due tasks, each handler up to its room, oldest first;
    `free_gate` keeps out tasks that wait for another (see `queue`)."""
    return (
        # the room once per handler, not once per task (a CTE inlined would count per row)
        f"WITH room AS MATERIALIZED ({ROOM}), "
        "ranked AS (SELECT t.id, t.due_at, row_number() OVER "
        f"(PARTITION BY t.handler ORDER BY t.due_at, t.id) AS n, {_FREE} AS free "
        "FROM batchyard_tasks t JOIN room r ON r.handler = t.handler "
        f"WHERE t.due_at <= {{now}}{free_gate}), "
        "picked AS (SELECT id FROM ranked WHERE n <= free ORDER BY due_at, id LIMIT :limit) "
        "UPDATE batchyard_tasks SET state = 'running', token = token + 1, "
        "attempts = attempts + 1, worker_id = :worker_id, due_at = {now} + :lease, "
        "updated_at = {now} WHERE id IN (SELECT id FROM picked) AND due_at <= {now} "
        f"RETURNING {returning}"
    )


# every limit row locked, in one order (no deadlock between two claimers), before counting
LOCK_LIMITS = "SELECT handler FROM batchyard_handler_limits ORDER BY handler {for_update}"
# starts that left every rate window, of tasks no longer running under that claim
PRUNE_STARTS = (
    "DELETE FROM batchyard_handler_starts WHERE started_at <= {now} - COALESCE("
    "(SELECT l.rate_seconds FROM batchyard_handler_limits l "
    "WHERE l.handler = batchyard_handler_starts.handler), 0) "
    "AND NOT EXISTS (SELECT 1 FROM batchyard_tasks t "
    "WHERE t.id = batchyard_handler_starts.task_id "
    "AND t.token = batchyard_handler_starts.token AND t.state = 'running')"
)
# a start for each running claim of a rate-limited handler that has none yet: the claims
# just made (a task and its token are one claim)
RECORD_STARTS = (
    "INSERT INTO batchyard_handler_starts (task_id, token, handler, started_at) "
    "SELECT t.id, t.token, t.handler, {now} FROM batchyard_tasks t "
    "JOIN batchyard_handler_limits l ON l.handler = t.handler "
    "WHERE t.state = 'running' AND l.rate_count IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM batchyard_handler_starts s WHERE s.task_id = t.id AND s.token = t.token) "
    "ON CONFLICT DO NOTHING"
)


def publish(store: Store, limits: Mapping[str, HandlerLimit | None], now: float | None) -> bool:
    """Write the limits of the handlers this process registered (None: none, which lifts a
    limit another process put there); whether any handler of the store is limited now."""
    with store.transaction(now) as tx:
        for name, limit in sorted(limits.items()):
            if limit is None:
                tx.execute(
                    "DELETE FROM batchyard_handler_limits WHERE handler = :handler",
                    {"handler": name},
                )
                continue
            tx.execute(
                "INSERT INTO batchyard_handler_limits "
                "(handler, concurrency, rate_count, rate_seconds, updated_at) "
                "VALUES (:handler, :concurrency, :rate_count, :rate_seconds, {now}) "
                "ON CONFLICT (handler) DO UPDATE SET concurrency = excluded.concurrency, "
                "rate_count = excluded.rate_count, rate_seconds = excluded.rate_seconds, "
                "updated_at = excluded.updated_at",
                {
                    "handler": name,
                    "concurrency": limit.concurrency,
                    "rate_count": limit.rate_count,
                    "rate_seconds": limit.rate_seconds,
                },
            )
        return tx.one("SELECT 1 AS x FROM batchyard_handler_limits LIMIT 1") is not None


def loads(tx: Tx, free_gate: str) -> list[HandlerLoad]:
    """Every limited handler's load (`free_gate` as in `claim_limited_sql`)."""
    rows: list[Row] = tx.all(
        f"SELECT r.*, (SELECT COUNT(*) FROM batchyard_tasks t WHERE t.handler = r.handler "
        f"AND t.due_at <= {{now}}{free_gate}) AS waiting FROM ({ROOM}) r ORDER BY r.handler"
    )
    return [
        HandlerLoad(
            handler=row["handler"],
            concurrency=row["concurrency"],
            rate_count=row["rate_count"],
            rate_seconds=None if row["rate_seconds"] is None else float(row["rate_seconds"]),
            in_flight=int(row["in_flight"]),
            recent_starts=int(row["recent_starts"]),
            waiting=int(row["waiting"]),
        )
        for row in rows
    ]


def waits_sql(free_gate: str) -> str:
    """For each limited handler: its room, when its first task is due, when a lease ends
    and when a start leaves the window, in seconds from now (see `waits`)."""
    return (
        "SELECT r.concurrency - r.in_flight AS places, r.rate_count - r.recent_starts AS starts, "
        "(SELECT MIN(t.due_at) FROM batchyard_tasks t WHERE t.handler = r.handler "
        f"AND (t.state = 'queued' OR t.due_at <= {{now}}){free_gate}) - {{now}} AS due, "
        "(SELECT MIN(t.due_at) FROM batchyard_tasks t WHERE t.handler = r.handler "
        "AND t.state = 'running' AND t.due_at > {now}) - {now} AS lease_ends, "
        "(SELECT MIN(s.started_at) FROM batchyard_handler_starts s "
        "WHERE s.handler = r.handler AND s.started_at > {now} - r.rate_seconds) "
        f"+ r.rate_seconds - {{now}} AS window_moves FROM ({ROOM}) r"
    )


def waits(rows: list[Row]) -> list[float]:
    """For each limited handler with tasks to run (rows of `waits_sql`), seconds until the
    first may be claimed: when it is due, and the handler has room (a running task's lease
    ends - or it finishes, which wakes the workers - and a start leaves the window)."""
    found = []
    for row in rows:
        if row["due"] is None:
            continue
        wait = float(row["due"])
        if row["places"] is not None and row["places"] <= 0 and row["lease_ends"] is not None:
            wait = max(wait, float(row["lease_ends"]))
        if row["starts"] is not None and row["starts"] <= 0 and row["window_moves"] is not None:
            wait = max(wait, float(row["window_moves"]))
        found.append(wait)
    return found
