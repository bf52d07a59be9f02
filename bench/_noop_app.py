"""A yard with a no-op handler, for benchmark worker processes."""

import os
import time

from batchyard import Yard
from batchyard.sources import sql_keyset

yard = Yard(os.environ["BATCHYARD_STORE"])
yard.handler("noop")(lambda items, ctx: None)

# the parallel iterator bench (iterator.py --parallel): its source, and an I/O-bound handler
sql_keyset(yard, "bench-src", table="bench_rows", order_by="at", tie_breaker="id")


@yard.handler("sleep-2ms")
def sleep_2ms(items, ctx):
    time.sleep(0.002)  # a page's call to some service
