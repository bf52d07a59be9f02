"""The task queue's SQL, written once for both stores (see `batchyard.store.base`)."""

from __future__ import annotations

from batchyard.tasks import handoff, limits

# A task that waits for another (`after_key`: the flushes of an ordered base) is not due
# while that one is queued, running or dead; the claim passes over it, so it holds no worker
# thread and no attempt is counted. Both look-ups are by a unique key, written as scalar
# subqueries: PostgreSQL may run a NOT EXISTS under an OR as a hash of the whole table.
FREE_GATE = (
    " AND (t.after_key IS NULL OR ((SELECT p.id FROM batchyard_tasks p "
    "WHERE p.key = t.after_key) IS NULL AND (SELECT d.id FROM batchyard_dead_tasks d "
    "WHERE d.key = t.after_key) IS NULL))"
)
# A task of a limited handler is left to the limited claim (`limits`); a task with no
# handler matches no limit. (An anti-join against a table of a few rows: under an OR it
# would be a subquery per row, which the planner costs so high that it leaves the index.)
UNLIMITED = " AND NOT EXISTS (SELECT 1 FROM batchyard_handler_limits l WHERE l.handler = t.handler)"
ENQUEUE = (
    "INSERT INTO batchyard_tasks (kind, key, payload, state, due_at, max_attempts, "
    "after_key, handler, created_at, updated_at) "
    "SELECT :kind, t.a, t.b, 'queued', {now} + :delay, :max_attempts, t.c, "
    "CAST(:handler AS TEXT), {now}, {now} "
    # WHERE true: SQLite's parser needs it before an upsert's ON CONFLICT
    "FROM {json_pairs} t WHERE true "
    "ON CONFLICT (key) DO UPDATE SET due_at = {least}(batchyard_tasks.due_at, "
    "excluded.due_at), updated_at = excluded.updated_at "
    # (not one held ahead for a place: it is due once its lease ends, see `handoff`)
    "WHERE batchyard_tasks.state = 'queued' AND batchyard_tasks.worker_id IS NULL"
)
RETURNING = "id, kind, key, payload, attempts, max_attempts, token, last_error"


def claimable(where: str = "") -> str:
    """What the claim takes of a task `t`: due (a queued task whose time has come, or a
    running one whose lease expired), free of the task it waits for, of no limited handler
    - and `where`."""
    return f"t.due_at <= {{now}}{where}{FREE_GATE}{UNLIMITED}"


# The claim, in one statement: pick due tasks in due order, bump their fencing token and
# attempt, and set the lease. `due_at` carries the lease expiry of running tasks, so the same
# index range finds expired leases to rescue.
def _claim_sql(where: str) -> str:
    return (
        "WITH picked AS MATERIALIZED (SELECT t.id FROM batchyard_tasks t "
        f"WHERE {claimable(where)} "
        "ORDER BY t.due_at, t.id LIMIT :limit {skip_locked}) "
        "UPDATE batchyard_tasks SET state = 'running', token = token + 1, "
        "attempts = attempts + 1, worker_id = :worker_id, due_at = {now} + :lease, "
        f"updated_at = {{now}} WHERE id IN (SELECT id FROM picked) RETURNING {RETURNING}"
    )


# a key that starts with :prefix (substr, not LIKE: SQLite's LIKE ignores case, and '_' and
# '%' in an id would be wildcards)
UNDER_PREFIX = "substr(key, 1, length(:prefix)) = :prefix"
CLAIM_SQL = _claim_sql("")
# the same range, kept to one kind and one key prefix: the rest of a group
CLAIM_GROUP_SQL = _claim_sql(f" AND kind = :kind AND {UNDER_PREFIX}")
# A directed claim (`directed`) names its tasks, and takes of them only queued ones that
# wait for no other: a running one is another's (a lease that ran out is the claim's to
# rescue), an ordered successor is handed over at its predecessor's end (`handoff`).
DIRECTED = " AND t.state = 'queued' AND t.after_key IS NULL"
CLAIM_DIRECTED_SQL = _claim_sql(f" AND t.key IN {{json_text_values}}{DIRECTED}")


def directed(key: str) -> str:
    """What a directed claim takes of the task `t` whose key is the SQL `key` (the
    condition of a start sent with it, see `directed.Directed.claim`)."""
    return claimable(f" AND t.key = {key}{DIRECTED}")


CLAIM_LIMITED_SQL = limits.claim_limited_sql(FREE_GATE, RETURNING)
# when the next task can be claimed, of those that wait for no handler's room
NEXT_DUE = (
    "SELECT MIN(t.due_at) - {now} AS wait FROM batchyard_tasks t "
    f"WHERE t.parked = 0{FREE_GATE}{UNLIMITED}"
)
LIMITED_WAITS = limits.waits_sql(FREE_GATE)
HAND_OFF_NEXT = f"{handoff.HAND_OFF_NEXT} RETURNING {RETURNING}"
HAND_OFF_LIMITED = f"{handoff.HAND_OFF_LIMITED} RETURNING {RETURNING}"
CLAIM_AHEAD = f"{handoff.CLAIM_AHEAD} RETURNING {RETURNING}"
# whether anything can be claimed now (an idle poller's look, without the write lock)
ANY_DUE = f"SELECT t.id FROM batchyard_tasks t WHERE t.due_at <= {{now}}{FREE_GATE} LIMIT 1"
