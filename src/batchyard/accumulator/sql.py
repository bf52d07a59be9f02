"""The accumulator's SQL, written once for both stores (see `batchyard.store.base`)."""

from __future__ import annotations

from batchyard.accumulator.records import ACTIVE_SQL, FINISHED_SQL
from batchyard.tasks import sql as tasks_sql

# Every statement that writes items also writes `:trace`, the trace context of the add
# (`batchyard.tracing`; NULL when untraced), which the flush that delivers them links to.
#
# Items and item failures are keyed by the batch's number, `batch_no` (a short integer key,
# faster to insert and find than the text id); the batch row maps one to the other.
#
# An add of many items writes them in one statement however many batches they fill: the
# first `room` after the open batch's `count` items, the rest `size` to a batch over the new
# batches of sequences `first`, `first + 1`, ... Their JSON texts travel as one JSON array
# of strings, so no Python object is made per row (an executemany of per-row dicts cost more
# than the insert), and the statements of an add do not grow with its size (each statement
# is a round trip on PostgreSQL, and on SQLite a wait for the GIL while other threads run).
# The new batches' numbers are found here, by their sequences, rather than read back by the
# adder: the add's statements then go without waiting for one another (one round trip on
# PostgreSQL, see `adding.Adder._fill`). One statement's batches are numbered in sequence
# order (see `INSERT_BATCHES`), so an item's number is the first plus its batch's index -
# unless another transaction took a number in between (PostgreSQL only): then each item's
# batch is looked up by its sequence.
INSERT_ITEMS = (
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at, trace_context) "
    "SELECT CASE WHEN j.idx < :room THEN :open_no "
    "WHEN n.consecutive = 1 THEN n.lo + (j.idx - :room) / :size "
    "ELSE (SELECT b.batch_no FROM batchyard_batches b WHERE b.base_id = :base "
    "AND b.sequence = :first + (j.idx - :room) / :size) END, "
    "CASE WHEN j.idx < :room THEN :count + j.idx ELSE (j.idx - :room) % :size END, "
    # no ORDER BY: each row's place comes from its index, and SQLite would sort them first
    "j.value, {now}, :trace FROM {json_text_rows} j, "
    "(SELECT MIN(batch_no) AS lo, CASE WHEN MAX(batch_no) - MIN(batch_no) = COUNT(*) - 1 "
    "THEN 1 ELSE 0 END AS consecutive FROM batchyard_batches "
    "WHERE base_id = :base AND sequence >= :first) n"
)
# New batches of a base, sequences from :first up, one per idempotency key in :values; the
# first :full of them are born closed for their size (a base has one open batch at most).
# Their numbers are given in the order of the rows (ORDER BY), so one statement's are
# consecutive unless another transaction took a number in between (PostgreSQL only).
INSERT_BATCHES = (
    "INSERT INTO batchyard_batches (batch_id, base_id, sequence, status, flush_reason, "
    "flush_requested_at, handler, max_batch_size, flush_interval, max_attempts, ordered, "
    "idempotency_key, created_at, updated_at, max_batch_bytes, flush_after_idle) "
    "SELECT :base || '::' || CAST(:first + j.idx AS TEXT), :base, :first + j.idx, "
    "CASE WHEN j.idx < :full THEN 'flushing' ELSE 'accumulating' END, "
    "CASE WHEN j.idx < :full THEN 'size' END, CASE WHEN j.idx < :full THEN {now} END, "
    ":handler, :max_batch_size, CAST(:flush_interval AS DOUBLE PRECISION), :max_attempts, "
    "CAST(:ordered AS INTEGER), "
    "j.value, {now}, {now}, CAST(:max_batch_bytes AS BIGINT), "
    "CAST(:flush_after_idle AS DOUBLE PRECISION) FROM {json_text_rows} j ORDER BY j.idx"
)
# Items at a batch's positions from :position on, in a batch with a byte limit (:sized = 1)
# or without: each item's `byte_end` is where it ends in its batch's bytes, :bytes being
# where the item before it ends (see `APPEND_SIZED_AT`). An add into batches with byte
# limits is placed by the adder, a statement per batch it reaches (see `sizing`). The batch
# is found by its base and :sequence (a new batch's number is not read back, see
# `INSERT_ITEMS`).
INSERT_ITEMS_AT = (
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at, byte_end, "
    "trace_context) "
    "SELECT (SELECT b.batch_no FROM batchyard_batches b WHERE b.base_id = :base "
    "AND b.sequence = :sequence), :position + j.idx, j.value, {now}, "
    "CASE WHEN :sized = 1 THEN :bytes + SUM(j.octets) OVER (ORDER BY j.idx) END, :trace "
    "FROM {json_text_rows_sized} j"
)
# A batch's number, by its base and sequence: that of the batch an add leaves open, which
# the adder remembers once the add is committed (see `adding._OpenBatch`).
BATCH_NUMBER = (
    "SELECT batch_no FROM batchyard_batches WHERE base_id = :base AND sequence = :sequence"
)
# The base's next sequence moved past an add's new batches. The add holds the base's lock
# and read the sequence with it (`LOCK_BASE`), so nothing is read back.
ADVANCE_SEQUENCE = (
    "UPDATE batchyard_batch_bases SET next_sequence = next_sequence + :count WHERE base_id = :base"
)
CLOSE_FULL = (
    "UPDATE batchyard_batches SET status = 'flushing', flush_reason = 'size', "
    "flush_requested_at = {now}, updated_at = {now} WHERE batch_no = :batch_no"
)
# The base's row is the lock every transaction that adds to a base takes first, before the
# open batch's row: they queue there, and batch creation needs no lock of its own. (Taking
# the batch's row first and the base's to open the next batch deadlocked against an adder
# that held the base's row and waited for the batch's.) One-statement appends take only the
# batch's row, for the length of the statement. The row is made before the transaction
# (`Accumulator.ensure_bases`), so that the lock is there to take.
INSERT_BASE = (
    "INSERT INTO batchyard_batch_bases (base_id) VALUES (:base) ON CONFLICT (base_id) DO NOTHING"
)
# The lock also reads the base's next sequence, the latest committed (a FOR UPDATE that
# waited reads the row its holder left), unchanged by others until the commit (on SQLite the
# transaction holds the one writer): the sequences of the batches an add opens are known
# from it, and it is the only read an add that opens or fills batches waits for.
LOCK_BASE = "SELECT next_sequence FROM batchyard_batch_bases WHERE base_id = :base {for_update}"
LOCK_OPEN_BATCH = (
    "SELECT batch_id, batch_no, sequence, max_batch_size, max_attempts, handler, ordered, "
    "max_batch_bytes "
    "FROM batchyard_batches "
    "WHERE base_id = :base AND status = 'accumulating' {for_update}"
)


def _last_item(column: str, batch_no: str) -> str:
    """`column` of the last item of the batch numbered `batch_no` (SQL), found by its index
    (an item's byte_end and added_at grow with its position)."""
    return (
        f"(SELECT l.{column} FROM batchyard_items l WHERE l.batch_no = {batch_no} "
        "ORDER BY l.position DESC LIMIT 1)"
    )


# The open batch's count, and its bytes (0 without a byte limit)
COUNT_OPEN_BATCH = (
    "WITH o AS (SELECT batch_no FROM batchyard_batches "
    "WHERE base_id = :base AND status = 'accumulating') "
    "SELECT COALESCE(MAX(i.position), -1) + 1 AS n, "
    f"COALESCE({_last_item('byte_end', '(SELECT batch_no FROM o)')}, 0) AS bytes "
    "FROM batchyard_items i WHERE i.batch_no = (SELECT batch_no FROM o)"
)
# One item into the open batch, in one statement: the common add (one item that does not
# fill its batch). The position is counted by the statement itself, and an item that leaves
# room behind it needs nothing else written, so the statement is a transaction of its own:
# no BEGIN or COMMIT to send (one round trip on PostgreSQL). On PostgreSQL a statement that
# waited for the row lock still counts with the snapshot it took before waiting: its
# position then collides with what the previous holder committed, ON CONFLICT makes that
# "no row", and the caller falls back to the lock-then-count path below (still holding the
# lock, so that count is fresh). No row also means no open batch, or an item that fills it:
# the fallback creates and closes them. In a batch with a byte limit the item's byte_end is
# read the same way, from the last item, and the item must leave room in bytes as well
# (:bytes is its size): a byte_end read from a stale snapshot comes with a stale position.
APPEND_ITEM = (
    "WITH open AS (SELECT batch_no, max_batch_size, max_batch_bytes FROM batchyard_batches "
    "WHERE base_id = :base AND status = 'accumulating' {for_update}), "
    "next AS (SELECT o.batch_no, o.max_batch_size, o.max_batch_bytes, "
    "(SELECT COALESCE(MAX(i.position), -1) + 1 "
    "FROM batchyard_items i WHERE i.batch_no = o.batch_no) AS position, "
    "CASE WHEN o.max_batch_bytes IS NOT NULL THEN "
    f"COALESCE({_last_item('byte_end', 'o.batch_no')}, 0) + :bytes END AS byte_end "
    "FROM open o) "
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at, byte_end, "
    "trace_context) "
    "SELECT batch_no, position, :payload, {now}, byte_end, :trace FROM next "
    "WHERE position + 1 < max_batch_size AND (byte_end IS NULL OR byte_end < max_batch_bytes) "
    "ON CONFLICT DO NOTHING RETURNING batch_no, position, byte_end, "
    "(SELECT b.batch_id FROM batchyard_batches b "
    "WHERE b.batch_no = batchyard_items.batch_no) AS batch_id, "
    "(SELECT b.max_batch_size FROM batchyard_batches b "
    "WHERE b.batch_no = batchyard_items.batch_no) AS max_batch_size, "
    "(SELECT b.max_batch_bytes FROM batchyard_batches b "
    "WHERE b.batch_no = batchyard_items.batch_no) AS max_batch_bytes"
)
# The same add at a position remembered from this process's last add to the batch, without
# counting. A remembered position may be stale, never wrong by being too high: an open
# batch's positions are 0..n-1 (items are appended, and removed only once the batch is
# closed), a batch number is never given twice, and a position is remembered only from a
# committed add. So the item lands exactly when the batch is still open and the position is
# still free - both checked by the statement, the batch row locked (PostgreSQL) so that a
# concurrent close waits for it, or is waited for and seen. Otherwise nothing is written.
APPEND_AT = (
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at, trace_context) "
    "SELECT :batch_no, :position, :payload, {now}, :trace "
    "WHERE EXISTS (SELECT 1 FROM batchyard_batches "
    "WHERE batch_no = :batch_no AND status = 'accumulating' AND max_batch_bytes IS NULL "
    "{for_update}) ON CONFLICT DO NOTHING"
)
# The same in a batch with a byte limit: the item's byte_end is the byte_end of the item
# before it (committed before the position was remembered, so in the statement's snapshot)
# plus its size, :bytes; it lands only if that leaves room in bytes.
_BYTES_BEFORE = (
    "COALESCE((SELECT p.byte_end FROM batchyard_items p "
    "WHERE p.batch_no = :batch_no AND p.position = :position - 1), 0)"
)
APPEND_SIZED_AT = (
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at, byte_end, "
    "trace_context) "
    "SELECT :batch_no, :position, :payload, {now}, e.byte_end, :trace FROM "
    f"(SELECT b.max_batch_bytes, {_BYTES_BEFORE} + :bytes AS byte_end "
    "FROM batchyard_batches b WHERE b.batch_no = :batch_no AND b.status = 'accumulating' "
    "AND b.max_batch_bytes IS NOT NULL {for_update}) e "
    "WHERE e.byte_end < e.max_batch_bytes ON CONFLICT DO NOTHING"
)
# Many items at a remembered position (the adds of several calls, see `lanes`), in one
# pipelined transaction - one round trip on PostgreSQL, where one statement cannot do it: a
# statement that waited for the batch's row lock would still read with the snapshot it took
# before the wait, and see neither the items nor the close that the lock holder committed.
# So the lock is taken by a statement of its own (an UPDATE that changes nothing: unlike a
# SELECT, it leaves no rows to read before COMMIT - a statement in progress, on SQLite), and
# the insert that follows reads afresh: it writes all its items, or none when the batch was
# closed or any item is already at or past the position (another process's add).
LOCK_FOR_APPEND = (
    "UPDATE batchyard_batches SET status = status "
    "WHERE batch_no = :batch_no AND status = 'accumulating'"
)
APPEND_MANY_AT = (
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at, trace_context) "
    "SELECT :batch_no, :position + j.idx, j.value, {now}, :trace FROM {json_text_rows} j "
    "WHERE EXISTS (SELECT 1 FROM batchyard_batches "
    "WHERE batch_no = :batch_no AND status = 'accumulating' AND max_batch_bytes IS NULL) "
    "AND NOT EXISTS (SELECT 1 FROM batchyard_items "
    "WHERE batch_no = :batch_no AND position >= :position)"
)
# The same in a batch with a byte limit: all the items land if together (:total_bytes)
# they leave room in bytes after the item before them, or none.
APPEND_MANY_SIZED_AT = (
    "INSERT INTO batchyard_items (batch_no, position, payload, added_at, byte_end, "
    "trace_context) "
    "SELECT :batch_no, :position + j.idx, j.value, {now}, "
    f"{_BYTES_BEFORE} + SUM(j.octets) OVER (ORDER BY j.idx), :trace "
    "FROM {json_text_rows_sized} j JOIN batchyard_batches b ON b.batch_no = :batch_no "
    f"WHERE b.status = 'accumulating' AND {_BYTES_BEFORE} + :total_bytes < b.max_batch_bytes "
    "AND NOT EXISTS (SELECT 1 FROM batchyard_items "
    "WHERE batch_no = :batch_no AND position >= :position)"
)
ITEM_COUNT = "(SELECT COUNT(*) FROM batchyard_items i WHERE i.batch_no = b.batch_no)"
FAILED_COUNT = "(SELECT COUNT(*) FROM batchyard_item_failures f WHERE f.batch_no = b.batch_no)"
# Counts are derived, never kept in the batch row: an add then writes its items and nothing
# else (a second page per commit halved the add rate), and the counts cannot drift.
PENDING_COUNT = (
    f"CASE WHEN b.status IN {FINISHED_SQL} THEN 0 "
    f"WHEN {FAILED_COUNT} > 0 THEN {FAILED_COUNT} ELSE {ITEM_COUNT} END"
)
# What a flushing batch of an ordered base waits for: the first batch before it that is not
# done with (flushing, or dead until it is redriven or discarded). Found in the index of
# live batches.
BLOCKED_BY = (
    "CASE WHEN b.ordered = 1 AND b.status = 'flushing' THEN (SELECT p.batch_id "
    "FROM batchyard_batches p WHERE p.base_id = b.base_id AND p.sequence < b.sequence "
    f"AND p.status IN {ACTIVE_SQL} ORDER BY p.sequence LIMIT 1) END"
)
BATCH_COLUMNS = (
    "b.batch_id, b.batch_no, b.base_id, b.sequence, b.status, b.handler, b.max_batch_size, "
    "b.flush_interval, b.max_attempts, b.attempts, b.idempotency_key, b.flush_reason, "
    "b.last_error, b.created_at, b.updated_at, b.completed_at, b.ordered, "
    "b.max_batch_bytes, b.flush_after_idle, "
    f"{_last_item('byte_end', 'b.batch_no')} AS byte_count, "
    f"{_last_item('added_at', 'b.batch_no')} AS last_added_at, "
    f"{ITEM_COUNT} AS item_count, {PENDING_COUNT} AS pending_count, {BLOCKED_BY} AS blocked_by"
)
# An open batch whose debounce holds it back: an item was added within its
# flush_after_idle, and its flush_interval (the longest it waits) has not passed.
_LAST_ADDED = _last_item("added_at", "batchyard_batches.batch_no")
_BEFORE_MAX_WAIT = "(flush_interval IS NULL OR created_at + flush_interval > {now})"
IDLE_WAITING = (
    f"(flush_after_idle IS NOT NULL AND {_BEFORE_MAX_WAIT} "
    f"AND {_LAST_ADDED} + flush_after_idle > {{now}})"
)
IDLE_PASSED = f"(flush_after_idle IS NOT NULL AND {_LAST_ADDED} + flush_after_idle <= {{now}})"
# Why a timer closes an open batch: its debounce, unless its longest wait is up.
_TIMER_REASON = (
    f"CASE WHEN flush_after_idle IS NOT NULL AND {_BEFORE_MAX_WAIT} THEN 'idle' ELSE :reason END"
)
# How long the debounce of an open batch still holds it back (its flush task waits that
# long again instead of flushing), its row locked so that a close waits for the decision.
IDLE_WAIT = (
    f"SELECT status, {IDLE_WAITING} AS waiting, "
    f"CASE WHEN flush_interval IS NULL THEN {_LAST_ADDED} + flush_after_idle "
    f"ELSE {{least}}({_LAST_ADDED} + flush_after_idle, created_at + flush_interval) END "
    "- {now} AS wait FROM batchyard_batches WHERE batch_id = :batch_id {for_update}"
)


# The start of a flush attempt, in one statement: a batch still open is closed (a timer
# that fires on an open batch is the interval or idle flush) and the attempt is counted,
# durably before the handler runs. No row: the batch is deleted, completed or dead - or
# open and held back by its debounce (see `IDLE_WAIT`).
def _start_flush(condition: str = "") -> str:
    return (
        "UPDATE batchyard_batches SET status = 'flushing', attempts = attempts + 1, "
        f"flush_reason = CASE WHEN status = 'accumulating' THEN {_TIMER_REASON} "
        "ELSE flush_reason END, "
        "flush_requested_at = CASE WHEN status = 'accumulating' THEN {now} "
        "ELSE flush_requested_at END, "
        "updated_at = CASE WHEN status = 'accumulating' THEN {now} ELSE updated_at END "
        "WHERE batch_id = :batch_id AND (status = 'flushing' "
        f"OR status = 'accumulating' AND NOT {IDLE_WAITING}){condition} "
        "RETURNING batch_no, base_id, sequence, handler, attempts, idempotency_key, "
        "flush_reason, ordered"
    )


START_FLUSH = _start_flush()
# The same, in the transaction of a hand-off (`batchyard.tasks.handoff`), only if that
# transaction claimed the batch's flush task for :worker_id: sent without waiting to learn
# whether it did (before the hand-off commits no one else can hold that task - it waits for
# the one whose end is being written).
START_HANDED_FLUSH = _start_flush(
    " AND EXISTS (SELECT 1 FROM batchyard_tasks s WHERE s.key = 'flush:' || :batch_id "
    "AND s.state = 'running' AND s.worker_id = :worker_id)"
)
# The same, in the transaction of a directed claim (`batchyard.tasks.directed`), sent before
# that claim: only while the batch's flush task is one the claim takes, its row locked so
# that no other claim takes it before this transaction's (one that another claim holds is
# skipped: that claim's worker starts the flush).
_FLUSH_KEY = "'flush:' || :batch_id"
START_DIRECTED_FLUSH = _start_flush(
    f" AND EXISTS (SELECT 1 FROM batchyard_tasks t WHERE {tasks_sql.directed(_FLUSH_KEY)} "
    "{skip_locked})"
)


def _pending_items(batch_no: str) -> str:
    """Pending items: those a partial flush recorded as failed, or all of them when none
    did; `batch_no` is the SQL that gives the batch's number."""
    return (
        "SELECT i.position, i.payload, i.trace_context FROM batchyard_items i "
        f"WHERE i.batch_no = {batch_no} "
        "AND (NOT EXISTS (SELECT 1 FROM batchyard_item_failures f "
        f"WHERE f.batch_no = {batch_no}) OR "
        "EXISTS (SELECT 1 FROM batchyard_item_failures f WHERE f.batch_no = i.batch_no "
        "AND f.position = i.position)) ORDER BY i.position"
    )


PENDING_ITEMS = _pending_items(":batch_no")
# The same of a flushing batch found by its id, so that the query can be sent with
# START_FLUSH, before that statement's row is back.
PENDING_ITEMS_OF_FLUSHING = _pending_items(
    "(SELECT batch_no FROM batchyard_batches WHERE batch_id = :batch_id AND status = 'flushing')"
)

# One attempt's outcome in the flush history.
RECORD_FLUSH = (
    "INSERT INTO batchyard_flushes (batch_id, base_id, sequence, attempt, reason, "
    "outcome, item_count, failed_count, error, worker_id, started_at, duration, "
    "traceback) VALUES (:batch_id, :base_id, :sequence, :attempt, :reason, "
    ":outcome, :item_count, :failed_count, :error, :worker_id, :started, "
    ":duration, :traceback)"
)
# The history line of a flush that went to the dead letters other than by its own
# recording (see `Flusher.on_dead_flush`); an attempt whose outcome was recorded keeps it.
RECORD_DEAD_FLUSH = (
    "INSERT INTO batchyard_flushes (batch_id, base_id, sequence, attempt, reason, "
    "outcome, item_count, failed_count, error, worker_id, started_at, duration) "
    "SELECT b.batch_id, b.base_id, b.sequence, b.attempts, "
    f"COALESCE(b.flush_reason, 'manual'), 'failed', {PENDING_COUNT}, "
    f"{PENDING_COUNT}, :error, :worker_id, {{now}}, 0 FROM batchyard_batches b "
    "WHERE b.batch_id = :batch_id ON CONFLICT (batch_id, attempt) DO NOTHING"
)
