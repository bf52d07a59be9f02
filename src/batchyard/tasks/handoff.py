"""Hand-offs: the end of a task gives its slot straight to the task that end makes runnable.

Two kinds of task wait for another's end: a task with `after_key` (the flush of an ordered
base's next batch) waits until the task of that key is gone, and a task of a limited
handler waits for a place under the handler's limits. Left to the claim loop, each would
wait for its next turn (a claim, the start, the wake-up of the loop), and a claim would
pass over every waiting successor of an ordered backlog. Instead:

- A task queued while the task it waits for is live or dead is **parked**: due a day
  ahead, out of the claim's range of due tasks (so no claim walks it). The end of the task
  it waits for (completion, or discard of a dead one) brings it forward in the same
  transaction (`UNPARK`): a crash leaves either both or neither. The day is a safety net
  only; the claim's own check (`sql.FREE_GATE`) still holds any task that comes due.
- The transaction that records a task's end also **claims** the task it makes runnable,
  as a claim would (state, attempt, fencing token, lease), and the worker runs it on the
  same slot at once: the next batch of the ordered base (`HAND_OFF_NEXT`), or the oldest
  due task of the same limited handler, in the place the ending task frees
  (`HAND_OFF_LIMITED`). A crash after that commit leaves a running task with a lease: it
  is rescued once the lease runs out, like any claimed task.

A limited hand-off is a swap, never a gain: it takes place only while the ending task still
holds a live lease and the handler's running tasks (the ending one among them) are within
its concurrency, so the count the limited claim keeps under the limits' locks never grows.
A handler with a rate limit is left to the limited claim, which counts its starts.

A place may also be kept across calls (`batchyard.accumulator.places`): the next task for
it is claimed *ahead* while the task holding it runs (`CLAIM_AHEAD`, on the same conditions
as a limited hand-off) - held by the worker with a token and a lease, but left `queued` and
due only when that lease ends, so that it is neither counted nor claimable - and takes the
place in the transaction that ends the one before (`TAKE_PLACE`: again a swap, only while
the ending task holds a live lease). A queued task with a worker is one held ahead; an
enqueue of its key leaves it alone.
"""

from __future__ import annotations

PARK_SECONDS = 86_400.0  # how far ahead a parked task is due: a safety net, not a timer


def _claim(state: str) -> str:
    """The claim, as `sql._claim_sql` writes it, of the tasks in `picked`, left in `state`."""
    return (
        f"UPDATE batchyard_tasks SET state = '{state}', token = token + 1, "
        "attempts = attempts + 1, worker_id = :worker_id, due_at = {now} + :lease, "
        "parked = 0, updated_at = {now} WHERE id IN (SELECT id FROM picked)"
    )


_CLAIM = _claim("running")
_UNLIMITED = "NOT EXISTS (SELECT 1 FROM batchyard_handler_limits l WHERE l.handler = t.handler)"


# The enqueue of tasks that may wait for others (`queue.TaskQueue.enqueue_many`), parking
# each whose predecessor is live or dead - or queued by the same statement. The
# predecessors' rows are locked first ({for_key_share}): a completion that deletes one
# meanwhile waits for this commit, then brings forward what it parked; one that deleted it
# before is waited for, and the task is not parked.
_PARK = (
    "t.c IS NOT NULL AND (EXISTS (SELECT 1 FROM live WHERE live.key = t.c) "
    "OR EXISTS (SELECT 1 FROM dead WHERE dead.key = t.c) "
    "OR EXISTS (SELECT 1 FROM {json_pairs} o WHERE o.a = t.c))"
)
ENQUEUE_PARKING = (
    "WITH live AS MATERIALIZED (SELECT p.key FROM batchyard_tasks p "
    "WHERE p.key IN (SELECT q.c FROM {json_pairs} q) {for_key_share}), "
    "dead AS MATERIALIZED (SELECT d.key FROM batchyard_dead_tasks d "
    "WHERE d.key IN (SELECT q.c FROM {json_pairs} q) {for_key_share}) "
    "INSERT INTO batchyard_tasks (kind, key, payload, state, due_at, max_attempts, "
    "after_key, handler, created_at, updated_at, parked) "
    f"SELECT :kind, t.a, t.b, 'queued', CASE WHEN {_PARK} THEN {{now}} + :park "
    "ELSE {now} + :delay END, :max_attempts, t.c, CAST(:handler AS TEXT), {now}, {now}, "
    f"CASE WHEN {_PARK} THEN 1 ELSE 0 END "
    # WHERE true: SQLite's parser needs it before an upsert's ON CONFLICT
    "FROM {json_pairs} t WHERE true "
    # a task queued again: parked if its predecessor is there now, else the earlier time
    "ON CONFLICT (key) DO UPDATE SET due_at = CASE WHEN excluded.parked = 1 "
    "THEN excluded.due_at ELSE {least}(batchyard_tasks.due_at, excluded.due_at) END, "
    "parked = excluded.parked, updated_at = excluded.updated_at "
    "WHERE batchyard_tasks.state = 'queued' AND batchyard_tasks.worker_id IS NULL"
)

# the tasks parked behind the task of :key, brought forward: it is gone
UNPARK = (
    "UPDATE batchyard_tasks SET due_at = {now}, parked = 0 WHERE after_key = :key AND parked = 1"
)

# The next task of an ordered chain, brought forward by the completion of :key (`UNPARK`,
# earlier in the same transaction), claimed - unless a limited handler's, which the limited
# claim counts.
HAND_OFF_NEXT = (
    "WITH picked AS MATERIALIZED (SELECT t.id FROM batchyard_tasks t "
    "WHERE t.after_key = :key AND t.state = 'queued' AND t.due_at <= {now} "
    f"AND {_UNLIMITED} {{skip_locked}}) {_CLAIM}"
)

# The oldest due task of :handler that waits for nothing but a place (its predecessor, if
# any, gone); taken only while the task :id holds its place - running with :token and a
# live lease - and only for a handler without a rate limit, within its concurrency (so a
# limit lowered meanwhile takes no more). (Sent before the write that ends :id, which it
# reads; an ordered successor it brings forward afterwards is left to the limited claim.)
_PLACE_PICKED = (
    "WITH picked AS MATERIALIZED (SELECT t.id FROM batchyard_tasks t "
    "WHERE t.due_at <= {now} AND t.handler = :handler AND t.id <> :id "
    "AND (t.after_key IS NULL OR ((SELECT p.id FROM batchyard_tasks p "
    "WHERE p.key = t.after_key) IS NULL AND (SELECT d.id FROM batchyard_dead_tasks d "
    "WHERE d.key = t.after_key) IS NULL)) "
    "ORDER BY t.due_at, t.id LIMIT 1 {skip_locked})"
)
_PLACE_HELD = (
    "AND EXISTS (SELECT 1 FROM batchyard_tasks a WHERE a.id = :id AND a.token = :token "
    "AND a.state = 'running' AND a.due_at > {now}) "
    "AND EXISTS (SELECT 1 FROM batchyard_handler_limits l WHERE l.handler = :handler "
    "AND l.rate_count IS NULL AND (l.concurrency IS NULL OR (SELECT COUNT(*) "
    "FROM batchyard_tasks r WHERE r.handler = :handler AND r.state = 'running' "
    "AND r.due_at > {now}) <= l.concurrency))"
)
# claimed in the place that the ending task :id frees
HAND_OFF_LIMITED = f"{_PLACE_PICKED} {_CLAIM} {_PLACE_HELD}"

# Claimed ahead for the place that the running task :id holds: the claim's token, attempt,
# worker and lease, but still queued - not running, so not counted against the limit while
# the call before it holds the place - and due when its lease ends, so out of every claim's
# range while it is held (the heartbeat keeps the lease) and rescued like any claimed task
# once it is not. A queued task with a worker is one held ahead: nothing else sets one.
CLAIM_AHEAD = f"{_PLACE_PICKED} {_claim('queued')} {_PLACE_HELD}"
# The task claimed ahead takes the place, in the transaction that ends the task :holder
# before it - while that one holds it, with :holder_token and a live lease (sent before the
# write that ends it, which it reads): the place changes hands, the count stays the same.
TAKE_PLACE = (
    "UPDATE batchyard_tasks SET state = 'running', due_at = {now} + :lease, "
    "updated_at = {now} WHERE id = :id AND token = :token AND state = 'queued' "
    "AND worker_id = :worker_id AND EXISTS (SELECT 1 FROM batchyard_tasks a "
    "WHERE a.id = :holder AND a.token = :holder_token AND a.state = 'running' "
    "AND a.due_at > {now}) RETURNING id"
)

# Whether other workers should look for work once the task's end commits (after the
# hand-off): the ending task's successor waits unclaimed, or its handler has a place and a
# due task (a hand-off that took the place leaves none).
NEXT_WAITS = (
    "EXISTS (SELECT 1 FROM batchyard_tasks w WHERE w.after_key = :key AND w.state = 'queued')"
)
PLACE_WAITS = (
    "EXISTS (SELECT 1 FROM batchyard_tasks w WHERE w.handler = :handler "
    "AND w.state = 'queued' AND w.due_at <= {now}) AND NOT EXISTS (SELECT 1 "
    "FROM batchyard_handler_limits l WHERE l.handler = :handler AND (SELECT COUNT(*) "
    "FROM batchyard_tasks r WHERE r.handler = :handler AND r.state = 'running' "
    "AND r.due_at > {now}) >= l.concurrency)"
)
