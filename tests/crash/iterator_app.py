"""A yard for the iterator's process tests: a numbered source and a handler that logs."""

from __future__ import annotations

import json
import os
import time

from batchyard import Yard
from batchyard.sources import ndjson_file, sql_keyset

ROWS = 2_000
yard = Yard(os.environ["BATCHYARD_STORE"])


@yard.handler("numbers")
def numbers(cursor, batch_size):
    start = cursor or 0
    items = list(range(start, min(ROWS, start + batch_size)))
    return {
        "items": items,
        "cursor": start + len(items),
        "done": start + len(items) >= ROWS,
        "total": ROWS,
    }


@yard.handler("log")
def log(items, ctx):
    time.sleep(float(os.environ.get("HANDLER_SLEEP", "0.02")))
    line = json.dumps({"job": ctx.job_id, "batch": ctx.page, "items": items, "at": time.time()})
    with open(os.environ["RECORD_PATH"], "a") as out:
        out.write(line + "\n")


@yard.handler("sink")
def sink(items, ctx):
    """Transactional: the rows and the cursor commit together. Logs, then lingers, between
    its writes and the commit - the window the crash test kills in."""
    ctx.tx.executemany("INSERT INTO iter_sink (n) VALUES (:n)", [{"n": n} for n in items])
    with open(os.environ["RECORD_PATH"], "a") as out:
        out.write(json.dumps({"job": ctx.job_id, "batch": ctx.page, "items": items}) + "\n")
    time.sleep(float(os.environ.get("HANDLER_SLEEP", "0.02")))


# a parallel job's sources: a table of keyed rows the test fills, and a file of lines it
# writes (see test_parallel_iterator_processes.py)
sql_keyset(yard, "keyed", table="par_src", order_by="at", tie_breaker="id", columns=["id"])
if "LINES_PATH" in os.environ:
    ndjson_file(yard, "lines", os.environ["LINES_PATH"])


@yard.handler("par_sink")
def par_sink(items, ctx):
    """Transactional: the rows go to par_sink with the cursor; logs when the call began and
    ended (a call whose transaction a kill rolled back is logged too, and done again)."""
    began = time.time()
    ctx.tx.executemany(
        "INSERT INTO par_sink (job, id) VALUES (:job, :id)",
        [{"job": ctx.job_id, "id": row["id"]} for row in items],
    )
    time.sleep(float(os.environ.get("HANDLER_SLEEP", "0.02")))
    line = {"job": ctx.job_id, "slice": ctx.slice, "page": ctx.page, "n": len(items)}
    with open(os.environ["RECORD_PATH"], "a") as out:
        out.write(json.dumps({**line, "began": began, "ended": time.time()}) + "\n")


@yard.handler("par_gate")
def par_gate(job_id):
    """A throttle that holds a job's slices off once GATE_ROWS of its rows reached the sink,
    until the file GATE_PATH exists: the slices then wait outside their transactions, so a
    pause or a cancel from another process gets in before the job can end, however slow
    the machine (on SQLite the transactional slices otherwise hold the one writer nearly
    all the time)."""
    gate = os.environ.get("GATE_PATH")
    if gate is None or os.path.exists(gate):
        return None
    with yard.store.transaction(write=False) as tx:
        row = tx.one("SELECT COUNT(*) AS n FROM par_sink WHERE job = :job", {"job": job_id})
    return 0.1 if row["n"] >= int(os.environ["GATE_ROWS"]) else None
