"""An application for the CLI tests: a yard on BATCHYARD_STORE whose handler records calls."""

from __future__ import annotations

import json
import os
import time

from batchyard import Yard, folds

yard = Yard(os.environ["BATCHYARD_STORE"])


@yard.handler("record")
def record(items, ctx):
    time.sleep(float(os.environ.get("HANDLER_SLEEP", "0")))
    with open(os.environ["RECORD_PATH"], "a") as out:
        out.write(json.dumps({"batch_id": ctx.batch_id, "items": items}) + "\n")


@yard.transform("upper")
def upper(item):
    return {"text": str(item["text"]).upper()}


def fail_in_the_sink(items):
    raise ConnectionError(f"the sink refused {len(items)} items")


@yard.handler("explode")
def explode(items, ctx):
    fail_in_the_sink(items)


def page_of(event):
    # an event without a page is parked, until the app runs with LENIENT_PAGES set (the fix)
    return event.get("page", "(none)") if os.environ.get("LENIENT_PAGES") else event["page"]


yard.register_aggregator("views", stream="views", key=page_of, fold=folds.count())

yard.register_batcher("clicks", key="user", max_batch_size=10, on_flush="record", max_open_keys=2)
