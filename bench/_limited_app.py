"""A yard whose handler is limited to 4 calls at once across the fleet and takes 20 ms, for
benchmark worker processes; each call appends its start and end to $BENCH_RECORD."""

import json
import os
import time

from batchyard import Yard

CONCURRENCY = 4
HANDLER_SECONDS = 0.02

yard = Yard(os.environ["BATCHYARD_STORE"])
_record = os.open(os.environ["BENCH_RECORD"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)


@yard.handler("limited", concurrency=CONCURRENCY)
def limited(items, ctx):
    start = time.time()
    time.sleep(HANDLER_SECONDS)
    os.write(_record, (json.dumps([start, time.time()]) + "\n").encode())
