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
