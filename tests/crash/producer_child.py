"""A producer process for the crash test: adds numbered items, and after every flush writes
the durable checkpoint it was told to a file - until it is killed."""

from __future__ import annotations

import os
import sys

from batchyard import Yard

url, report_path, offset = sys.argv[1], sys.argv[2], int(sys.argv[3])
yard = Yard(url)
yard.handler("noop")(lambda items, ctx: None)
producer = yard.producer(max_pending_items=2_000, write_interval=0.005)
with open(report_path, "a") as report:
    n = 0
    while True:
        for _ in range(50):
            producer.add("crash", [offset + n], max_batch_size=100, on_flush="noop")
            n += 1
        if n % 500 == 0:
            durable = producer.flush()
            report.write(f"{offset + durable}\n")
            report.flush()
            os.fsync(report.fileno())
